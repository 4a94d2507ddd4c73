"""A worker host of the Redis backend: takes utterances from the job streams, transcribes them on a
local :class:`~whisper_streaming.backends.pool.ProcessPool`, answers on each front end's result
stream.

:class:`WorkerHost` (run by ``whisper-streaming-worker``, :mod:`whisper_streaming.app.worker_main`):

* its engines are a :class:`~whisper_streaming.backends.pool.ProcessPool` (one model per
  process, supervised: a crashed or hung engine process is restarted and its utterance retried
  there once, as on a single server); the host reads a job only when one of them is free, from
  the streaming stream first and from the low-priority one when that is empty;
* every ``heartbeat_s`` it refreshes its record (slots, busy, jobs taken over) with a TTL, and
  the idle time of the jobs in its hands (``XCLAIM ... JUSTID`` to itself), so nobody takes them
  over while it is alive; and it takes over jobs idle for ``claim_after_s`` from hosts that
  stopped (``XAUTOCLAIM``), answering as failed one already delivered ``max_attempts`` times;
* an answer is ``XADD``\\ ed to the job's result stream (trimmed, expiring) before the job is
  ``XACK``\\ ed and deleted: a host that dies between the two leaves a job that is redelivered and
  answered twice, and the front end keeps the first answer;
* :meth:`WorkerHost.stop` drains: it takes no new job (its record says so, so front ends stop
  counting its slots), finishes those in hand, answers them, then leaves;
* Redis down: it retries every ``heartbeat_s``, recreating the group after a Redis restart;
  answers wait (up to ``result_ttl_s``) for Redis to return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError, ResponseError

from whisper_streaming.backends.base import AsrBackend
from whisper_streaming.backends.pool import PoolOptions, ProcessPool
from whisper_streaming.backends.redis_backend import READ_BLOCK_MS, connect, ensure_groups, safe_url
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
from whisper_streaming.errors import AsrError

__all__ = ["WorkerHost", "WorkerHostOptions"]

log = logging.getLogger(__name__)

RESULT_STREAM_MAXLEN = 10_000
"""A result stream is trimmed (approximately) to this many entries: its front end reads and
deletes them, so only one gone for good lets them pile up (until ``result_ttl_s``)."""


UNREACHABLE_LOG_EVERY_S = 10.0
"""A host that cannot reach Redis says so at once, then at most this often (s)."""
CONSUMER_SWEEP_BEATS = 60
"""Every this many heartbeats a host deletes the group's dead consumers."""
DEAD_CONSUMER_TTLS = 20
"""A consumer that is not live and was idle this many ``worker_ttl_s`` with nothing pending is deleted."""


@dataclass(frozen=True)
class WorkerHostOptions:
    """``pool``: the local engines (``workers`` of them: the host's slots); ``worker_id``: the
    consumer name in the group (default: host name, pid and a random suffix)."""

    redis: RedisOptions
    pool: PoolOptions
    worker_id: str | None = None


