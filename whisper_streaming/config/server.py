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
