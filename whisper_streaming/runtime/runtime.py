"""The runtime every door shares: admission, sessions, counters, status, sinks, shutdown.

Doors (:mod:`whisper_streaming.transports`) are composed with one :class:`Runtime`, never
subclassed from each other: a door accepts connections, builds a
:class:`~whisper_streaming.runtime.driver.SessionDriver` per connection with
:meth:`Runtime.open_session`, asks :meth:`Runtime.admit` before it serves a session, and runs
each connection through :meth:`Runtime.serve`.  The runtime owns the backend and the sinks: it
publishes every door's results to every sink, decides on speculation from the backend's
:meth:`~whisper_streaming.backends.base.AsrBackend.capacity`, renders ``%C`` (with a line per
door that has one), and stops everything gracefully (:meth:`Runtime.shutdown`: every door stops
accepting and finishes its open streams, then the backend and the sinks close, all within
``shutdown_timeout_s``).

Overload policy (:meth:`Runtime.admit`): refuse new sessions (never degrade open ones) when the
sessions limit is reached or the utterance queue is over ``overload_queue_fraction`` of
``max_queued_utterances``; refuse a peer address over ``max_sessions_per_ip``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from whisper_streaming.analyzers.sentiment import SENTIMENT, Sentiment
from whisper_streaming.backends.base import AsrBackend
from whisper_streaming.core.ratelimit import TokenBucket
from whisper_streaming.core.results import FinalResult
from whisper_streaming.errors import ErrorReason
from whisper_streaming.pipeline.session import Session, SessionOptions
from whisper_streaming.runtime.driver import ConnectionLog, Peer, SessionDriver
from whisper_streaming.runtime.stats import RuntimeStats
from whisper_streaming.sinks.voices import VoiceStore
from whisper_streaming.sinks.base import ResultPublished, SessionInfo, Sink, SinkEvent

__all__ = ["RuntimeOptions", "Transport", "Connection", "Runtime", "finish_tasks", "SINK_CLOSE_DEADLINE_S", "CLOSE_RESERVE_S", "MIN_SINK_CLOSE_S",
           "LIMITED_STATUS_TEXT"]

log = logging.getLogger(__name__)

SINK_CLOSE_DEADLINE_S = 5.0
"""How long the sinks may take to deliver what they queued at shutdown (at most: the shutdown's deadline comes first)."""
CLOSE_RESERVE_S = 1.0
"""Of ``shutdown_timeout_s``, the time kept (at most a quarter of it) for stopping the backend and
closing the sinks once the doors have finished or cut their streams."""
MIN_SINK_CLOSE_S = 0.2
"""What each sink gets to close even when the shutdown's deadline has come (files are flushed)."""
LIMITED_STATUS_TEXT = "server: up (status details after a valid token)"
"""The whole status a peer gets before it has shown a valid token (tokens on)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """Limits of the shared runtime (config ``server.*``) and the sessions' options.

    ``max_sessions_per_ip``: 0 = no per-address limit.  ``shutdown_timeout_s``: how long a
    graceful stop may take in all: open streams are waited for until :data:`CLOSE_RESERVE_S`
    before it, then aborted (``SHUTTING_DOWN``), and the backend and sinks are closed.
    ``status_probes_per_s``: status requests answered, over all connections that hold no
    session slot (monitoring probes; the burst is one second's worth, at least 1).
    ``speculation_idle_engines``: idle engines needed to start a speculative transcription
    (:meth:`Runtime.room_for_speculation`): 1 = any idle engine; 2 keeps one free for confirmed
    utterances (``docs/benchmarks.md``, "Speculation on one idle engine"); 0 acts as 1.
    """

    session: SessionOptions = field(default_factory=SessionOptions)
    max_sessions: int = 16
    max_sessions_per_ip: int = 0
    max_queued_utterances: int = 64
    overload_queue_fraction: float = 0.9
    shutdown_timeout_s: float = 10.0
    status_probes_per_s: float = 20.0
    speculation_idle_engines: int = 1


class Transport(Protocol):
    """A door: listens, moves bytes, and drives sessions through the runtime."""

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns the address bound (logged as ``... listening on H:P``)."""
        ...

    def close_listener(self) -> None:
        """Stop accepting (idempotent)."""
        ...

    async def shutdown(self) -> None:
        """Stop accepting; finish every open stream (for :meth:`Runtime.stream_time_left`, then cut them); close."""
        ...

    def status_lines(self) -> list[str]:
        """The door's own ``%C`` lines (may be none)."""
        ...


class Connection(Protocol):
    """One connection of a door, run by :meth:`Runtime.serve`."""

    task: asyncio.Task[Any] | None
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    driver: SessionDriver

    async def run(self) -> None: ...

    def abort(self) -> None:
        """Close the socket now (idempotent)."""
        ...


async def finish_tasks(tasks: Sequence[asyncio.Task[Any]], timeout_s: float, what: str,
                       before_cancel: Callable[[], None] | None = None) -> None:
    """Wait up to ``timeout_s`` for ``tasks`` (connections finishing), then cancel the rest.

    ``before_cancel`` runs first when some are left (a door tells those peers why).
    """
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    if pending:
        log.warning("shutdown timeout: aborting %d %s", len(pending), what)
        if before_cancel is not None:
            before_cancel()
            await asyncio.sleep(0)  # let the transports write what the peers are told
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2.0)


class Runtime:
    """The hub every door shares. See the module docstring.

    ``await start()`` starts the doors in the order added; ``await shutdown()`` stops all;
    ``await wait_closed()`` returns once stopped.
    """

    def __init__(self, options: RuntimeOptions, backend: AsrBackend, *, sinks: Iterable[Sink] = (), voices: VoiceStore | None = None) -> None:
        self.options = options
        self.backend = backend
        self.sinks: list[Sink] = list(sinks)
        self.voices = voices  # saved speakers' voices (config speakers.dir), None: none
        self.stats = RuntimeStats()
        self.transports: list[Transport] = []
        self._sessions: set[SessionDriver] = set()
        self._stopping = False
        self._stop_deadline: float | None = None  # loop time by which shutdown() must be done
        self._stopped = asyncio.Event()
        self._probes = TokenBucket(options.status_probes_per_s, max(1.0, options.status_probes_per_s))
        self._last_status: str | None = None
        self.status_builds = 0  # how often the %C text was built (the doors answer floods from the cache)

    # -------------------------------------------------------------- doors

    def add_transport(self, transport: Transport) -> None:
        self.transports.append(transport)

    async def start(self) -> None:
        """Start every door, in the order added; if one cannot listen, close those started and raise.

        Raises:
            OSError: a door cannot bind its address.
        """
        try:
            for transport in self.transports:
                await transport.start()
        except OSError:
            for transport in self.transports:
                transport.close_listener()
            raise

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def sessions_by_transport(self) -> dict[str, int]:
        """Admitted sessions open now, per door (``SessionInfo.transport``: ``tcp``, ``websocket`` ...)."""
        counts: dict[str, int] = {}
        for driver in self._sessions:
            counts[driver.info.transport] = counts.get(driver.info.transport, 0) + 1
        return counts

    def stream_time_left(self) -> float:
        """Seconds the doors may still wait for open streams in this shutdown (then they cut them):
        ``shutdown_timeout_s`` from the start of :meth:`shutdown`, less the reserve for closing
        the backend and the sinks (:data:`CLOSE_RESERVE_S`, at most a quarter)."""
        timeout = self.options.shutdown_timeout_s
        reserve = min(CLOSE_RESERVE_S, timeout / 4)
        if self._stop_deadline is None:
            return timeout - reserve
        return max(0.0, self._stop_deadline - reserve - asyncio.get_running_loop().time())

    # -------------------------------------------------------------- sessions

    def open_session(self, info: SessionInfo, peer: Peer, log: logging.LoggerAdapter, *,  # type: ignore[type-arg]
                     options: SessionOptions | None = None) -> SessionDriver:
        """A driver for a new connection (not admitted yet); ``options`` default to the runtime's."""
        return SessionDriver(self, Session(options or self.options.session), info, peer, log)

    def admit(self, driver: SessionDriver, peer_ip: str) -> ErrorReason | None:
        """Admit a session, or return the reason that refuses it (counted; the door tells the peer if it can)."""
        limits = self.options
        reason = None
        if self._stopping or len(self._sessions) >= limits.max_sessions:
            reason = ErrorReason.SERVER_TOO_BUSY
        elif (not (capacity := self.backend.capacity()).available
              or capacity.queue_depth > limits.overload_queue_fraction * limits.max_queued_utterances):
            reason = ErrorReason.SERVER_TOO_BUSY
        elif limits.max_sessions_per_ip and sum(d.peer_ip == peer_ip for d in self._sessions) >= limits.max_sessions_per_ip:
            reason = ErrorReason.TOO_MANY_CONNECTIONS
        if reason is not None:
            self.stats.sessions_rejected += 1
            return reason
        driver.peer_ip = peer_ip
        driver.admitted = True
        self._sessions.add(driver)
        self.stats.sessions_started += 1
        return None

    def allow_probe(self) -> bool:
        """May a connection without a session slot have a fresh status built now? (rate-limited)"""
        return self._probes.take()

    def is_admitted(self, driver: SessionDriver) -> bool:
        return driver in self._sessions

    def record_refusal(self, reason: ErrorReason) -> None:
        """A door sent ``reason`` to a peer it refused: count it with the errors."""
        self.stats.errors[reason.value] += 1

    async def serve(self, conn: Connection, registry: set[Any]) -> None:
        """Run one connection of any door in the current task, listed in ``registry`` while it runs."""
        conn.task = asyncio.current_task()
        registry.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cut by the shutdown deadline (finish_tasks; the peer has been told): end normally.
            # A door's asyncio server reports a handler task that ends cancelled with a traceback
            # (Python 3.11), and nobody awaits this task but that server.
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
        except Exception:  # noqa: BLE001 - a bug in one connection must not take the server down
            conn.log.exception("connection failed")
        finally:
            registry.discard(conn)
            self._sessions.discard(conn.driver)
            conn.driver.close()
            conn.abort()

    # -------------------------------------------------------------- what drivers call

    def publish(self, event: SinkEvent) -> None:
        for sink in self.sinks:
            try:
                sink.publish(event)
            except Exception:  # noqa: BLE001 - a failing sink must not break a session
                log.exception("sink %s failed on %s", type(sink).__name__, type(event).__name__)

    def result_delivered(self, info: SessionInfo, result: FinalResult) -> None:
        sentiment = result.annotations.get(SENTIMENT)
        if isinstance(sentiment, Sentiment):
            self.stats.sentiment.add(sentiment)
        self.publish(ResultPublished(info, result))

    def room_for_speculation(self, session_key: Hashable) -> bool:
        """Nothing queued but the work of held (throttled) sessions, an idle engine, and at least
        :attr:`RuntimeOptions.speculation_idle_engines` engines idle in all; an engine busy with a
        partial hypothesis or a chunk of a file counts as idle for that count (a speculation of a
        final matters more; a partial is short, and a chunk is paused while the speculation decodes).
        And the backend would start ``session_key``'s job at once
        (:meth:`AsrBackend.starts_at_once`): a speculation that waited in the queue would hold
        back every other session's."""
        capacity = self.backend.capacity()
        return (capacity.queue_depth - capacity.held == 0 and capacity.idle_slots >= 1
                and capacity.idle_slots + capacity.partial_slots + capacity.batch_slots >= self.options.speculation_idle_engines
                and self.backend.starts_at_once(session_key))

    def room_for_partial(self) -> bool:
        """Nothing queued but the work of held sessions, and: a partial worker ready (the backend
        keeps engines for partials), else two engines really idle.  A partial hypothesis never
        takes the engine a confirmed utterance or a speculation could use."""
        capacity = self.backend.capacity()
        if capacity.queue_depth - capacity.held != 0:
            return False
        if capacity.partial_workers:
            return capacity.partial_worker_ready
        return capacity.idle_slots >= 2

    @property
    def tokens_required(self) -> bool:
        """Whether sessions must show an access token (config ``auth``; see :mod:`whisper_streaming.core.auth`)."""
        return self.options.session.tokens is not None

    def limited_status_text(self) -> str:
        """The status shown before a valid token (tokens on): only that the server is up; no
        counters, no engines, no session details."""
        return LIMITED_STATUS_TEXT

    def cached_status_text(self) -> str:
        """The last ``%C`` text built (built now if none was): for status requests over a door's rate."""
        return self._last_status if self._last_status is not None else self.status_text()

    def status_text(self) -> str:
        """The ``%C`` text, built now: one line per engine, then sessions, queue and counters, then the doors' lines."""
        self.status_builds += 1
        st = self.backend.status()
        lines = [f"engine {i}: {state.value}" for i, state in enumerate(st.engines)]
        lines.append(f"sessions: {len(self._sessions)}/{self.options.max_sessions}")
        lines.append(f"utterances queued: {st.utterances_queued}")
        lines.append(f"utterances done: {st.utterances_done}")
        lines.append(f"utterances failed: {st.utterances_failed}")
        lines.append(f"worker restarts: {st.worker_restarts}")
        lines.append(f"worker timeouts: {st.worker_timeouts}")
        lines.append(f"sessions throttled: {st.sessions_throttled}")
        lines.append(f"sessions total: {self.stats.sessions_started}")
        lines.append(f"sessions rejected: {self.stats.sessions_rejected}")
        lines.append(f"handshake failures: {self.stats.handshake_failures}")
        errors = " ".join(f"{k}={v}" for k, v in sorted(self.stats.errors.items()))
        lines.append(f"errors: {errors or 'none'}")
        lines.append(f"sentiment: {self.stats.sentiment.summary().counts_text()}")
        lines.append(f"speculative transcriptions: started {self.stats.speculations_started}, used {self.stats.speculations_used}")
        lines.append(f"withdrawn jobs stopped early: {st.jobs_stopped}")
        stats = self.stats
        lines.append(f"partials: decoded {stats.partials_decoded}, sent {stats.partials_sent}, dropped under load {stats.partials_refused}")
        g = st.guards
        lines.append(f"decoding guards: loops {g.loops}, loops cut {g.loop_cuts}, time limited {g.time_limited}, "
                     f"no-speech fragments dropped {g.no_speech_dropped}, non-speech screened {g.no_speech_screened}, "
                     f"language switches refused {g.language_switches_refused}")
        r = st.remote
        if r is not None:
            lines.append(f"{r.broker}: {'connected' if r.connected else 'UNREACHABLE'}; worker hosts live {r.workers_live} "
                         f"(engines {r.slots_live}, busy {r.slots_busy})")
            lines.append(f"jobs in flight: {r.jobs_in_flight}, redelivered {r.jobs_redelivered}, duplicates dropped {r.duplicates_dropped}, "
                         f"resubmitted {r.jobs_resubmitted}")
        for transport in self.transports:
            lines.extend(transport.status_lines())
        lines.append(f"tasks: {len(asyncio.all_tasks())}")
        self._last_status = "\n".join(lines)
        return self._last_status

    # -------------------------------------------------------------- shutdown

    async def shutdown(self) -> None:
        """Stop accepting on every door; finish every open stream (results, then its end); close
        the doors; stop the backend; close the sinks (each within :data:`SINK_CLOSE_DEADLINE_S`).

        Bounded by ``shutdown_timeout_s`` in all: the doors cut the streams still open
        :meth:`stream_time_left` after the start (their peers are told ``SHUTTING_DOWN``), the
        sinks get what is left of it (at least :data:`MIN_SINK_CLOSE_S` each).  Idempotent: a
        second call waits for the first.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        self._stop_deadline = deadline = loop.time() + self.options.shutdown_timeout_s
        log.info("shutting down: %d sessions open", len(self._sessions))
        self.backend.drain_shortest_first()  # as many sessions as possible finish before the deadline
        for transport in self.transports:
            transport.close_listener()
        outcomes = await asyncio.gather(*(t.shutdown() for t in self.transports), return_exceptions=True)
        for transport, outcome in zip(self.transports, outcomes):
            if isinstance(outcome, BaseException):
                log.error("stopping %s failed: %r", type(transport).__name__, outcome)
        await self.backend.close()
        for sink in self.sinks:
            try:
                result = await sink.aclose(min(SINK_CLOSE_DEADLINE_S, max(MIN_SINK_CLOSE_S, deadline - loop.time())))
            except Exception:  # noqa: BLE001
                log.exception("closing sink %s failed", type(sink).__name__)
                continue
            if result is not None:
                log.info("%s closed: %s", type(sink).__name__, result)
        self._stopped.set()
        log.info("stopped")
