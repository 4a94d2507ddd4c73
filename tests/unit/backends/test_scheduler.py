"""FairQueue: FIFO per key, round-robin across keys, bounded in total and per key."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import UsageError
from whisper_streaming.backends.scheduler import FairQueue


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def drain(q: FairQueue) -> list[tuple[object, object]]:
    out = []
    while len(q):
        out.append(await q.get())
    return out


def test_bounds_below_one_are_rejected():
    with pytest.raises(UsageError):
        FairQueue(0, 1)
    with pytest.raises(UsageError):
        FairQueue(1, 0)


def test_fifo_within_a_key():
    async def main():
        q: FairQueue[str, int] = FairQueue(100, 100)
        for i in range(10):
            await q.put("a", i)
        assert len(q) == 10 and q.pending("a") == 10 and q.pending("b") == 0
        assert await drain(q) == [("a", i) for i in range(10)]
        assert len(q) == 0 and q.pending("a") == 0

    asyncio.run(main())


def test_round_robin_across_keys():
    async def main():
        q: FairQueue[str, str] = FairQueue(100, 100)
        for i in range(5):
            await q.put("A", f"a{i}")
        await q.put("B", "b0")
        # B arrived after A's five utterances, yet it is served second, not sixth.
        assert [item for _, item in await drain(q)] == ["a0", "b0", "a1", "a2", "a3", "a4"]

    asyncio.run(main())


def test_round_robin_three_keys_interleave():
    async def main():
        q: FairQueue[str, str] = FairQueue(100, 100)
        for i in range(3):
            await q.put("A", f"a{i}")
        for i in range(2):
            await q.put("B", f"b{i}")
        await q.put("C", "c0")
        assert [item for _, item in await drain(q)] == ["a0", "b0", "c0", "a1", "b1", "a2"]

    asyncio.run(main())


def test_key_that_arrives_late_waits_at_most_one_item_per_other_key():
    async def main():
        q: FairQueue[str, str] = FairQueue(100, 100)
        for i in range(4):
            await q.put("A", f"a{i}")
        assert await q.get() == ("A", "a0")
        await q.put("B", "b0")
        assert await q.get() == ("A", "a1")
        assert await q.get() == ("B", "b0")

    asyncio.run(main())


def test_get_waits_while_empty_and_resumes_on_put():
    async def main():
        q: FairQueue[str, int] = FairQueue(10, 10)
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()
        await q.put("a", 1)
        assert await asyncio.wait_for(getter, 1) == ("a", 1)
        assert len(q) == 0

    asyncio.run(main())


def test_several_getters_each_get_one_item():
    async def main():
        q: FairQueue[str, int] = FairQueue(10, 10)
        getters = [asyncio.create_task(q.get()) for _ in range(3)]
        await settle()
        assert not any(g.done() for g in getters)
        await q.put("a", 1)
        await q.put("b", 2)
        await settle()
        done = [g.result() for g in getters if g.done()]
        assert sorted(done) == [("a", 1), ("b", 2)]
        await q.put("a", 3)
        results = await asyncio.wait_for(asyncio.gather(*getters), 1)
        assert sorted(results) == [("a", 1), ("a", 3), ("b", 2)]

    asyncio.run(main())


def test_put_blocks_at_per_key_bound_and_resumes_when_get_frees_room():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=10, max_per_key=2)
        await q.put("a", 0)
        await q.put("a", 1)
        assert not q.has_room("a")
        putter = asyncio.create_task(q.put("a", 2))
        await settle()
        assert not putter.done()
        assert len(q) == 2
        assert await q.get() == ("a", 0)
        await asyncio.wait_for(putter, 1)
        assert q.pending("a") == 2
        assert [item for _, item in await drain(q)] == [1, 2]

    asyncio.run(main())


def test_put_blocks_at_total_bound_and_resumes_when_get_frees_room():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=3, max_per_key=10)
        await q.put("a", 0)
        await q.put("b", 1)
        await q.put("c", 2)
        assert not q.has_room("d")
        putter = asyncio.create_task(q.put("d", 3))
        await settle()
        assert not putter.done()
        assert await q.get() == ("a", 0)
        await asyncio.wait_for(putter, 1)
        assert len(q) == 3 and q.pending("d") == 1

    asyncio.run(main())


def test_flooding_key_blocks_only_itself():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=10, max_per_key=3)
        for i in range(3):
            await q.put("flood", i)
        blocked = asyncio.create_task(q.put("flood", 3))
        await settle()
        assert not blocked.done()
        # The total has room: another session still gets in at once, and is served next.
        await asyncio.wait_for(q.put("quiet", 100), 1)
        assert not blocked.done()
        assert await q.get() == ("flood", 0)
        await asyncio.wait_for(blocked, 1)
        assert await q.get() == ("quiet", 100)
        assert [item for _, item in await drain(q)] == [1, 2, 3]

    asyncio.run(main())


def test_blocked_putters_of_other_keys_stay_blocked_until_their_own_room():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=10, max_per_key=1)
        await q.put("a", 0)
        await q.put("b", 0)
        pa = asyncio.create_task(q.put("a", 1))
        pb = asyncio.create_task(q.put("b", 1))
        await settle()
        assert await q.get() == ("a", 0)  # frees room for "a" only
        await settle()
        assert pa.done() and not pb.done()
        assert await q.get() == ("b", 0)
        await asyncio.wait_for(pb, 1)

    asyncio.run(main())


def test_cancelled_putter_does_not_lose_wakeups_of_others():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=10, max_per_key=1)
        await q.put("a", 0)
        p1 = asyncio.create_task(q.put("a", 1))
        p2 = asyncio.create_task(q.put("a", 2))
        await settle()
        p1.cancel()
        await settle()
        assert p1.cancelled()
        await q.get()
        await asyncio.wait_for(p2, 1)
        assert await q.get() == ("a", 2)
        assert len(q) == 0

    asyncio.run(main())


def test_put_front_goes_first_and_ignores_bounds():
    async def main():
        q: FairQueue[str, str] = FairQueue(max_total=3, max_per_key=2)
        await q.put("A", "a0")
        await q.put("A", "a1")
        await q.put("B", "b0")
        assert not q.has_room("A") and not q.has_room("C")
        # A retry of B's earlier utterance: first in line overall, bounds ignored.
        q.put_front("B", "b-retry")
        assert len(q) == 4 and q.pending("B") == 2
        assert [item for _, item in await drain(q)] == ["b-retry", "a0", "b0", "a1"]

    asyncio.run(main())


def test_put_front_on_new_key_and_wakes_getter():
    async def main():
        q: FairQueue[str, str] = FairQueue(10, 10)
        getter = asyncio.create_task(q.get())
        await settle()
        q.put_front("X", "x-retry")
        assert await asyncio.wait_for(getter, 1) == ("X", "x-retry")

    asyncio.run(main())


def test_remove_key_drops_items_and_wakes_blocked_putters():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=3, max_per_key=2)
        await q.put("a", 0)
        await q.put("a", 1)
        await q.put("b", 10)
        same_key = asyncio.create_task(q.put("a", 2))  # per-key bound
        other_key = asyncio.create_task(q.put("c", 20))  # total bound
        await settle()
        assert not same_key.done() and not other_key.done()
        assert q.remove_key("a") == [0, 1]
        await asyncio.wait_for(asyncio.gather(same_key, other_key), 1)
        assert q.remove_key("nobody") == []
        assert len(q) == 3
        assert sorted(await drain(q)) == [("a", 2), ("b", 10), ("c", 20)]

    asyncio.run(main())


def test_remove_all_empties_and_wakes_blocked_putters():
    async def main():
        q: FairQueue[str, int] = FairQueue(max_total=2, max_per_key=2)
        await q.put("a", 0)
        await q.put("b", 1)
        putter = asyncio.create_task(q.put("c", 2))
        await settle()
        assert not putter.done()
        assert sorted(q.remove_all()) == [0, 1]
        await asyncio.wait_for(putter, 1)
        assert len(q) == 1 and q.pending("a") == 0 and q.pending("c") == 1
        assert q.remove_all() == [2]
        assert len(q) == 0
        assert q.remove_all() == []

    asyncio.run(main())


# --------------------------------------------------------------------------- property

KEYS = ["A", "B", "C", "D"]
ops = st.lists(st.one_of(st.sampled_from(KEYS), st.just("get")), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_total=st.integers(1, 8), max_per_key=st.integers(1, 4))
def test_random_interleavings_keep_fifo_bounds_and_fairness(ops, max_total, max_per_key):
    """Any sequence of non-blocking puts and gets keeps: FIFO per key, both bounds,
    no item lost, and fairness: while a key has items waiting, no other key is served
    twice before it."""

    async def main():
        q: FairQueue[str, int] = FairQueue(max_total, max_per_key)
        sent: dict[str, deque[int]] = defaultdict(deque)
        served_since: dict[str, list[str]] = {}  # waiting key -> keys served since it last waited
        counter = 0
        for op in ops:
            if op == "get":
                if not len(q):
                    continue
                key, item = await q.get()
                assert item == sent[key].popleft(), "FIFO within a key"
                for waiting, others in served_since.items():
                    if waiting != key:
                        assert key not in others, f"{key} served twice while {waiting} waited"
                        others.append(key)
                served_since.pop(key, None)
                if sent[key]:
                    served_since[key] = []
            else:
                if not q.has_room(op):
                    assert len(q) >= max_total or q.pending(op) >= max_per_key
                    continue
                await q.put(op, counter)
                sent[op].append(counter)
                counter += 1
                served_since.setdefault(op, [])
            assert len(q) == sum(len(d) for d in sent.values()) <= max_total
            for k in KEYS:
                assert q.pending(k) == len(sent[k]) <= max_per_key
        rest = q.remove_all()
        assert sorted(rest) == sorted(i for d in sent.values() for i in d)
        assert len(q) == 0

    asyncio.run(main())
