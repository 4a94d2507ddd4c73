"""The ``server`` section: connection limits, queueing and logging.

(The whole configuration, all sections together, is :class:`~whisper_streaming.config.loader.ServerConfig`.)
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field, StrictInt, ValidationInfo, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat

__all__ = ["ServerSectionConfig"]


class ServerSectionConfig(BaseModel):
    """Connection limits, queueing and logging."""

    model_config = STRICT_MODEL_CONFIG

    max_connections: Annotated[StrictInt, Field(ge=1, le=100000)] = 16
    """Concurrent client connections; more are refused with ``%E SERVER_TOO_BUSY``."""

    max_queued_utterances: Annotated[StrictInt, Field(ge=1, le=100000)] = 64
    """Utterances waiting for a worker, across all sessions."""

    max_queued_per_session: Annotated[StrictInt, Field(ge=1, le=100000)] = 8
    """Utterances one session may have waiting (<= ``max_queued_utterances``)."""

    overload_queue_fraction: Annotated[FiniteFloat, Field(gt=0.0, le=1.0)] = 0.75
    """Overload policy: while the utterance queue holds more than this fraction of
    ``max_queued_utterances``, new sessions are refused with ``%E SERVER_TOO_BUSY`` so that
    the sessions already open keep their latency."""

    max_connections_per_ip: Optional[Annotated[StrictInt, Field(ge=0, le=100000)]] = None
    """Concurrent sessions from one peer address; more get ``%E TOO_MANY_CONNECTIONS``.  ``None``:
    three quarters of ``max_connections`` (at least 1), so one host cannot take every slot;
    0 = no limit (a gateway that carries every call from one address, e.g. one Asterisk box)."""

    status_probes_per_s: Annotated[FiniteFloat, Field(gt=0)] = 20.0
    """Status texts built per second for all connections that hold no session slot together
    (monitoring probes, answered even when every slot is taken; over it they get the last text built)."""

    max_stream_s: Optional[Annotated[FiniteFloat, Field(gt=0)]] = None
    """Longest stream in seconds of audio; past it the stream is finished (results, ``%F``),
    then ``%E STREAM_TOO_LONG`` and close.  ``None``: no limit."""

    throttle_worker_s_per_s: Optional[Annotated[FiniteFloat, Field(ge=0, le=1000)]] = 1.0
    """Per-session cost limit: worker seconds (time a worker spends on the session's
    utterances) a session may use per second of wall clock on average, after a burst of
    ``throttle_burst_s``.  A session over it is *held*: its utterances wait while other
    sessions have work, and it never takes the last idle worker (with two or more workers);
    when nobody else needs the workers it is served as before (work-conserving), so only its
    own results slow down and only under contention.  Real-time speech costs about 0.1-0.2
    worker-s per second with the base model on 2 CPU cores, unscreened noise (babble,
    coloured noise) up to 1.2, a client sending faster than real time proportionally more.
    ``None`` or 0: no throttling."""

    throttle_burst_s: Annotated[FiniteFloat, Field(gt=0, le=100000)] = 20.0
    """Worker seconds a session may spend above ``throttle_worker_s_per_s`` before it is
    throttled (short spikes are free); also the deepest debt, so a throttled session waits at
    most ``throttle_burst_s / throttle_worker_s_per_s`` seconds (20 s at the defaults) after one utterance,
    and only while other sessions have work."""

    speculation_idle_engines: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    """Idle engines needed before an utterance is transcribed speculatively (once
    ``vad.trailing_ms`` of silence is in, before its endpoint), with nothing else queued.  1: any
    idle engine; the result is ready up to ``silence_frames * frame_ms - trailing_ms`` sooner, and
    a speculation that resumed speech withdraws stops after its encoder pass (local workers; a
    Redis worker host runs it to its end, so 2 may suit a Redis deployment).  2: one engine
    always stays free for confirmed utterances, so under load little is speculated (the previous
    default; at 8 real-time streams on 2 cores it gave p95 1.75 s from the end of speech against
    1.47-1.64 s with 1, ``docs/benchmarks.md``)."""

    shutdown_timeout_s: Annotated[FiniteFloat, Field(gt=0)] = 30.0
    """Seconds a graceful shutdown may take before remaining work is abandoned."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging level."""

    @field_validator("max_queued_per_session")
    @classmethod
    def _check_per_session(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_queued_utterances")
        if total is not None and value > total:
            raise ValueError(f"must be <= max_queued_utterances ({total}), got {value}")
        return value
