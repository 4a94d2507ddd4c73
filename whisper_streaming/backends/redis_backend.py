"""The front end's side of the Redis backend: utterances to worker hosts on other machines.

:class:`RedisBackend` implements :class:`~whisper_streaming.backends.base.AsrBackend` on Redis
Streams (layout and recovery in :mod:`whisper_streaming.backends.redis_protocol`; the worker
side is :mod:`whisper_streaming.backends.redis_worker`):

* **Fairness stays here.**  Utterances wait in the same
  :class:`~whisper_streaming.backends.scheduler.FairQueue` as the local pool's (round robin per
  session, one running per session first, the cost throttle), and at most as many are handed to
  Redis at once as the live worker hosts have engines (``max_in_flight`` to set it), so a chatty
  session cannot flood the shared stream and the queue's bound still turns into TCP
  backpressure.  Partial hypotheses and chunks of files wait in a second queue, handed over only
  when no streaming utterance waits, and go to the low-priority stream.
* **At-least-once delivery, exactly-once results.**  A job's future resolves on the first
  answer; a second one (the job was redelivered while its first host was only late) is dropped
  and counted.  A job with no answer ``result_timeout_s`` after it was handed over fails
  (:class:`~whisper_streaming.errors.AsrError`).
* **Redis down.**  While Redis does not answer, or no worker host is alive, :meth:`capacity`
  says ``available=False`` (the runtime refuses new sessions with ``SERVER_TOO_BUSY``); the
  backend reconnects every ``heartbeat_s``.  A Redis that comes back within
  ``unavailable_grace_s`` loses nothing: after a restart (a new ``run_id``) the jobs it lost
  are handed over again from this process's memory.  Past the grace, every waiting job fails
  with :class:`~whisper_streaming.errors.BackendUnavailableError` (``%E BACKEND_UNAVAILABLE``
  for their sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from whisper_streaming.backends.base import (
    AsrBackend,
    BackendStatus,
    Capacity,
    EngineState,
    GuardCounts,
    RemoteStatus,
    UtteranceJob,
    UtteranceResult,
)
from whisper_streaming.backends.redis_protocol import (
    MessageError,
    RedisKeys,
    RedisOptions,
    WireJob,
    WireResult,
    WorkerRecord,
    dumps,
    loads,
)
from whisper_streaming.backends.scheduler import CostThrottle, FairQueue
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.errors import AsrError, BackendUnavailableError, ConfigError

__all__ = ["RedisBackend", "RedisBackendOptions", "connect", "ensure_groups", "read_workers", "safe_url"]

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
"""A blocking ``XREAD``/``XREADGROUP`` returns after this long with nothing (ms)."""


@dataclass(frozen=True)
class RedisBackendOptions:
    """The front end's limits (config sections ``backend`` and ``server``).

    ``max_queued`` / ``max_queued_per_session`` and the throttle: as
    :class:`~whisper_streaming.backends.pool.PoolOptions`.  ``max_in_flight``: utterances handed
    to Redis at once (0: as many as the live worker hosts have engines).
    ``result_timeout_s``: a job handed over with no answer after this long fails.
    ``unavailable_grace_s``: how long waiting jobs outlive Redis being unreachable or no worker
    host being alive before they fail.
    """

    redis: RedisOptions = RedisOptions()
    max_queued: int = 64
    max_queued_per_session: int = 8
    max_in_flight: int = 0
    result_timeout_s: float = 180.0
    unavailable_grace_s: float = 5.0
    throttle_worker_s_per_s: float | None = 1.0
    throttle_burst_s: float = 20.0


@dataclass
class _Job:
    job_id: str
    session_key: Hashable
    job: UtteranceJob
    future: asyncio.Future[UtteranceResult]
    queue: FairQueue[Hashable, _Job]
    handed_at: float | None = None  # monotonic time it went to Redis


def safe_url(url: str) -> str:
    """``url`` without its credentials (for logs): ``redis://***@host:6379/0``."""
    scheme, sep, rest = url.partition("://")
    _creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}"


def connect(options: RedisOptions, *, blocking: bool = False) -> aioredis.Redis:
    """A redis-py asyncio client for ``options.url`` (``rediss://`` for TLS, credentials in the
    URL); ``blocking``: for ``XREAD ... BLOCK`` (its socket timeout allows the block)."""
    timeout_s = options.connect_timeout_s + (READ_BLOCK_MS / 1000 if blocking else 0.0)
    # no retries inside redis-py (its default retries a refused password too, for seconds): the
    # loops of the backend and the worker host reconnect on their own schedule
    return aioredis.Redis.from_url(options.url, socket_connect_timeout=options.connect_timeout_s, socket_timeout=timeout_s,
                                   health_check_interval=0, retry=Retry(NoBackoff(), 0))


