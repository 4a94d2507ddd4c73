"""The local backend: ``model.channel`` worker processes, each loading its ASR engine once.

:class:`ProcessPool` implements :class:`~whisper_streaming.backends.base.AsrBackend`.  The
analyzers (:mod:`whisper_streaming.analyzers`) run in the workers too, right after the
transcription (a transformers model must never run on the event loop): each worker builds the
analyzers of :attr:`PoolOptions.analyzers` once, and runs those a job names.  The worker side
is :mod:`whisper_streaming.backends.worker`.

:class:`ProcessPool` supervises ``spawn``-ed worker processes (the uvicorn supervisor idea:
the parent never runs model code, so a crashing model cannot take the server down):

* utterances from all sessions wait in one :class:`~whisper_streaming.backends.scheduler.FairQueue`
  (round-robin per session, bounded);
* each worker slot is driven by one asyncio task: take the next utterance, send it over a
  pipe, wait for the answer with a timeout;
* a worker that dies (EOF on its pipe) or exceeds ``transcribe_timeout_s`` is killed and
  restarted; its utterance goes back to the head of its session's queue once; a second
  failure fails that utterance alone (:class:`~whisper_streaming.errors.AsrError`);
* the retry of an utterance whose worker hung (timed out) is a *minimal* decode
  (:attr:`WorkerJob.minimal <whisper_streaming.backends.worker.WorkerJob.minimal>`: one
  greedy attempt, tight token and time bounds) and is given only
  ``transcribe_timeout_s * retry_timeout_fraction``, so a second hang costs a quarter of the
  first, not as much again.  A worker that crashed (EOF) is retried at full cost, as
  before: a crash ends at once instead of holding a worker for the timeout, and is no sign
  that the audio is expensive;
* partial hypotheses (``UtteranceJob.partial``) run on their own workers when
  ``partial_workers`` > 0 (started with the pool but not waited for: a server whose partial
  worker fails to load still serves finals; never queued: a partial that finds no idle
  partial worker fails at once and is offered again later with more audio), so a final never waits for a partial's worker.  They never take CPU from a final
  either: while ``pause_partials_at`` or more workers run finals (or speculations), the busy
  partial workers are paused (``SIGSTOP``, resumed with ``SIGCONT``; POSIX only).  On a
  2-vCPU machine a decode running beside another takes 20 % longer (the two vCPUs share one
  core's caches), so a partial that merely overlapped the end of an utterance delayed its
  final.  A partial's hang timeout counts only the time it ran.  With ``partial_workers`` 0
  partials share the workers (and the queue) of the finals, unpaused;
* chunks of files for the batch API (``UtteranceJob.batch``) wait in a queue of their own
  and are low priority: a worker takes one only when no streaming utterance waits; while a
  streaming job was submitted within ``batch_live_window_s``, batch work leaves
  ``batch_reserve_workers`` workers to the streams (with two or more workers), so a final never
  queues behind a chunk of a file; and a worker busy with a chunk is paused like a partial
  worker while ``pause_partials_at`` workers run streaming finals, so it takes no CPU from them.
  With no stream live, a file uses every worker;
* each exchange's wall time is charged to its session
  (:class:`~whisper_streaming.backends.scheduler.CostThrottle`, when
  ``throttle_worker_s_per_s`` is set): a session that keeps costing more worker time than
  that per second of wall clock is held back in the queue until it has earned it back while
  other sessions have work, and never takes the last idle worker (with two or more); alone,
  it is served as before.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Callable

from whisper_streaming.analyzers.base import AnalyzerSpec
from whisper_streaming.backends.base import (
    AsrBackend,
    BackendStatus,
    Capacity,
    EngineState,
    GuardCounts,
    UtteranceJob,
    UtteranceResult,
)
from whisper_streaming.backends.scheduler import CostThrottle, FairQueue
from whisper_streaming.backends.worker import JobDone, JobFailed, JobStopped, WorkerInitError, WorkerJob, WorkerReady, worker_main
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.engines.base import AsrEngine, EngineOptions
from whisper_streaming.engines.registry import create_engine
from whisper_streaming.errors import AsrError, ModelError

__all__ = ["ProcessPool", "PoolOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolOptions:
    """Sizes and limits of a :class:`ProcessPool`.

    ``engine_factory`` and each analyzer spec must be picklable (module-level functions);
    they run in the worker.  ``analyzers``: built once per worker; a job asking for an
    analysis no spec provides gets no annotation for it.

    ``retry_timeout_fraction``: the retry of an utterance whose worker hung is a minimal
    decode, killed after ``transcribe_timeout_s`` times this; a partial hypothesis too (its
    running time only: a paused partial does not time out).

    ``partial_workers``: worker processes for partial hypotheses only (0: partials share the
    workers of the finals); started with the pool, not waited for.
    ``pause_partials_at``: pause the partial workers, and the workers busy with batch chunks,
    while at least this many workers run streaming finals (None: never; 1 suits a machine with
    as many cores as workers plus partial workers, one thread each: see the module docstring).

    ``batch_reserve_workers``: workers batch chunks leave to the streams while a stream is
    live (a streaming job submitted within the last ``batch_live_window_s``); never all of
    them: one worker is always lent to batch work.

    ``throttle_worker_s_per_s`` / ``throttle_burst_s``: per-session token bucket of worker
    seconds (:class:`~whisper_streaming.backends.scheduler.CostThrottle`): a session may keep
    this many worker seconds busy per second of wall clock on average, after a burst of
    ``throttle_burst_s``; past it its utterances wait while other sessions have work, and it
    never takes the last idle worker.  The defaults (1.0 and 20): a session may keep one
    worker busy all the time; real-time speech costs 0.1-0.2 worker-s per second with the
    base model on 2 CPU cores, unscreened noise (babble, coloured noise) up to 1.2.  None
    or 0 turns throttling off.
    """

    engine: EngineOptions
    workers: int = 1
    max_queued: int = 64
    max_queued_per_session: int = 8
    transcribe_timeout_s: float = 60.0
    start_timeout_s: float = 600.0
    max_attempts: int = 2
    engine_factory: Callable[[EngineOptions], AsrEngine] = create_engine
    analyzers: tuple[AnalyzerSpec, ...] = ()
    retry_timeout_fraction: float = 0.25
    throttle_worker_s_per_s: float | None = 1.0
    throttle_burst_s: float = 20.0
    partial_workers: int = 0
    pause_partials_at: int | None = 1
    batch_reserve_workers: int = 1
    batch_live_window_s: float = 15.0


@dataclass
class _Job:
    job_id: int
    session_key: Hashable
    job: UtteranceJob
    future: asyncio.Future[UtteranceResult]
    attempts: int = 0
    minimal: bool = False  # a worker hung on it: later attempts are minimal decodes


class _WorkerDied(Exception):
    pass


class _WorkerHung(_WorkerDied):
    """No answer within the timeout: the worker is killed like a dead one."""


@dataclass
class _Slot:
    index: int
    state: EngineState = EngineState.STARTING
    process: Any = None
    conn: multiprocessing.connection.Connection | None = None
    task: asyncio.Task[None] | None = None
    started: asyncio.Future[None] | None = None
    partial: bool = False  # busy with a partial hypothesis
    batch: bool = False  # busy with a chunk of a file (batch API): low priority, paused like a partial
    for_partials: bool = False  # a partial worker: takes jobs from its inbox, not the fair queue
    inbox: asyncio.Queue[tuple[Hashable, _Job]] | None = None  # a partial worker's next job (at most one)
    paused_at: float | None = None  # SIGSTOPped at this monotonic time (a partial, while a final runs)
    paused_s: float = 0.0  # time paused during the current job
    stop: Any = None  # shared with the worker: the id of its job that was withdrawn (worker.py)


def _stop_when_withdrawn(slot: _Slot, job_id: int) -> Callable[[asyncio.Future[UtteranceResult]], None]:
    """A done-callback for a running job's future: when it is cancelled (a speculation withdrawn,
    a session gone), tell the slot's worker to give the job up at its next stage."""
    def done(fut: asyncio.Future[UtteranceResult]) -> None:
        if fut.cancelled() and slot.stop is not None:
            slot.stop.value = job_id
    return done


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


