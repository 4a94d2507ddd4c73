"""A bounded, fair (round-robin per session) asyncio queue of utterances.

Fairness: each session has its own FIFO; :meth:`FairQueue.get` serves sessions in
round-robin order, so a session that queues 20 utterances at once delays another session's
next utterance by at most one utterance per worker, never by 20 (deficit-free round robin,
as in classic fair queuing, Nagle 1987 / Demers et al. 1989, with equal-cost items).

Bounds: at most ``max_total`` items overall and ``max_per_key`` per session.  :meth:`put`
waits while either bound is reached, which lets the caller turn a full queue into TCP
backpressure (stop reading that socket) rather than drop audio; a session that floods
blocks only itself first, because its own per-session bound trips before the total.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Generic, Hashable, TypeVar

from whisper_streaming.errors import UsageError

__all__ = ["FairQueue"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class FairQueue(Generic[K, T]):
    """Round-robin over keys, FIFO within a key, bounded in total and per key.

    Raises:
        UsageError: bounds below 1.
    """

    def __init__(self, max_total: int, max_per_key: int) -> None:
        if max_total < 1 or max_per_key < 1:
            raise UsageError("queue bounds must be >= 1")
        self.max_total = max_total
        self.max_per_key = max_per_key
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

    async def get(self) -> tuple[K, T]:
        """Remove and return the next ``(key, item)`` in round-robin order, waiting if empty."""
        while not self._size:
            await self._wait(self._getters)
        key, q = next(iter(self._queues.items()))
        item = q.popleft()
        self._size -= 1
        if q:
            self._queues.move_to_end(key)
        else:
            del self._queues[key]
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
    async def _wait(waiters: list[asyncio.Future[None]]) -> None:
        fut = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        finally:
            if fut in waiters:
                waiters.remove(fut)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()