async def ensure_groups(client: aioredis.Redis, keys: RedisKeys, group: str) -> None:
    """Create the job streams and their consumer group if missing (after a Redis restart too).

    The group starts at the streams' first entry (``0``), not at the end: a job a front end
    added before the group existed must still be read.
    """
    for stream in (keys.jobs, keys.jobs_low):
        try:
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def read_workers(client: aioredis.Redis, keys: RedisKeys) -> list[WorkerRecord]:
    """The live worker hosts: their records that have not expired (expired ones leave the set)."""
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await client.smembers(keys.workers))
    if not ids:
        return []
    values = await client.mget([keys.worker(i) for i in ids])
    records, gone = [], []
    for worker_id, value in zip(ids, values):
        if value is None:
            gone.append(worker_id)
            continue
        try:
            records.append(loads(value, WorkerRecord))
        except MessageError as exc:
            log.warning("worker record %s: %s", worker_id, exc)
    if gone:
        await client.srem(keys.workers, *gone)
    return records


class RedisBackend(AsrBackend):
    """Utterances to worker hosts through Redis Streams. See the module docstring."""

    def __init__(self, options: RedisBackendOptions) -> None:
        self.options = options
        self.keys = RedisKeys(options.redis.prefix)
        self.frontend_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.results_key = self.keys.results(self.frontend_id)
        rate = options.throttle_worker_s_per_s
        self._throttle: CostThrottle[Hashable] | None = CostThrottle(rate, options.throttle_burst_s) if rate else None
        self._queue: FairQueue[Hashable, _Job] = FairQueue(options.max_queued, options.max_queued_per_session, self._throttle)
        self._low: FairQueue[Hashable, _Job] = FairQueue(1 << 20, 1 << 20)  # partials and chunks: their producers bound them
        self._in_flight: dict[str, _Job] = {}
        self._workers: list[WorkerRecord] = []
        self._ids = itertools.count()
        self._client: aioredis.Redis | None = None
        self._reader_client: aioredis.Redis | None = None
        self._connected = False
        self._run_id: str | None = None
        self._last_result_id = "0-0"
        self._unavailable_since: float | None = time.monotonic()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._done = 0
        self._failed = 0
        self._duplicates = 0
        self._resubmitted = 0
        self._guards = GuardCounts()
        self._worker_s = 0.0
        self._last_error_log = 0.0
        self._gone_redelivered = 0  # counters of worker hosts no longer live
        self._gone_restarts = 0

    # ------------------------------------------------------------------ AsrBackend

    async def start(self) -> None:
        """Connect (a Redis that does not answer yet is retried in the background; the server
        starts and refuses sessions until it does).

        Raises:
            ConfigError: Redis refused the credentials of ``url``.
        """
        self._client = connect(self.options.redis)
        self._reader_client = connect(self.options.redis, blocking=True)
        try:
            await self._connect()
        except AuthenticationError as exc:
            await self.close()
            raise ConfigError(f"backend.redis_url: Redis refused the credentials: {exc}") from None
        except (RedisError, OSError) as exc:
            log.warning("redis %s not reachable yet (%s); retrying every %g s", self._safe_url(), exc, self.options.redis.heartbeat_s)
        self._tasks = [asyncio.create_task(self._dispatch_loop(), name="redis-dispatch"),
                       asyncio.create_task(self._result_loop(), name="redis-results"),
                       asyncio.create_task(self._monitor_loop(), name="redis-monitor")]

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        if self._closed:
            raise AsrError("the Redis backend is closed")
        queue = self._low if job.partial or job.batch is not None else self._queue
        item = _Job(f"{self.frontend_id}:{next(self._ids)}", session_key, job, asyncio.get_running_loop().create_future(), queue)
        await queue.put(session_key, item)
        if self._closed:
            for stale in queue.remove_all():
                stale.future.cancel()
            raise AsrError("the Redis backend is closed")
        self._wake.set()
        return item.future

    def cancel_session(self, session_key: Hashable) -> None:
        for item in self._queue.remove_key(session_key) + self._low.remove_key(session_key):
            item.future.cancel()
        if self._throttle is not None:
            self._throttle.forget(session_key)
        self._wake.set()

    def drain_shortest_first(self) -> None:
        self._queue.drain_shortest_first()

    def _idle(self) -> int:
        return max(0, self._limit() - len(self._in_flight)) if self._available() else 0

    def capacity(self) -> Capacity:
        return Capacity(idle_slots=self._idle(), queue_depth=len(self._queue), slots=self._live_slots(), held=self._queue.held(),
                        available=self._available())

    def starts_at_once(self, session_key: Hashable) -> bool:
        """The queue's own rule (:meth:`FairQueue.serves_at_once`; it keeps no reserve worker here)."""
        return self._queue.serves_at_once(session_key, self._idle())

    def status(self) -> BackendStatus:
        live = [w for w in self._workers if not w.draining]
        engines: list[EngineState] = []
        for w in live:
            busy = min(w.busy, w.slots)
            engines += [EngineState.BUSY] * busy + [EngineState.IDLE] * (w.slots - busy)
        remote = RemoteStatus(broker="redis", connected=self._connected, workers_live=len(live), slots_live=self._live_slots(),
                              slots_busy=sum(min(w.busy, w.slots) for w in live), jobs_in_flight=len(self._in_flight),
                              jobs_redelivered=self._gone_redelivered + sum(w.redelivered for w in self._workers),
                              duplicates_dropped=self._duplicates,
                              jobs_resubmitted=self._resubmitted)
        throttled = 0 if self._throttle is None else self._throttle.keys_throttled
        restarts = self._gone_restarts + sum(w.engine_restarts for w in self._workers)
        return BackendStatus(tuple(engines), len(self._queue), restarts, self._done, self._failed, self._guards,
                             sessions_throttled=throttled, worker_s=self._worker_s, remote=remote)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:  # each loop also ends on ``_closed``: redis-py may turn a cancellation into a ConnectionError
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        for item in self._queue.remove_all() + self._low.remove_all() + list(self._in_flight.values()):
            item.future.cancel()
        self._in_flight.clear()
        if self._client is not None and self._connected:  # nobody will read our result stream again
            with contextlib.suppress(RedisError, OSError):
                await asyncio.wait_for(self._client.delete(self.results_key), self.options.redis.connect_timeout_s)
        for client in (self._client, self._reader_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    # ------------------------------------------------------------------ state

    def _live_slots(self) -> int:
        return sum(w.slots for w in self._workers if not w.draining)

    def _limit(self) -> int:
        return self.options.max_in_flight or self._live_slots()

    def _available(self) -> bool:
        return self._connected and self._live_slots() > 0

    def _safe_url(self) -> str:
        return safe_url(self.options.redis.url)

    def _lost(self, exc: BaseException) -> None:
        if self._connected:
            log.error("redis %s lost: %s; new sessions are refused until it answers", self._safe_url(), exc)
        self._connected = False
        if self._unavailable_since is None:
            self._unavailable_since = time.monotonic()

    async def _connect(self) -> None:
        """PING, note the server's ``run_id`` (a restart lost every stream: hand the jobs in
        flight over again, read results from the start), make the groups.

        Raises:
            RedisError, OSError: Redis does not answer.
        """
        assert self._client is not None
        info = await self._client.info("server")
        run_id = str(info.get("run_id"))
        await ensure_groups(self._client, self.keys, self.options.redis.group)
        if self._run_id is not None and run_id != self._run_id:
            self._last_result_id = "0-0"
            lost = list(self._in_flight.values())
            self._in_flight.clear()
            for item in lost:  # back to the head of their session's line, in order
                item.queue.task_done(item.session_key)
            for item in reversed(lost):
                item.handed_at = None
                item.queue.put_front(item.session_key, item)
            self._resubmitted += len(lost)
            if lost:
                log.warning("redis restarted (run_id changed): %d utterance(s) in flight are handed over again", len(lost))
        self._run_id = run_id
        if not self._connected:
            log.info("redis %s connected (run_id %s)", self._safe_url(), run_id[:8])
        self._connected = True
        self._wake.set()

    # ------------------------------------------------------------------ loops

    async def _dispatch_loop(self) -> None:
        """Hand queued jobs to Redis while there is room: streaming utterances first."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._available() and len(self._in_flight) < self._limit():
                got = self._queue.get_nowait() or self._low.get_nowait()
                if got is None:
                    break
                key, item = got
                if item.future.done():  # cancelled while queued
                    item.queue.task_done(key)
                    continue
                if not await self._hand_over(item):
                    break

    async def _hand_over(self, item: _Job) -> bool:
        """``XADD`` one job; False (the job back at the head of its line) when Redis failed."""
        assert self._client is not None
        wire = WireJob(item.job_id, self.results_key, str(item.session_key), item.job)
        item.handed_at = time.monotonic()
        self._in_flight[item.job_id] = item
        try:
            await self._client.xadd(self.keys.job_stream(item.job), {"id": item.job_id, "body": dumps(wire)})
        except (RedisError, OSError) as exc:
            self._in_flight.pop(item.job_id, None)
            item.handed_at = None
            item.queue.task_done(item.session_key)
            item.queue.put_front(item.session_key, item)
            self._lost(exc)
            return False
        return True

    async def _result_loop(self) -> None:
        """Read this front end's result stream; resolve each job's future once."""
        while not self._closed:
            if not self._connected or self._reader_client is None:
                await asyncio.sleep(0.05)
                continue
            try:
                got = await self._reader_client.xread({self.results_key: self._last_result_id}, count=100, block=READ_BLOCK_MS)
            except (RedisError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(0.05)
                continue
            seen = []
            for _stream, entries in got or ():
                for entry_id, fields in entries:
                    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    self._last_result_id = entry
                    seen.append(entry)
                    self._on_result(fields)
            if seen:
                with contextlib.suppress(RedisError, OSError):
                    assert self._client is not None
                    await self._client.xdel(self.results_key, *seen)

    def _on_result(self, fields: dict[Any, Any]) -> None:
        try:
            answer = loads(fields.get(b"body", b""), WireResult)
        except MessageError as exc:
            log.warning("result dropped: %s", exc)
            return
        item = self._in_flight.pop(answer.job_id, None)
        if item is None:  # answered already (a redelivered job answered twice), or given up on
            self._duplicates += 1
            log.info("duplicate result for %s from worker %s dropped", answer.job_id, answer.worker_id)
            return
        item.queue.task_done(item.session_key)
        self._wake.set()
        result = answer.result
        worker_s = answer.worker_s
        self._worker_s += worker_s
        if self._throttle is not None and item.queue is self._queue and not item.job.partial:
            self._throttle.charge(item.session_key, worker_s, len(item.job.pcm) / (2 * ASR_SAMPLE_RATE_HZ))
        if item.future.done():  # its session went away meanwhile
            return
        if result is not None:
            self._done += 1
            self._guards = self._guards.add(result.transcript)
            item.future.set_result(result)
        else:
            self._failed += 1
            item.future.set_exception(AsrError(answer.error or "the worker failed"))

    async def _monitor_loop(self) -> None:
        """Every ``heartbeat_s``: reconnect, read the live workers, fail what waited too long."""
        interval_s = self.options.redis.heartbeat_s
        while not self._closed:
            await self._check()
            await asyncio.sleep(interval_s)

    async def _check(self) -> None:
        assert self._client is not None
        try:
            if not self._connected:
                await self._connect()
            self._note_workers(await read_workers(self._client, self.keys))
        except AuthenticationError as exc:
            self._lost(exc)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            now = time.monotonic()
            if now - self._last_error_log > 10.0:
                self._last_error_log = now
                log.warning("redis %s unreachable: %s", self._safe_url(), exc)
        now = time.monotonic()
        if self._available():
            self._unavailable_since = None
        elif self._unavailable_since is None:
            self._unavailable_since = now
            if self._connected:
                log.error("no worker host alive; new sessions are refused until one is")
        self._wake.set()
        if self._unavailable_since is not None and now - self._unavailable_since > self.options.unavailable_grace_s:
            why = "redis unreachable" if not self._connected else "no worker host alive"
            self._fail_all(BackendUnavailableError(f"{why} for more than {self.options.unavailable_grace_s:g} s"))
        timeout_s = self.options.result_timeout_s
        for item in [i for i in self._in_flight.values() if i.handed_at is not None and now - i.handed_at > timeout_s]:
            del self._in_flight[item.job_id]
            item.queue.task_done(item.session_key)
            self._failed += 1
            if not item.future.done():
                item.future.set_exception(AsrError(f"no worker answered within {timeout_s:g} s"))

    def _note_workers(self, records: list[WorkerRecord]) -> None:
        """Take the live hosts; keep the counters of those that left (the status's totals never go down)."""
        now = {w.worker_id for w in records}
        for w in self._workers:
            if w.worker_id not in now:
                self._gone_redelivered += w.redelivered
                self._gone_restarts += w.engine_restarts
        self._workers = records

    def _fail_all(self, exc: AsrError) -> None:
        waiting = self._queue.remove_all() + self._low.remove_all()
        handed = list(self._in_flight.values())
        self._in_flight.clear()
        for item in handed:
            item.queue.task_done(item.session_key)
        for item in waiting + handed:
            if not item.future.done():
                self._failed += 1
                item.future.set_exception(exc)
        if waiting or handed:
            log.error("%d utterance(s) failed: %s", len(waiting) + len(handed), exc)
