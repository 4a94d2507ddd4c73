"""A bounded, fair (round-robin per session) asyncio queue of utterances.

Fairness: each session has its own FIFO; :meth:`FairQueue.get` serves sessions in
round-robin order, so a session that queues 20 utterances at once delays another session's
next utterance by at most one utterance per worker, never by 20 (deficit-free round robin,
as in classic fair queuing, Nagle 1987 / Demers et al. 1989, with equal-cost items).

Bounds: at most ``max_total`` items overall and ``max_per_key`` per session.  :meth:`put`
waits while either bound is reached, which lets the caller turn a full queue into TCP
backpressure (stop reading that socket) rather than drop audio; a session that floods
blocks only itself first, because its own per-session bound trips before the total.

One worker each first: a session that already has an utterance running (the caller reports
the end with :meth:`FairQueue.task_done`) is served only like a held one below, so a session
that queues many utterances at once (a client sending faster than real time, noise cut into
10 s pieces) cannot take every worker before another session's utterance arrives; the queue
cannot preempt, and a bystander's utterance would otherwise wait for a whole decode of
someone else's (measured: 8.4 s behind pink noise sent at 4x real time, ``docs/benchmarks.md``).

Throttling (optional, :class:`CostThrottle`): each session has a token bucket of worker
seconds.  It holds at most ``burst_s`` and refills at ``rate`` worker seconds per wall-clock
second; every exchange with a worker is charged its wall time afterwards (so the bucket can
go into debt, at most ``burst_s`` deep).  A session in debt is *held*: :meth:`FairQueue.get`
serves every session that is not held first (round robin), and the held one keeps its place
in the round robin, so it is served first once its debt is paid back.  The queue stays
*work-conserving*: a held (or busy) session is still served when nobody else has work queued
and more than ``reserve_getters`` workers are idle (the worker asking included), so a lone session,
or a deployment whose model makes every session cost more than ``rate``, is never slowed
down for nothing, while with ``reserve_getters = 1`` (the pool's choice with two or more
workers) a held or busy session can never take the last idle worker: a bystander's next
utterance finds one free.  A session whose audio costs more worker time than ``rate`` per second of
wall clock (noise that runs the decoder to its limits, or audio sent far faster than real
time) thus slows down itself only, and only while others need the workers; while it waits
its queue fills, and its per-session bound turns that into TCP backpressure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar

from whisper_streaming.errors import UsageError

__all__ = ["FairQueue", "CostThrottle"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class _Bucket:
    balance: float  # worker seconds of credit; negative: debt
    at: float  # clock time of ``balance``
    worker_s: float = 0.0  # totals since the bucket was made, for the log
    audio_s: float = 0.0
    jobs: int = 0
    logged: bool = False


class CostThrottle(Generic[K]):
    """Per-key token buckets of worker seconds (see the module docstring).

    ``rate``: worker seconds a key earns per second of ``clock``; ``burst_s``: most credit a
    key can hold, and deepest debt it can run into (so no key waits longer than
    ``burst_s / rate`` after one exchange, however long that exchange took).  A key never seen
    has a full bucket; a bucket that is full again is forgotten (memory stays bounded by the
    keys that spent recently).  An exchange is charged when it ends, so a key with credit
    left may have several running at once (one per worker) and overdraw by that much.

    Raises:
        UsageError: ``rate`` or ``burst_s`` not positive.
    """

    def __init__(self, rate: float, burst_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not (rate > 0 and burst_s > 0) or math.isinf(rate) or math.isinf(burst_s):
            raise UsageError("throttle rate and burst must be positive and finite")
        self.rate = rate
        self.burst_s = burst_s
        self._clock = clock
        self._buckets: dict[K, _Bucket] = {}
        self._next_sweep = clock() + burst_s / rate
        self.keys_throttled = 0
        """Keys that went into debt, counted once per bucket (a key that recovers fully and
        goes into debt again counts again)."""

    def wait_s(self, key: K) -> float:
        """Seconds until ``key`` may be served (0: now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        balance = self._refilled(bucket, self._clock())
        return 0.0 if balance >= 0 else -balance / self.rate

    def charge(self, key: K, worker_s: float, audio_s: float) -> None:
        """``key`` held a worker for ``worker_s`` seconds on ``audio_s`` seconds of audio."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst_s, now)
        bucket.balance = max(-self.burst_s, self._refilled(bucket, now) - max(0.0, worker_s))
        bucket.at = now
        bucket.worker_s += worker_s
        bucket.audio_s += audio_s
        bucket.jobs += 1
        if bucket.balance < 0 and not bucket.logged:
            bucket.logged = True
            self.keys_throttled += 1
            log.info(
                "session %s throttled: its %d utterance(s), %.1f s of audio, took %.1f worker-s (allowance %.3g worker-s "
                "per second after a burst of %.3g); its next utterance waits %.1f s, other sessions are not held up",
                key, bucket.jobs, bucket.audio_s, bucket.worker_s, self.rate, self.burst_s, -bucket.balance / self.rate,
            )
        elif bucket.balance < 0:
            log.debug("session %s throttled again: waits %.1f s", key, -bucket.balance / self.rate)
        if now >= self._next_sweep:
            self._sweep(now)

    def forget(self, key: K) -> None:
        """Drop ``key``'s bucket (its session is gone)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst_s, bucket.balance + self.rate * max(0.0, now - bucket.at))

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.burst_s / self.rate
        for key in [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.burst_s]:
            del self._buckets[key]


class FairQueue(Generic[K, T]):
    """Round-robin over keys, FIFO within a key, bounded in total and per key.

    ``throttle``: keys it holds back, like keys with an item running (:meth:`task_done`), are
    served by :meth:`get` only when no other key has work and more than ``reserve_getters``
    callers of :meth:`get` (idle workers) are waiting, the caller included (None: no key is
    held back by cost).

    Raises:
        UsageError: bounds below 1.
    """

    def __init__(self, max_total: int, max_per_key: int, throttle: CostThrottle[K] | None = None,
                 reserve_getters: int = 0) -> None:
        if max_total < 1 or max_per_key < 1:
            raise UsageError("queue bounds must be >= 1")
        if reserve_getters < 0:
            raise UsageError("reserve_getters must be >= 0")
        self.reserve_getters = reserve_getters
        self.shortest_first = False
        self._running: dict[K, int] = {}  # items handed out by get() and not yet task_done()
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.throttle = throttle
        self._queues: OrderedDict[K, deque[T]] = OrderedDict()
        self._size = 0
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return self._size

    def pending(self, key: K) -> int:
        """Items queued for ``key``."""
        q = self._queues.get(key)
        return len(q) if q else 0

    def has_room(self, key: K) -> bool:
        return self._size < self.max_total and self.pending(key) < self.max_per_key

    async def put(self, key: K, item: T) -> None:
        """Append ``item`` to ``key``'s FIFO, waiting while a bound is reached."""
        while not self.has_room(key):
            await self._wait(self._putters)
        self._append(key, item, front=False)

    def put_front(self, key: K, item: T) -> None:
        """Put ``item`` first in line for ``key``, ignoring the bounds (for retries)."""
        self._append(key, item, front=True)
        self._queues.move_to_end(key, last=False)

    def held(self) -> int:
        """Items queued for keys the throttle holds back now (0 without a throttle)."""
        if self.throttle is None:
            return 0
        return sum(len(q) for key, q in self._queues.items() if self.throttle.wait_s(key) > 0)

    async def get(self) -> tuple[K, T]:
        """Remove and return the next ``(key, item)`` in round-robin order, waiting if empty.

        Keys that have an item running (see :meth:`task_done`) or that the throttle holds back
        are skipped (they keep their place in the round robin); while every queued key is such,
        the first of them is served if more than ``reserve_getters`` getters are idle (this one
        included); otherwise this waits until a held key may be served, an item finishes, a new
        item arrives or another getter comes, whichever is first.
        """
        while True:
            key, wait_s = self._next_key()
            if key is not None:
                break
            # 1 ms late rather than early: a timer that fires a hair before the key's time
            # would only find it still held back and set another.
            await self._wait(self._getters, None if wait_s is None else wait_s + 0.001)
        return self._pop(key)

    def get_nowait(self) -> tuple[K, T] | None:
        """What :meth:`get` would return now, or None instead of waiting (for a caller that
        waits on other things too; it counts as one idle getter)."""
        key, _ = self._next_key()
        return None if key is None else self._pop(key)

    def _pop(self, key: K) -> tuple[K, T]:
        q = self._queues[key]
        item = q.popleft()
        self._size -= 1
        if q:
            self._queues.move_to_end(key)
        else:
            del self._queues[key]
        self._running[key] = self._running.get(key, 0) + 1
        self._wake(self._putters)
        return key, item

    def remove_key(self, key: K) -> list[T]:
        """Drop and return everything queued for ``key`` (its session went away)."""
        q = self._queues.pop(key, None)
        if not q:
            return []
        self._size -= len(q)
        self._wake(self._putters)
        return list(q)

    def remove_all(self) -> list[T]:
        """Drop and return every queued item (shutdown)."""
        items = [item for q in self._queues.values() for item in q]
        self._queues.clear()
        self._size = 0
        self._wake(self._putters)
        return items

    def drain_shortest_first(self) -> None:
        """From now on :meth:`get` serves the key with the fewest items queued (ties: round-robin
        order) and ignores the throttle: when the server stops, the sessions closest to done
        finish first (shortest remaining work first minimises the number cut at the deadline)."""
        self.shortest_first = True
        self._wake(self._getters)

    def _next_key(self) -> tuple[K | None, float | None]:
        """The first *free* key in round-robin order (nothing of it running, not held by the
        throttle), else the first queued key when more than ``reserve_getters`` getters are idle
        (work-conserving), else None and how long until a held key may be served (None: when an
        item finishes, a getter comes or a new item is put).  Draining: the key with the fewest
        items queued."""
        if not self._queues:
            return None, None
        if self.shortest_first:
            return min(self._queues, key=lambda k: len(self._queues[k])), None
        soonest: float | None = None
        for key in self._queues:
            if self._running.get(key):  # busy: task_done() wakes the getters
                continue
            wait_s = 0.0 if self.throttle is None else self.throttle.wait_s(key)
            if wait_s <= 0:
                return key, None
            soonest = wait_s if soonest is None else min(soonest, wait_s)
        idle = 1 + sum(not f.done() for f in self._getters)  # the caller and the getters waiting
        if idle > self.reserve_getters:
            return next(iter(self._queues)), None
        return None, soonest

    def serves_at_once(self, key: K, idle_workers: int) -> bool:
        """Whether an item put now for ``key``, with nothing else queued, would be handed at once
        to one of ``idle_workers`` idle callers of :meth:`get` by this queue's own rules: ``key``
        is not held by the throttle (a held key waits whenever others may come first), and it has
        nothing running unless more than ``reserve_getters`` workers are idle."""
        if self.throttle is not None and self.throttle.wait_s(key) > 0:
            return False
        return not self._running.get(key) or idle_workers > self.reserve_getters

    def task_done(self, key: K) -> None:
        """An item :meth:`get` returned for ``key`` is finished (its worker is free again)."""
        n = self._running.get(key, 0) - 1
        if n > 0:
            self._running[key] = n
        else:
            self._running.pop(key, None)
            self._wake(self._getters)  # its next item may now be served by a getter kept in reserve

    def running(self, key: K) -> int:
        """Items of ``key`` returned by :meth:`get` and not yet :meth:`task_done`."""
        return self._running.get(key, 0)

    def _append(self, key: K, item: T, *, front: bool) -> None:
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = deque()
        if front:
            q.appendleft(item)
        else:
            q.append(item)
        self._size += 1
        self._wake(self._getters)

    @staticmethod
    async def _wait(waiters: list[asyncio.Future[None]], timeout_s: float | None = None) -> None:
        """Wait for a wake-up, or at most ``timeout_s`` (None: no limit)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        waiters.append(fut)
        timer = None if timeout_s is None else loop.call_later(timeout_s, _resolve, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            if fut in waiters:
                waiters.remove(fut)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