@dataclass
class _InHand:
    stream: str
    entry_id: str
    task: asyncio.Task[None] | None = None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WorkerHost:
    """One worker host. ``start()``, then ``stop()``; see the module docstring.

    ``backend_factory``: builds the local engines (default :class:`ProcessPool`; tests pass others).
    """

    def __init__(self, options: WorkerHostOptions,
                 backend_factory: Callable[[PoolOptions], AsrBackend] = ProcessPool) -> None:
        self.options = options
        self.keys = RedisKeys(options.redis.prefix)
        self.worker_id = options.worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.slots = options.pool.workers
        self._engines = backend_factory(options.pool)
        self._client = connect(options.redis)
        self._reader = connect(options.redis, blocking=True)
        self._in_hand: dict[str, _InHand] = {}
        self._slot_free = asyncio.Event()
        self._draining = False
        self._connected = False
        self._tasks: list[asyncio.Task[None]] = []
        self._tasks_wanted = True
        self._last_error_log = -UNREACHABLE_LOG_EVERY_S
        self.redelivered = 0  # jobs taken over from hosts that stopped
        self.answered = 0
        self.failed_for_good = 0  # delivered more than max_attempts times

    async def start(self) -> None:
        """Start the engines (raises :class:`~whisper_streaming.errors.ModelError` if they cannot
        load), then the loops; a Redis that does not answer yet is retried."""
        await self._engines.start()
        log.info("worker host %s: %d engine(s) ready", self.worker_id, self.slots)
        self._tasks = [asyncio.create_task(self._read_loop(), name="redis-worker-read"),
                       asyncio.create_task(self._heartbeat_loop(), name="redis-worker-heartbeat")]

    async def stop(self, timeout_s: float = 60.0) -> None:
        """Take no new job, finish those in hand (at most ``timeout_s``), leave, stop the engines."""
        if self._draining and not self._tasks:
            return
        self._draining = True
        self._slot_free.set()
        await self._heartbeat()  # front ends stop counting our slots now
        pending = [h.task for h in self._in_hand.values() if h.task is not None]
        if pending:
            log.info("worker host %s: finishing %d job(s) in hand", self.worker_id, len(pending))
            await asyncio.wait(pending, timeout=timeout_s)
        self._tasks_wanted = False
        leftover = [h.task for h in self._in_hand.values() if h.task is not None and not h.task.done()]
        for task in self._tasks + leftover:  # jobs not answered in time stay pending: another host takes them over
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(self.keys.worker(self.worker_id))
            await self._client.srem(self.keys.workers, self.worker_id)
        await self._engines.close()
        for client in (self._client, self._reader):
            with contextlib.suppress(Exception):
                await client.aclose()
        log.info("worker host %s stopped (%d answered, %d taken over)", self.worker_id, self.answered, self.redelivered)

    @property
    def jobs_in_hand(self) -> int:
        return len(self._in_hand)

    # ------------------------------------------------------------------ reading

    def _free(self) -> int:
        return 0 if self._draining else self.slots - len(self._in_hand)

    async def _read_loop(self) -> None:
        group, me = self.options.redis.group, self.worker_id
        while not self._draining:
            free = self._free()
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not self._connected:
                await asyncio.sleep(self.options.redis.heartbeat_s / 4)
                continue
            try:
                got = await self._reader.xreadgroup(group, me, {self.keys.jobs: ">"}, count=free)
                if not got:
                    got = await self._reader.xreadgroup(group, me, {self.keys.jobs: ">", self.keys.jobs_low: ">"}, count=1,
                                                        block=READ_BLOCK_MS)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis restarted: its streams and group are gone
                    with contextlib.suppress(RedisError, OSError):
                        await ensure_groups(self._client, self.keys, group)
                    continue
                log.error("worker host %s: reading jobs failed: %s; retrying", self.worker_id, exc)  # e.g. an ACL that forbids it
                await asyncio.sleep(self.options.redis.heartbeat_s)
                continue
            except (RedisError, OSError) as exc:
                self._lost(exc)
                continue
            for stream, entries in got or ():
                for entry_id, fields in entries:
                    self._take(_text(stream), _text(entry_id), fields, deliveries=1)

    def _take(self, stream: str, entry_id: str, fields: dict[bytes, bytes], *, deliveries: int) -> None:
        hand = self._in_hand[entry_id] = _InHand(stream, entry_id)
        hand.task = asyncio.create_task(self._serve(hand, fields, deliveries), name=f"redis-job-{entry_id}")

    async def _serve(self, hand: _InHand, fields: dict[bytes, bytes], deliveries: int) -> None:
        job_id = _text(fields.get(b"id", b"?"))
        try:
            try:
                wire: WireJob = loads(fields.get(b"body", b""), WireJob)
            except MessageError as exc:
                log.warning("job %s (%s) dropped: %s", job_id, hand.entry_id, exc)
                await self._finish(hand, None)
                return
            if deliveries > self.options.redis.max_attempts:
                self.failed_for_good += 1
                log.error("job %s was delivered %d times (every host that took it stopped): failed", job_id, deliveries)
                answer = WireResult(job_id, self.worker_id, error=f"delivered {deliveries} times; every worker that took it stopped",
                                    deliveries=deliveries)
                await self._finish(hand, (wire.reply_to, answer))
                return
            t0 = time.monotonic()
            try:
                result = await (await self._engines.submit(wire.session, wire.job))
                answer = WireResult(job_id, self.worker_id, result=result, deliveries=deliveries, worker_s=time.monotonic() - t0)
            except AsrError as exc:
                answer = WireResult(job_id, self.worker_id, error=str(exc), deliveries=deliveries, worker_s=time.monotonic() - t0)
            self.answered += 1
            await self._finish(hand, (wire.reply_to, answer))
        finally:
            self._in_hand.pop(hand.entry_id, None)
            self._slot_free.set()

    async def _finish(self, hand: _InHand, reply: tuple[str, WireResult] | None) -> None:
        """Answer (when ``reply``), then ``XACK`` and ``XDEL`` the entry; retried while Redis is
        down, for at most ``result_ttl_s``."""
        deadline = time.monotonic() + self.options.redis.result_ttl_s
        group = self.options.redis.group
        while True:
            try:
                pipe = self._client.pipeline(transaction=False)
                if reply is not None:
                    reply_to, answer = reply
                    pipe.xadd(reply_to, {"body": dumps(answer)}, maxlen=RESULT_STREAM_MAXLEN, approximate=True)
                    pipe.expire(reply_to, int(self.options.redis.result_ttl_s))
                pipe.xack(hand.stream, group, hand.entry_id)
                pipe.xdel(hand.stream, hand.entry_id)
                await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                self._lost(exc)
                if not self._tasks_wanted:  # stopping: the job stays pending in Redis, another host will take it
                    return
                if time.monotonic() > deadline:
                    log.error("answer to %s dropped: redis unreachable for %g s", hand.entry_id, self.options.redis.result_ttl_s)
                    return
                await asyncio.sleep(self.options.redis.heartbeat_s)

    # ------------------------------------------------------------------ heartbeats and recovery

    def _lost(self, exc: BaseException) -> None:
        if self._connected:
            log.error("worker host %s: redis lost: %s", self.worker_id, exc)
        self._connected = False

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while self._tasks_wanted:  # not ``while True``: redis-py may turn a cancellation mid-command into a ConnectionError
            await self._heartbeat()
            if not self._draining:
                await self._claim_stale()
                if beats % CONSUMER_SWEEP_BEATS == 0:
                    await self._forget_dead_consumers()
            beats += 1
            await asyncio.sleep(self.options.redis.heartbeat_s)

    async def _forget_dead_consumers(self) -> None:
        """Delete the group's consumers that hold nothing, are not live and were idle for
        :data:`DEAD_CONSUMER_TTLS` worker TTLs (every host restart adds a consumer name;
        ``XGROUP DELCONSUMER`` of one that still held jobs would lose them, so never those)."""
        r = self.options.redis
        try:
            live = {_text(m) for m in await self._client.smembers(self.keys.workers)} | {self.worker_id}
            for stream in (self.keys.jobs, self.keys.jobs_low):
                for c in await self._client.xinfo_consumers(stream, r.group):
                    name = _text(c["name"])
                    if name not in live and int(c["pending"]) == 0 and int(c["idle"]) > DEAD_CONSUMER_TTLS * r.worker_ttl_s * 1000:
                        await self._client.xgroup_delconsumer(stream, r.group, name)
                        log.info("worker host %s: forgot consumer %s (gone, nothing pending)", self.worker_id, name)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                log.warning("sweeping dead consumers failed: %s", exc)
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def _heartbeat(self) -> None:
        """Refresh our record and the idle time of our jobs (reconnecting if needed)."""
        r = self.options.redis
        record = WorkerRecord(self.worker_id, socket.gethostname(), os.getpid(), self.slots, len(self._in_hand),
                              self.redelivered, self._draining, self._engines.status().worker_restarts)
        try:
            if not self._connected:
                await ensure_groups(self._client, self.keys, r.group)
                log.info("worker host %s: redis connected", self.worker_id)
                self._connected = True
                self._slot_free.set()
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self.keys.worker(self.worker_id), dumps(record), px=int(r.worker_ttl_s * 1000))
            pipe.sadd(self.keys.workers, self.worker_id)
            by_stream: dict[str, list[str]] = {}
            for hand in self._in_hand.values():
                by_stream.setdefault(hand.stream, []).append(hand.entry_id)
            for stream, ids in by_stream.items():  # still ours: reset their idle time (no delivery counted)
                pipe.xclaim(stream, r.group, self.worker_id, 0, ids, justid=True)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._lost(exc)
            now = time.monotonic()
            if now - self._last_error_log >= UNREACHABLE_LOG_EVERY_S:  # a host that never connects must say why
                self._last_error_log = now
                log.warning("worker host %s: redis %s unreachable: %s: %s; retrying every %g s", self.worker_id, safe_url(r.url),
                            type(exc).__name__, exc, r.heartbeat_s)

    async def _claim_stale(self) -> None:
        """Take over jobs idle for ``claim_after_s`` (their host stopped), as many as we have free slots."""
        r = self.options.redis
        for stream in (self.keys.jobs, self.keys.jobs_low):
            free = self._free()
            if free <= 0 or not self._connected:
                return
            try:
                # [next, entries] on Redis 6.2, [next, entries, deleted ids] since 7.0
                entries = (await self._client.xautoclaim(stream, r.group, self.worker_id, int(r.claim_after_s * 1000), "0-0", count=free))[1]
                for entry_id, fields in entries:
                    entry = _text(entry_id)
                    if entry in self._in_hand:  # ours already (a late heartbeat)
                        continue
                    pending = await self._client.xpending_range(stream, r.group, entry, entry, 1)
                    deliveries = int(pending[0]["times_delivered"]) if pending else r.max_attempts + 1
                    self.redelivered += 1
                    log.warning("worker host %s: took over job %s (delivery %d): its worker stopped", self.worker_id,
                                _text(fields.get(b"id", b"?")), deliveries)
                    self._take(stream, entry, fields, deliveries=deliveries)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.warning("claiming stale jobs failed: %s", exc)
            except (RedisError, OSError) as exc:
                self._lost(exc)

