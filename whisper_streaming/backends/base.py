"""The backend interface: whoever runs the ASR (and the analyses) behind the runtime.

:class:`AsrBackend` takes an :class:`UtteranceJob` and gives a future of its
:class:`UtteranceResult`; :meth:`AsrBackend.capacity` tells the runtime whether there is room
for optional work (speculation) and new sessions.  The local implementation is
:class:`~whisper_streaming.backends.pool.ProcessPool`; a distributed one implements the same.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.base import BatchDecode

__all__ = ["EngineState", "GuardCounts", "RemoteStatus", "BackendStatus", "Capacity", "UtteranceJob", "UtteranceResult", "AsrBackend"]


class EngineState(enum.Enum):
    """State of one ASR engine, as shown in ``%C``."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    RUNNING = "running"  # up, for backends that cannot tell idle from busy
    STOPPED = "stopped"


@dataclass(frozen=True)
class GuardCounts:
    """How often the decoding guards acted (``%C``): utterances in which a decode looped
    (``loops``), whose text was cut because every decode looped or it said a sentence again
    after itself (``loop_cuts``), whose
    fallbacks the time budget stopped (``time_limited``), short fragments dropped as
    no speech (``no_speech_dropped``), and utterances the speech screen kept from decoding
    (``no_speech_screened``: music, tones), and utterances whose detected change of language
    the decode did not bear out (``language_switches_refused``)."""

    loops: int = 0
    loop_cuts: int = 0
    time_limited: int = 0
    no_speech_dropped: int = 0
    no_speech_screened: int = 0
    language_switches_refused: int = 0

    def add(self, transcript: Transcript) -> GuardCounts:
        return GuardCounts(
            self.loops + (transcript.loops_seen > 0),
            self.loop_cuts + transcript.loop_cut,
            self.time_limited + transcript.timed_out,
            self.no_speech_dropped + transcript.dropped_no_speech,
            self.no_speech_screened + transcript.no_speech_screened,
            self.language_switches_refused + transcript.language_switch_refused,
        )


@dataclass(frozen=True)
class RemoteStatus:
    """The workers of a backend that runs them on other hosts (``%C``, ``/health``).

    ``broker``: its kind (``"redis"``); ``connected``: the broker answers now;
    ``workers_live``: worker hosts whose heartbeat is recent, with ``slots_live`` engines in all,
    ``slots_busy`` of them busy (as the hosts last told); ``jobs_in_flight``: utterances this
    front end has handed to the broker and not yet got back; ``jobs_redelivered``: utterances the
    live hosts took over from a host that stopped sending heartbeats; ``duplicates_dropped``:
    results that came for an utterance already answered (at-least-once delivery: a job
    redelivered while its first worker was only late); ``jobs_resubmitted``: utterances handed to
    the broker again because it restarted and lost them.
    """

    broker: str
    connected: bool
    workers_live: int
    slots_live: int
    slots_busy: int
    jobs_in_flight: int
    jobs_redelivered: int = 0
    duplicates_dropped: int = 0
    jobs_resubmitted: int = 0


@dataclass(frozen=True)
class BackendStatus:
    """The ``%C`` counters of a backend.

    ``worker_timeouts``: of ``worker_restarts``, workers killed because they did not answer
    within the transcription timeout (hung); ``sessions_throttled``: sessions whose utterances
    were held back because they cost far more worker time than real time (counted once per
    episode; see :class:`~whisper_streaming.backends.scheduler.CostThrottle`).
    ``worker_s``: seconds workers spent on jobs (final, speculative and partial decodes, retries
    included; the real-time factor's numerator); 0 when the backend cannot tell.
    ``remote``: the remote workers, for a backend that has them (None: local processes).
    ``jobs_stopped``: jobs whose future was cancelled while they were on a worker and that the
    worker gave up before their end (speculations whose speech resumed and partial decodes
    whose utterance ended, after their encoder pass; also work of a session that closed, and
    chunks of a cancelled batch job);
    0 for a backend that runs every job to its end (the Redis backend).
    """

    engines: tuple[EngineState, ...]
    utterances_queued: int
    worker_restarts: int
    utterances_done: int
    utterances_failed: int
    guards: GuardCounts = GuardCounts()
    worker_timeouts: int = 0
    sessions_throttled: int = 0
    worker_s: float = field(default=0.0, compare=False)  # a measurement: two statuses with equal counters are equal
    remote: RemoteStatus | None = None
    jobs_stopped: int = 0