CAN_PAUSE = hasattr(signal, "SIGSTOP") and hasattr(os, "kill")
"""Whether worker processes can be paused (POSIX job-control signals)."""


class ProcessPool(AsrBackend):
    """Supervised worker processes behind a fair bounded queue. See the module docstring."""

    def __init__(self, options: PoolOptions) -> None:
        self.options = options
        self._ctx = multiprocessing.get_context("spawn")
        rate = options.throttle_worker_s_per_s
        self._throttle: CostThrottle[Hashable] | None = CostThrottle(rate, options.throttle_burst_s) if rate else None
        # with two or more workers a held session never takes the last idle one (scheduler.py)
        self._queue: FairQueue[Hashable, _Job] = FairQueue(options.max_queued, options.max_queued_per_session, self._throttle,
                                                           reserve_getters=1 if options.workers > 1 else 0)
        self._batch: FairQueue[Hashable, _Job] = FairQueue(1 << 20, 1 << 20)  # the service bounds what it puts in flight
        self._batch_wakeup: list[asyncio.Future[None]] = []
        self._live_at = -float("inf")  # monotonic time of the last streaming job submitted
        self._slots = [_Slot(i) for i in range(options.workers)]
        self._partial_slots = [_Slot(options.workers + i, for_partials=True) for i in range(options.partial_workers)]
        self._ids = itertools.count()
        self._restarts = 0
        self._timeouts = 0
        self._stopped = 0  # jobs withdrawn while running and given up by their worker
        self._done = 0
        self._failed = 0
        self._guards = GuardCounts()
        self._worker_s = 0.0  # seconds workers held jobs, all kinds
        self._closed = False

    # ------------------------------------------------------------------ AsrBackend

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            slot.started = loop.create_future()
            slot.task = asyncio.create_task(self._run_slot(slot), name=f"asr-worker-{slot.index}")
        for slot in self._partial_slots:  # no ``started`` future: a failing load is retried every second
            slot.inbox = asyncio.Queue(maxsize=1)
            slot.task = asyncio.create_task(self._run_slot(slot), name=f"asr-partial-worker-{slot.index}")
        results = await asyncio.gather(*(s.started for s in self._slots), return_exceptions=True)  # type: ignore[misc]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise ModelError(f"ASR engine failed to start: {errors[0]}")

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        if self._closed:
            raise AsrError("the ASR pool is closed")
        job = _Job(next(self._ids), session_key, job, asyncio.get_running_loop().create_future())
        if job.job.batch is not None:
            await self._batch.put(session_key, job)
            self._wake_batch_getters()
            return job.future
        self._live_at = time.monotonic()
        if job.job.partial and self._partial_slots:
            self._hand_to_partial_worker(session_key, job)
            return job.future
        await self._queue.put(session_key, job)
        if self._closed:  # close() ran while we waited for room: nobody will serve the queue now
            for stale in self._queue.remove_all():
                stale.future.cancel()
            raise AsrError("the ASR pool is closed")
        return job.future

    def _hand_to_partial_worker(self, session_key: Hashable, job: _Job) -> None:
        """Give a partial to an idle partial worker, or fail it at once (partials are never queued).

        Raises:
            AsrError: no partial worker is idle (busy, paused or still loading).
        """
        for slot in self._partial_slots:
            if slot.inbox is not None and slot.state is EngineState.IDLE and slot.inbox.empty():
                slot.inbox.put_nowait((session_key, job))
                return
        raise AsrError("no idle partial worker")

    def cancel_session(self, session_key: Hashable) -> None:
        for job in self._queue.remove_key(session_key) + self._batch.remove_key(session_key):
            job.future.cancel()
        self._wake_batch_getters()  # the streams' queue may be empty now: an idle worker may take a chunk
        if self._throttle is not None:
            self._throttle.forget(session_key)

    def drain_shortest_first(self) -> None:
        self._queue.drain_shortest_first()

    def _idle_slots(self) -> int:
        return sum(s.state is EngineState.IDLE for s in self._slots)

    def capacity(self) -> Capacity:
        idle = self._idle_slots()
        partial = sum(s.state is EngineState.BUSY and s.partial for s in self._slots)
        ready = any(s.state is EngineState.IDLE and s.inbox is not None and s.inbox.empty() for s in self._partial_slots)
        return Capacity(idle_slots=idle, queue_depth=len(self._queue), slots=len(self._slots), held=self._queue.held(),
                        partial_slots=partial, partial_workers=len(self._partial_slots),
                        partial_worker_ready=ready and not self._partials_paused_now(),
                        batch_slots=sum(s.state is EngineState.BUSY and s.batch for s in self._slots))

    def starts_at_once(self, session_key: Hashable) -> bool:
        """The queue's own rule (:meth:`FairQueue.serves_at_once`): not throttled, and no job of
        its own running unless more engines are idle than the queue keeps in reserve."""
        return self._queue.serves_at_once(session_key, self._idle_slots())

    def status(self) -> BackendStatus:
        throttled = 0 if self._throttle is None else self._throttle.keys_throttled
        return BackendStatus(tuple(s.state for s in self._slots), len(self._queue), self._restarts, self._done, self._failed, self._guards,
                             worker_timeouts=self._timeouts, sessions_throttled=throttled, worker_s=self._worker_s,
                             jobs_stopped=self._stopped)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        every = self._slots + self._partial_slots
        for slot in every:
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*(s.task for s in every if s.task is not None), return_exceptions=True)
        for slot in every:  # a busy or loading worker is killed: nobody waits for its work now
            self._stop_process(slot, graceful=slot.state is EngineState.IDLE)
            slot.state = EngineState.STOPPED
            if slot.started is not None and not slot.started.done():  # closed during start()
                slot.started.set_exception(ModelError("the ASR pool was closed while starting"))
        for job in self._queue.remove_all() + self._batch.remove_all():
            job.future.cancel()
        self._wake_batch_getters()
        for slot in self._partial_slots:  # a partial handed over but not yet taken
            while slot.inbox is not None and not slot.inbox.empty():
                slot.inbox.get_nowait()[1].future.cancel()

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
            self._balance_partials()
            if slot.inbox is not None:
                key, job = await slot.inbox.get()
            else:
                key, job = await self._next_job()
            batch = job.job.batch is not None
            queue = self._batch if batch else self._queue
            if not batch and len(self._queue) == 0:
                self._wake_batch_getters()  # no stream waits now: an idle worker may take a chunk
            counted = not job.job.partial
            if not counted and slot.inbox is None:  # a partial never makes the session's final wait for it (scheduler.py)
                self._queue.task_done(key)
            try:
                if job.future.done():  # cancelled while queued
                    continue
                slot.state = EngineState.BUSY
                slot.partial = job.job.partial
                slot.batch = batch
                slot.paused_s = 0.0
                self._balance_partials()
                job.attempts += 1
                t0 = time.monotonic()
                withdrawn = _stop_when_withdrawn(slot, job.job_id)
                job.future.add_done_callback(withdrawn)
                try:
                    reply = await self._exchange(slot, job)
                except _WorkerDied as exc:
                    self._charge(job, time.monotonic() - t0)
                    self._restarts += 1
                    hung = isinstance(exc, _WorkerHung)
                    if hung:  # whatever made it hang must not cost as much again: retry as a minimal decode
                        self._timeouts += 1
                        job.minimal = True
                    log.warning("engine %d %s on utterance %d of %s (attempt %d): %s; restarting%s", slot.index, "hung" if hung else "died",
                                job.job_id, key, job.attempts, exc, "; a retry is a minimal decode" if hung else "")
                    self._stop_process(slot, graceful=False)
                    slot.state = EngineState.RESTARTING
                    self._retry_or_fail(job, f"ASR worker died: {exc}")
                    continue
                except asyncio.CancelledError:  # close(): drop the utterance in flight like the queued ones
                    job.future.cancel()
                    raise
                finally:
                    job.future.remove_done_callback(withdrawn)
                self._charge(job, time.monotonic() - t0)
                if isinstance(reply, JobStopped):
                    self._stopped += 1
                    if not job.future.done():  # only a cancel stops a job today; never leave a waiter hanging
                        job.future.cancel()
                elif isinstance(reply, JobDone):
                    self._done += 1
                    self._guards = self._guards.add(reply.result.transcript)
                    if not job.future.done():
                        job.future.set_result(reply.result)
                else:
                    log.warning("engine %d failed on utterance %d of %s: %s", slot.index, job.job_id, key, reply.message)
                    self._retry_or_fail(job, reply.message)
            finally:
                self._resume(slot)
                slot.partial = slot.batch = False
                if counted:
                    queue.task_done(key)  # its worker is free: the session's next utterance may go
                if batch:
                    self._wake_batch_getters()  # one fewer worker on batch work: another may take a chunk

    # ------------------------------------------------------------------ batch work

    def _batch_allowed(self) -> bool:
        """Whether an idle worker may take a batch chunk now: no streaming utterance waits, and
        while a stream is live, fewer than ``workers - batch_reserve_workers`` (at least one)
        workers are busy with chunks."""
        if len(self._batch) == 0 or len(self._queue) > 0 or self._closed:
            return False
        limit = len(self._slots)
        if time.monotonic() - self._live_at < self.options.batch_live_window_s:
            limit = max(1, limit - self.options.batch_reserve_workers)
        return sum(s.batch for s in self._slots) < limit

    def _wake_batch_getters(self) -> None:
        for fut in self._batch_wakeup:
            if not fut.done():
                fut.set_result(None)
        self._batch_wakeup.clear()

    async def _next_job(self) -> tuple[Hashable, _Job]:
        """The next job for a worker of the finals: a streaming utterance first; a batch chunk
        when :meth:`_batch_allowed`.  Waits for either; a stream's arrival wins a tie."""
        loop = asyncio.get_running_loop()
        while True:
            if self._batch_allowed():
                return await self._batch.get()  # not empty: returns at once
            live = asyncio.ensure_future(self._queue.get())
            wakeup = loop.create_future()
            self._batch_wakeup.append(wakeup)
            # a stream that stops being live frees the reserved worker for batch work
            timer = loop.call_later(self.options.batch_live_window_s, _set_done, wakeup) if len(self._batch) else None
            try:
                await asyncio.wait({live, wakeup}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                live.cancel()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                if wakeup in self._batch_wakeup:
                    self._batch_wakeup.remove(wakeup)
            if not live.done():
                live.cancel()
                try:
                    await live
                except asyncio.CancelledError:
                    if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                        raise
                    continue
            return live.result()

    # ------------------------------------------------------------------ pausing partials

    def _partials_paused_now(self) -> bool:
        """Whether enough workers run finals that the partial workers must wait (``pause_partials_at``)."""
        at = self.options.pause_partials_at
        if at is None or not CAN_PAUSE:
            return False
        return sum(s.state is EngineState.BUSY and not s.partial and not s.batch for s in self._slots) >= at

    def _balance_partials(self) -> None:
        """Pause the busy partial workers and batch chunks while finals need the CPU; else let them run."""
        if self._closed:
            return
        pause = self._partials_paused_now()
        for slot in self._partial_slots + [s for s in self._slots if s.batch or s.paused_at is not None]:
            if pause and slot.state is EngineState.BUSY and slot.paused_at is None:
                self._signal(slot, signal.SIGSTOP)
                slot.paused_at = time.monotonic()
            elif not pause:
                self._resume(slot)

    def _resume(self, slot: _Slot) -> None:
        if slot.paused_at is None:
            return
        slot.paused_s += time.monotonic() - slot.paused_at
        slot.paused_at = None
        self._signal(slot, signal.SIGCONT)

    @staticmethod
    def _signal(slot: _Slot, signum: int) -> None:
        proc = slot.process
        if proc is not None and proc.pid is not None:
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:  # died meanwhile: its pipe reports it
                pass

    def _charge(self, job: _Job, worker_s: float) -> None:
        self._worker_s += worker_s
        if self._throttle is not None and not job.job.partial and job.job.batch is None:  # partials and chunks of files: low priority, not a stream's cost
            self._throttle.charge(job.session_key, worker_s, len(job.job.pcm) / (2 * ASR_SAMPLE_RATE_HZ))

    def _retry_or_fail(self, job: _Job, reason: str) -> None:
        if job.future.done():
            return
        if job.attempts < self.options.max_attempts and not job.job.partial:  # a partial is never retried (nor queued)
            if job.job.batch is not None:
                self._batch.put_front(job.session_key, job)
                self._wake_batch_getters()
            else:
                self._queue.put_front(job.session_key, job)
        else:
            self._failed += 1
            job.future.set_exception(AsrError(reason))

    async def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        slot.stop = self._ctx.Value("q", -1, lock=False)  # one writer (this loop), one reader (the worker)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, self.options.engine_factory, self.options.engine, self.options.analyzers, slot.stop),
            name=f"whisper-streaming-asr-{slot.index}",
            daemon=True,
        )
        proc.start()
        child.close()
        slot.process, slot.conn = proc, parent
        t0 = time.monotonic()
        reply = await self._recv(slot, self.options.start_timeout_s)
        if not isinstance(reply, WorkerReady):
            raise ModelError(reply.message if isinstance(reply, WorkerInitError) else f"unexpected worker reply {reply!r}")
        log.info("engine %d ready (pid %d) in %.1f s", slot.index, proc.pid, time.monotonic() - t0)

    async def _exchange(self, slot: _Slot, job: _Job) -> JobDone | JobFailed | JobStopped:
        assert slot.conn is not None
        try:
            slot.conn.send(WorkerJob(job.job_id, job.job.pcm, job.job.language, job.job.analyses, minimal=job.minimal or job.job.partial,
                                     batch=None if job.minimal else job.job.batch))
        except (OSError, ValueError) as exc:
            raise _WorkerDied(f"send failed: {exc}") from exc
        timeout_s = self.options.transcribe_timeout_s
        if job.minimal or job.job.partial:  # a minimal decode: a quarter of the timeout
            timeout_s *= self.options.retry_timeout_fraction
        t0 = time.monotonic()
        while True:
            try:
                reply = await self._recv(slot, timeout_s - self._ran_s(slot, t0))
            except _WorkerHung:
                if self._ran_s(slot, t0) < timeout_s:  # paused part of the time: the timeout counts only running time
                    continue
                raise
            if isinstance(reply, (JobDone, JobFailed, JobStopped)) and reply.job_id == job.job_id:
                return reply

    @staticmethod
    def _ran_s(slot: _Slot, since: float) -> float:
        """Seconds since ``since`` that the slot's worker was not paused."""
        now = time.monotonic()
        paused = slot.paused_s + (now - slot.paused_at if slot.paused_at is not None else 0.0)
        return now - since - paused

    async def _recv(self, slot: _Slot, timeout_s: float) -> Any:
        """Wait for one message from the worker without blocking the event loop."""
        conn = slot.conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
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
            raise _WorkerHung(f"no answer within {timeout_s:g} s (hung); killed") from None
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
