"""Worker pool: ``model.channel`` processes, each loading its ASR engine once.

:class:`AsrBackend` is the interface the server uses (submit an utterance, get a future
for its :class:`UtteranceResult`: the :class:`~whisper_streaming.asr.Transcript` and, when
asked for, its :class:`~whisper_streaming.sentiment.Sentiment`; read the status), so that a
distributed backend can replace :class:`ProcessPool` later.

Sentiment runs in the workers too, right after the transcription (a transformers model must
never run on the event loop): each worker builds its sentiment engine once when
:attr:`PoolOptions.sentiment` is set.

:class:`ProcessPool` supervises ``spawn``-ed worker processes (the uvicorn supervisor idea:
the parent never runs model code, so a crashing model cannot take the server down):

* utterances from all sessions wait in one :class:`~whisper_streaming.scheduler.FairQueue`
  (round-robin per session, bounded);
* each worker slot is driven by one asyncio task: take the next utterance, send it over a
  pipe, wait for the answer with a timeout;
* a worker that dies (EOF on its pipe) or exceeds ``transcribe_timeout_s`` is killed and
  restarted; its utterance goes back to the head of its session's queue once; a second
  failure fails that utterance alone (:class:`~whisper_streaming.errors.AsrError`).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from .asr import AsrEngine, EngineOptions, Transcript, create_engine, pcm16_to_float32
from .errors import AsrError, ModelError
from .language import LanguageRequest
from .scheduler import FairQueue
from .sentiment import Sentiment, SentimentEngine, SentimentOptions, analyze, create_sentiment_engine

__all__ = ["EngineState", "GuardCounts", "BackendStatus", "UtteranceResult", "AsrBackend", "ProcessPool", "PoolOptions"]

log = logging.getLogger(__name__)


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
    (``loops``), whose text was cut because every decode looped (``loop_cuts``), whose
    fallbacks the time budget stopped (``time_limited``), and short fragments dropped as
    no speech (``no_speech_dropped``)."""

    loops: int = 0
    loop_cuts: int = 0
    time_limited: int = 0
    no_speech_dropped: int = 0

    def add(self, transcript: Transcript) -> GuardCounts:
        return GuardCounts(
            self.loops + (transcript.loops_seen > 0),
            self.loop_cuts + transcript.loop_cut,
            self.time_limited + transcript.timed_out,
            self.no_speech_dropped + transcript.dropped_no_speech,
        )


@dataclass(frozen=True)
class BackendStatus:
    engines: tuple[EngineState, ...]
    utterances_queued: int
    worker_restarts: int
    utterances_done: int
    utterances_failed: int
    guards: GuardCounts = GuardCounts()


@dataclass(frozen=True)
class UtteranceResult:
    """What one utterance gives: its transcript and, when asked for and the text is not empty,
    its sentiment (None otherwise, or when the sentiment engine failed on it).

    ``sentiment_s``: seconds the worker spent on the sentiment (0 when none).
    """

    transcript: Transcript
    sentiment: Sentiment | None = None
    sentiment_s: float = 0.0