@dataclass(frozen=True)
class Capacity:
    """What a backend can take now: the runtime's speculation and admission policy reads this.

    ``idle_slots``: engines free to start a job at once; ``queue_depth``: utterances waiting;
    ``slots``: engines in all (0 when the backend cannot tell; the Redis backend counts the live
    worker hosts' engines);
    ``held``: of ``queue_depth``, utterances of throttled sessions, which wait for time to
    pass rather than for an engine; ``partial_slots``: engines busy with a partial hypothesis
    (low priority: soon free, and worth less than a speculation of a final).
    ``partial_workers``: engines kept for partial hypotheses only (not in ``slots``; 0: partials
    share the engines of the finals); ``partial_worker_ready``: one of them would start a
    partial now (idle, or not yet started, and not held back for the finals); ``batch_slots``:
    engines busy with a chunk of a file (low priority: paused while streaming finals decode).
    ``available``: false while the backend cannot reach its workers (a remote backend with Redis
    down or no worker host alive): the runtime then refuses new sessions (``SERVER_TOO_BUSY``).
    """

    idle_slots: int
    queue_depth: int
    slots: int
    held: int = 0
    partial_slots: int = 0
    partial_workers: int = 0
    partial_worker_ready: bool = False
    batch_slots: int = 0
    available: bool = True


@dataclass(frozen=True)
class UtteranceJob:
    """One utterance to transcribe: ``pcm`` s16le mono 16 kHz bytes; ``language`` the stream's
    language state for the engine (None: the engine's default); ``analyses`` the names of the
    analyzers to run on it (:class:`~whisper_streaming.analyzers.base.AnalyzerSpec`).
    ``partial``: a partial hypothesis of an utterance in progress: decoded the cheapest way
    (the engine's ``minimal`` decode), not charged to the session's cost throttle, and not
    counted as the session's running utterance (its final must never wait for it).
    ``batch``: a chunk of a file for the batch API (:class:`~whisper_streaming.engines.base.BatchDecode`):
    low priority -- it starts only when no streaming utterance waits, and only on the engines
    the backend lends to batch work (see :meth:`AsrBackend.submit`)."""

    pcm: bytes
    language: LanguageRequest | None = None
    analyses: frozenset[str] = frozenset()
    partial: bool = False
    batch: BatchDecode | None = None


@dataclass(frozen=True)
class UtteranceResult:
    """What one utterance gives: its transcript and the annotations asked for (by analysis
    name; an analysis that gave nothing or failed is absent).

    ``analysis_s``: seconds the worker spent on the analyses (0 when none).
    """

    transcript: Transcript
    annotations: Mapping[str, Any] = field(default_factory=dict)
    analysis_s: float = 0.0


class AsrBackend(abc.ABC):
    """What the runtime needs from whoever runs the ASR (a local process pool, remote workers)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load engines; raise :class:`ModelError` if they cannot start."""

    @abc.abstractmethod
    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        """Queue one utterance, waiting while the queue is full (fair between ``session_key``s).

        Returns a future resolving to its :class:`UtteranceResult` (with the annotations of
        ``job.analyses`` the backend has analyzers for) or raising :class:`AsrError`.

        Raises:
            AsrError: the backend is closed.
        """

    @abc.abstractmethod
    def cancel_session(self, session_key: Hashable) -> None:
        """Drop the session's queued utterances (their futures are cancelled)."""

    @abc.abstractmethod
    def capacity(self) -> Capacity:
        """Idle engines and queue depth now (cheap; called on every tentative utterance, and after
        every later packet while a speculation waits for room)."""

    def starts_at_once(self, session_key: Hashable) -> bool:
        """Whether a job of ``session_key`` put in now would be served by an idle engine at once,
        as far as this session's own state goes (it is not held back by the throttle, nor by a job
        of its own already running when the backend keeps its last idle engine for other
        sessions).  Read with :meth:`capacity` before a speculative transcription, which must
        not wait in the queue.  The default: True."""
        return True

    @abc.abstractmethod
    def status(self) -> BackendStatus:
        """Counters and per-engine states for ``%C`` (display only: decisions use :meth:`capacity`)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every engine (idempotent)."""

    def drain_shortest_first(self) -> None:
        """The server is stopping: from now on serve the sessions with the least work queued
        first, throttling off, so that as many sessions as possible get all their results before
        ``shutdown_timeout_s`` (round robin would give every session a turn and finish none).
        Optional: the default does nothing."""