class AsrBackend(abc.ABC):
    """What the server needs from whoever runs the ASR."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load engines; raise :class:`ModelError` if they cannot start."""

    @abc.abstractmethod
    async def submit(self, session_key: Hashable, pcm: bytes, *, sentiment: bool = False,
                     language: LanguageRequest | None = None) -> asyncio.Future[UtteranceResult]:
        """Queue one utterance (s16le 16 kHz mono), waiting while the queue is full.

        ``language``: the stream's language state for the engine (None: the engine's default).
        Returns a future resolving to its :class:`UtteranceResult` (with a sentiment if
        ``sentiment`` and the backend has a sentiment engine) or raising :class:`AsrError`.
        """

    @abc.abstractmethod
    def cancel_session(self, session_key: Hashable) -> None:
        """Drop the session's queued utterances (their futures are cancelled)."""

    @abc.abstractmethod
    def status(self) -> BackendStatus: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every engine (idempotent)."""


@dataclass(frozen=True)
class PoolOptions:
    """Sizes and limits of a :class:`ProcessPool`.

    ``engine_factory`` and ``sentiment_factory`` must be picklable (module-level functions);
    they run in the worker.  ``sentiment``: None builds no sentiment engine (requests for a
    sentiment then get None).
    """

    engine: EngineOptions
    workers: int = 1
    max_queued: int = 64
    max_queued_per_session: int = 8
    transcribe_timeout_s: float = 60.0
    start_timeout_s: float = 600.0
    max_attempts: int = 2
    engine_factory: Callable[[EngineOptions], AsrEngine] = create_engine
    sentiment: SentimentOptions | None = None
    sentiment_factory: Callable[[SentimentOptions], SentimentEngine] = create_sentiment_engine


@dataclass
class _Job:
    job_id: int
    session_key: Hashable
    pcm: bytes
    future: asyncio.Future[UtteranceResult]
    sentiment: bool = False
    attempts: int = 0
    language: LanguageRequest | None = None


class _WorkerDied(Exception):
    pass


def _sentiment_of(engine: SentimentEngine | None, transcript: Transcript) -> tuple[Sentiment | None, float]:
    if engine is None or not transcript.text.strip():
        return None, 0.0
    t0 = time.perf_counter()
    try:
        sentiment = analyze(engine, transcript.text, transcript.language)
    except Exception as exc:  # noqa: BLE001 - the transcript still goes out, without a sentiment
        print(f"sentiment failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sentiment = None
    return sentiment, time.perf_counter() - t0


def _worker_main(
    conn: multiprocessing.connection.Connection,
    factory: Callable[[EngineOptions], AsrEngine],
    options: EngineOptions,
    sentiment_factory: Callable[[SentimentOptions], SentimentEngine] | None = None,
    sentiment_options: SentimentOptions | None = None,
) -> None:
    """Worker process: build the engines once, then answer ``(job_id, pcm, sentiment, language)`` messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        engine = factory(options)
        sentiment_engine = None
        if sentiment_factory is not None and sentiment_options is not None:
            sentiment_engine = sentiment_factory(sentiment_options)
    except BaseException as exc:  # noqa: BLE001 - report any load failure to the parent
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, pcm, want_sentiment, language = msg
        try:
            audio = pcm16_to_float32(pcm)
            transcript = engine.transcribe(audio, language=language)
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not kill the worker
            conn.send(("error", job_id, f"{type(exc).__name__}: {exc}"))
            continue
        sentiment, seconds = _sentiment_of(sentiment_engine if want_sentiment else None, transcript)
        conn.send(("ok", job_id, UtteranceResult(transcript, sentiment, seconds)))


@dataclass
class _Slot:
    index: int
    state: EngineState = EngineState.STARTING
    process: Any = None
    conn: multiprocessing.connection.Connection | None = None
    task: asyncio.Task[None] | None = None
    started: asyncio.Future[None] | None = None


class ProcessPool(AsrBackend):
    """Supervised worker processes behind a fair bounded queue. See the module docstring."""

    def __init__(self, options: PoolOptions) -> None:
        self.options = options
        self._ctx = multiprocessing.get_context("spawn")
        self._queue: FairQueue[Hashable, _Job] = FairQueue(options.max_queued, options.max_queued_per_session)
        self._slots = [_Slot(i) for i in range(options.workers)]
        self._ids = itertools.count()
        self._restarts = 0
        self._done = 0
        self._failed = 0
        self._guards = GuardCounts()
        self._closed = False

    # ------------------------------------------------------------------ AsrBackend

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            slot.started = loop.create_future()
            slot.task = asyncio.create_task(self._run_slot(slot), name=f"asr-worker-{slot.index}")
        results = await asyncio.gather(*(s.started for s in self._slots), return_exceptions=True)  # type: ignore[misc]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise ModelError(f"ASR engine failed to start: {errors[0]}")

    async def submit(self, session_key: Hashable, pcm: bytes, *, sentiment: bool = False,
                     language: LanguageRequest | None = None) -> asyncio.Future[UtteranceResult]:
        if self._closed:
            raise AsrError("the ASR pool is closed")
        job = _Job(next(self._ids), session_key, pcm, asyncio.get_running_loop().create_future(), sentiment, language=language)
        await self._queue.put(session_key, job)
        if self._closed:  # close() ran while we waited for room: nobody will serve the queue now
            for stale in self._queue.remove_all():
                stale.future.cancel()
            raise AsrError("the ASR pool is closed")
        return job.future

    def cancel_session(self, session_key: Hashable) -> None:
        for job in self._queue.remove_key(session_key):
            job.future.cancel()

    def status(self) -> BackendStatus:
        return BackendStatus(tuple(s.state for s in self._slots), len(self._queue), self._restarts, self._done, self._failed, self._guards)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*(s.task for s in self._slots if s.task is not None), return_exceptions=True)
        for slot in self._slots:
            self._stop_process(slot, graceful=True)
            slot.state = EngineState.STOPPED
            if slot.started is not None and not slot.started.done():  # closed during start()
                slot.started.set_exception(ModelError("the ASR pool was closed while starting"))
        for job in self._queue.remove_all():
            job.future.cancel()

    # ------------------------------------------------------------------ supervision

    async def _run_slot(self, slot: _Slot) -> None:
        while True:
            if slot.process is None:
                try:
                    await self._spawn(slot)
                except Exception as exc:  # ModelError, _WorkerDied, or e.g. pickling the factory failed
                    if slot.started is not None and not slot.started.done():
                        slot.started.set_exception(exc if isinstance(exc, ModelError) else ModelError(str(exc)))
                        return
                    log.error("engine %d failed to restart: %s; retrying in 1 s", slot.index, exc)
                    self._stop_process(slot, graceful=False)
                    await asyncio.sleep(1.0)
                    continue
                if slot.started is not None and not slot.started.done():
                    slot.started.set_result(None)
            slot.state = EngineState.IDLE
            key, job = await self._queue.get()
            if job.future.done():  # cancelled while queued
                continue
            slot.state = EngineState.BUSY
            job.attempts += 1
            try:
                reply = await self._exchange(slot, job)
            except _WorkerDied as exc:
                self._restarts += 1
                log.warning("engine %d died on utterance %d of %s (attempt %d): %s; restarting", slot.index, job.job_id, key, job.attempts, exc)
                self._stop_process(slot, graceful=False)
                slot.state = EngineState.RESTARTING
                self._retry_or_fail(job, f"ASR worker died: {exc}")
                continue
            except asyncio.CancelledError:  # close(): drop the utterance in flight like the queued ones
                job.future.cancel()
                raise
            if reply[0] == "ok":
                self._done += 1
                self._guards = self._guards.add(reply[2].transcript)
                if not job.future.done():
                    job.future.set_result(reply[2])
            else:
                log.warning("engine %d failed on utterance %d of %s: %s", slot.index, job.job_id, key, reply[2])
                self._retry_or_fail(job, reply[2])

    def _retry_or_fail(self, job: _Job, reason: str) -> None:
        if job.future.done():
            return
        if job.attempts < self.options.max_attempts:
            self._queue.put_front(job.session_key, job)
        else:
            self._failed += 1
            job.future.set_exception(AsrError(reason))

    async def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.options.engine_factory, self.options.engine, self.options.sentiment_factory, self.options.sentiment),
            name=f"whisper-streaming-asr-{slot.index}",
            daemon=True,
        )
        proc.start()
        child.close()
        slot.process, slot.conn = proc, parent
        t0 = time.monotonic()
        reply = await self._recv(slot, self.options.start_timeout_s)
        if reply[0] != "ready":
            raise ModelError(str(reply[1]))
        log.info("engine %d ready (pid %d) in %.1f s", slot.index, proc.pid, time.monotonic() - t0)

    async def _exchange(self, slot: _Slot, job: _Job) -> tuple[Any, ...]:
        assert slot.conn is not None
        try:
            slot.conn.send((job.job_id, job.pcm, job.sentiment, job.language))
        except (OSError, ValueError) as exc:
            raise _WorkerDied(f"send failed: {exc}") from exc
        while True:
            reply = await self._recv(slot, self.options.transcribe_timeout_s)
            if reply[1] == job.job_id:
                return reply

    async def _recv(self, slot: _Slot, timeout_s: float) -> tuple[Any, ...]:
        """Wait for one message from the worker without blocking the event loop."""
        conn = slot.conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        fd = conn.fileno()

        def on_readable() -> None:
            loop.remove_reader(fd)
            if fut.done():
                return
            try:
                fut.set_result(conn.recv())
            except (EOFError, OSError) as exc:
                fut.set_exception(_WorkerDied(f"pipe closed ({type(exc).__name__}), exit code {slot.process.exitcode if slot.process else None}"))

        loop.add_reader(fd, on_readable)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            raise _WorkerDied(f"no answer within {timeout_s} s (hung); killed") from None
        finally:
            loop.remove_reader(fd)

    def _stop_process(self, slot: _Slot, *, graceful: bool) -> None:
        proc, conn = slot.process, slot.conn
        slot.process = slot.conn = None
        if conn is not None:
            if graceful and proc is not None and proc.is_alive():
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
            conn.close()
        if proc is None:
            return
        proc.join(timeout=2.0 if graceful else 0.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5.0)
