"""FairQueue: FIFO per key, round-robin across keys, bounded in total and per key; CostThrottle."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import UsageError
from whisper_streaming.backends.scheduler import CostThrottle, FairQueue


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
        q.task_done("A")
        await q.put("B", "b0")
        assert await q.get() == ("A", "a1")
        q.task_done("A")
        assert await q.get() == ("B", "b0")

    asyncio.run(main())


def test_a_key_with_an_item_running_comes_after_every_free_key():
    """One worker each first: while A's item runs, B's late item goes before A's next ones;
    with nothing free left, A is served again (work-conserving, reserve 0)."""
    async def main():
        q: FairQueue[str, str] = FairQueue(100, 100)
        for i in range(3):
            await q.put("A", f"a{i}")
        assert await q.get() == ("A", "a0")  # running
        await q.put("B", "b0")
        assert await q.get() == ("B", "b0")  # A is busy: B first, though A is first in line
        assert await q.get() == ("A", "a1")  # nobody free: A again
        assert q.running("A") == 2 and q.running("B") == 1
        q.task_done("A")
        q.task_done("A")
        assert q.running("A") == 0

    asyncio.run(main())


def test_reserve_keeps_the_last_idle_getter_from_a_busy_key_until_its_item_is_done():
    async def main():
        q: FairQueue[str, str] = FairQueue(100, 100, reserve_getters=1)
        await q.put("A", "a0")
        await q.put("A", "a1")
        assert await q.get() == ("A", "a0")  # a lone getter takes a free key's item
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()  # A is busy and this is the last idle getter: kept for others
        await q.put("B", "b0")
        assert await asyncio.wait_for(getter, 1) == ("B", "b0")  # a bystander is served at once
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()
        q.task_done("A")  # A's item finished: its next one may take the worker
        assert await asyncio.wait_for(getter, 1) == ("A", "a1")

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


# --------------------------------------------------------------------------- throttling


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cost_throttle_rule_on_a_fake_clock():
    clock = FakeClock()
    t: CostThrottle[str] = CostThrottle(rate=0.5, burst_s=20.0, clock=clock)
    assert t.wait_s("new") == 0  # a key never seen has a full bucket
    t.charge("a", 15.0, 10.0)  # within the burst: free
    assert t.wait_s("a") == 0
    t.charge("a", 9.0, 10.0)  # 20 - 15 - 9 = -4: in debt, 8 s at 0.5 worker-s per s
    assert t.wait_s("a") == pytest.approx(8.0)
    clock.now += 6.0
    assert t.wait_s("a") == pytest.approx(2.0)
    clock.now += 2.0
    assert t.wait_s("a") == 0
    # Debt is floored at -burst: however long one exchange held a worker (a 60 s hang), the
    # session waits at most burst / rate afterwards.
    t.charge("a", 60.0, 10.0)
    assert t.wait_s("a") == pytest.approx(40.0)
    assert t.wait_s("b") == 0  # other keys are untouched
    with pytest.raises(UsageError):
        CostThrottle(rate=0.0, burst_s=1.0)
    with pytest.raises(UsageError):
        CostThrottle(rate=1.0, burst_s=0.0)


def test_cost_throttle_logs_once_per_episode_and_counts(caplog):
    clock = FakeClock()
    t: CostThrottle[str] = CostThrottle(rate=1.0, burst_s=1.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="whisper_streaming.backends.scheduler"):
        t.charge("noisy", 3.0, 1.0)
        clock.now += 1.5
        t.charge("noisy", 3.0, 1.0)  # throttled again before it recovered: not logged again at INFO
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "session noisy throttled" in infos[0].getMessage()
    assert "its 1 utterance(s), 1.0 s of audio, took 3.0 worker-s" in infos[0].getMessage()
    assert t.keys_throttled == 1


def test_cost_throttle_forgets_full_buckets():
    clock = FakeClock()
    t: CostThrottle[int] = CostThrottle(rate=1.0, burst_s=2.0, clock=clock)
    for key in range(100):
        t.charge(key, 0.5, 1.0)
    assert len(t) == 100
    clock.now += 3.0  # every bucket is full again: the next charge after the sweep interval drops them
    t.charge("last", 0.5, 1.0)
    assert len(t) == 1
    t.forget("last")
    assert len(t) == 0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cost_per_audio_s=st.floats(0.05, 0.3))
def test_a_real_time_session_of_normal_cost_is_never_held_back(seed, cost_per_audio_s):
    """Defaults (0.5 worker-s per s, burst 20): an hour of real-time speech in utterances of
    0.3-10 s with 0.2-1 s pauses, each costing up to 0.3 worker-s per audio s (1.5-3 times
    what base costs on 2 cores), every fifth one three times that (a hard utterance, a wasted
    speculation), is never made to wait, not even once."""
    rng = random.Random(seed)
    clock = FakeClock()
    t: CostThrottle[str] = CostThrottle(rate=0.5, burst_s=20.0, clock=clock)
    end = clock.now + 3600
    n = 0
    while clock.now < end:
        audio_s = rng.uniform(0.3, 10.0)
        clock.now += audio_s + rng.uniform(0.2, 1.0)  # the utterance is cut after its speech and a pause
        assert t.wait_s("caller") == 0
        cost = audio_s * cost_per_audio_s * (3 if n % 5 == 4 else 1)
        t.charge("caller", cost, audio_s)
        n += 1
    assert t.keys_throttled == 0


def test_noise_at_real_time_is_held_to_the_rate():
    """Full-scale noise: 10 s utterances costing 12 worker-s each, sent at real time.  Served as
    soon as the throttle allows, the session gets at most rate x time + burst worker seconds."""
    clock = FakeClock()
    t: CostThrottle[str] = CostThrottle(rate=0.5, burst_s=20.0, clock=clock)
    start = clock.now
    spent = 0.0
    ready_at = start  # the next utterance is in once its 10 s of audio arrived
    for _ in range(60):
        ready_at += 10.0
        clock.now = max(clock.now, ready_at)
        clock.now += t.wait_s("noise")
        assert t.wait_s("noise") == 0
        clock.now += 12.0  # the worker time itself
        t.charge("noise", 12.0, 10.0)
        spent += 12.0
    elapsed = clock.now - start
    assert t.keys_throttled == 1
    assert spent <= 0.5 * elapsed + 20.0 + 12.0  # + the last exchange, charged after it ran
    assert elapsed > 60 * 12.0 / 0.5 * 0.9  # held back: real time would have been 600 s


class CountingThrottle(CostThrottle[str]):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.asked = 0

    def wait_s(self, key: str) -> float:
        self.asked += 1
        return super().wait_s(key)


def test_throttled_key_is_skipped_then_served_first_once_eligible():
    async def main():
        throttle = CountingThrottle(rate=1.0, burst_s=0.3)
        # reserve 1 and a single getter: the held key is not served before its time
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        await q.put("A", "a1")
        await q.put("B", "b0")
        await q.put("B", "b1")
        throttle.charge("A", 0.6, 0.01)  # 0.3 - 0.6 = -0.3: A waits 0.3 s
        assert q.held() == 1
        t0 = time.monotonic()
        # A is first in line but held back: B is served at once, twice.
        assert await asyncio.wait_for(q.get(), 0.05) == ("B", "b0")
        q.task_done("B")
        assert await asyncio.wait_for(q.get(), 0.05) == ("B", "b1")
        q.task_done("B")
        await q.put("C", "c0")
        asked = throttle.asked
        # C is eligible and A not yet: C first; then the lone getter (the reserve) sleeps
        # until A's time.
        assert await asyncio.wait_for(q.get(), 0.05) == ("C", "c0")
        q.task_done("C")
        got = await asyncio.wait_for(q.get(), 2.0)
        waited = time.monotonic() - t0
        assert got == ("A", "a1")
        assert 0.25 <= waited < 1.0
        assert throttle.asked - asked < 10  # slept on a timer, no busy loop
        assert q.held() == 0 and len(q) == 0

    asyncio.run(main())


def test_skipped_key_keeps_its_turn():
    async def main():
        clock = FakeClock()
        throttle: CostThrottle[str] = CostThrottle(rate=1.0, burst_s=1.0, clock=clock)
        q: FairQueue[str, str] = FairQueue(100, 100, throttle)
        for i in range(2):
            await q.put("A", f"a{i}")
            await q.put("B", f"b{i}")
            await q.put("C", f"c{i}")
        throttle.charge("A", 2.0, 1.0)
        assert [await q.get() for _ in range(2)] == [("B", "b0"), ("C", "c0")]
        clock.now += 1.0  # A has paid back its debt: it is served before B and C's second turn
        assert [item for _, item in await drain(q)] == ["a0", "b1", "c1", "a1"]

    asyncio.run(main())


def test_getter_waiting_on_a_throttled_key_takes_a_new_eligible_item_at_once():
    async def main():
        throttle: CostThrottle[str] = CostThrottle(rate=0.1, burst_s=1.0)
        # reserve 1 and a single getter: it does not take the held key's item, it waits
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        throttle.charge("A", 2.0, 1.0)  # A waits 10 s
        await q.put("A", "a0")
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()
        t0 = time.monotonic()
        await q.put("B", "b0")
        assert await asyncio.wait_for(getter, 1) == ("B", "b0")
        assert time.monotonic() - t0 < 0.1
        assert q.pending("A") == 1 and q.held() == 1
        # The bounds still hold for a throttled key: its putters wait, which is the backpressure.
        small: FairQueue[str, str] = FairQueue(10, 1, throttle)
        await small.put("A", "x")
        blocked = asyncio.create_task(small.put("A", "y"))
        await settle()
        assert not blocked.done()
        blocked.cancel()
        await settle()

    asyncio.run(main())


def test_without_throttle_nothing_is_held():
    async def main():
        q: FairQueue[str, str] = FairQueue(10, 10)
        await q.put("A", "a0")
        assert q.held() == 0 and q.throttle is None

    asyncio.run(main())


# --------------------------------------------------------------------------- work-conserving, reserve


def held_throttle(clock: FakeClock, *keys: str) -> CostThrottle[str]:
    """A throttle on ``clock`` holding ``keys`` back for 1000 s (no timer fires in a test)."""
    throttle: CostThrottle[str] = CostThrottle(rate=0.001, burst_s=1.0, clock=clock)
    for key in keys:
        throttle.charge(key, 5.0, 1.0)
        assert throttle.wait_s(key) == pytest.approx(1000.0)
    return throttle


def test_negative_reserve_is_rejected():
    with pytest.raises(UsageError):
        FairQueue(1, 1, reserve_getters=-1)


def test_work_conserving_a_held_key_alone_is_served_at_once():
    """reserve 0 (one worker): a held key is skipped only for an eligible one; alone, or with
    only held keys queued, it is served at once, in round-robin order, still in debt."""
    async def main():
        clock = FakeClock()
        throttle = held_throttle(clock, "A", "C")
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=0)
        await q.put("A", "a0")
        await q.put("A", "a1")
        assert q.held() == 2
        assert await asyncio.wait_for(q.get(), 1) == ("A", "a0")
        assert throttle.wait_s("A") > 0  # served in debt, not because it had paid
        await q.put("B", "b0")
        # An eligible key still goes first, even though A is first in line.
        assert await asyncio.wait_for(q.get(), 1) == ("B", "b0")
        assert await asyncio.wait_for(q.get(), 1) == ("A", "a1")
        # A getter waiting on an empty queue takes a held key's new item at once.
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()
        await q.put("A", "a2")
        assert await asyncio.wait_for(getter, 1) == ("A", "a2")
        # Only held keys queued: round robin among them.
        for i in (3, 4):
            await q.put("A", f"a{i}")
        await q.put("C", "c0")
        assert [item for _, item in await asyncio.wait_for(drain(q), 1)] == ["a3", "c0", "a4"]
        assert throttle.wait_s("A") > 0 and throttle.wait_s("C") > 0

    asyncio.run(main())


def test_reserve_lone_getter_waits_for_a_held_key_a_second_getter_serves_it():
    """reserve 1 (two or more workers): one idle getter is the reserve and never takes a held
    key's item; a second idle getter does; an eligible item goes to a lone getter at once."""
    async def main():
        clock = FakeClock()
        throttle = held_throttle(clock, "A")
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        await q.put("A", "a0")
        first = asyncio.create_task(q.get())
        await settle()
        assert not first.done()  # alone: it is the reserve
        second = asyncio.create_task(q.get())
        await settle()
        done = [g for g in (first, second) if g.done()]
        assert len(done) == 1 and done[0].result() == ("A", "a0")  # two idle: one takes it
        remaining = first if second.done() else second
        assert not remaining.done() and len(q) == 0
        # The reserve takes an eligible key's item at once, and leaves a held one.
        await q.put("A", "a1")
        await settle()
        assert not remaining.done()
        await q.put("B", "b0")
        assert await asyncio.wait_for(remaining, 1) == ("B", "b0")
        assert q.pending("A") == 1 and q.held() == 1
        q.task_done("B")
        # A lone get() call with an eligible key queued behind the held one returns at once.
        await q.put("B", "b1")
        assert await asyncio.wait_for(q.get(), 1) == ("B", "b1")
        assert q.pending("A") == 1
        q.remove_all()

    asyncio.run(main())


def test_reserve_held_item_put_while_two_getters_wait_is_served():
    """No lost wake-up: both idle getters are woken by the put; the one that re-evaluates
    first sees only itself and waits again, the other then counts it and serves the item.
    With three idle getters and two held items, two are served and one stays in reserve."""
    async def main():
        clock = FakeClock()
        throttle = held_throttle(clock, "A", "B")
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        getters = [asyncio.create_task(q.get()) for _ in range(2)]
        await settle()
        assert not any(g.done() for g in getters)
        await q.put("A", "a0")
        await settle()
        assert sorted(g.result() for g in getters if g.done()) == [("A", "a0")]
        left = [g for g in getters if not g.done()]
        getters = left + [asyncio.create_task(q.get()) for _ in range(2)]
        await settle()
        assert not any(g.done() for g in getters)
        await q.put("A", "a1")
        await q.put("B", "b0")
        await settle()
        assert sorted(g.result() for g in getters if g.done()) == [("A", "a1"), ("B", "b0")]
        assert sum(not g.done() for g in getters) == 1 and len(q) == 0
        for g in getters:
            g.cancel()
        await settle()

    asyncio.run(main())


def test_reserve_a_cancelled_getter_is_not_counted_as_idle():
    async def main():
        clock = FakeClock()
        throttle = held_throttle(clock, "A")
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        await q.put("A", "a0")
        gone = asyncio.create_task(q.get())
        await settle()
        gone.cancel()
        await settle()
        assert gone.cancelled()
        lone = asyncio.create_task(q.get())
        await settle()
        assert not lone.done() and q.pending("A") == 1  # still alone: the reserve
        other = asyncio.create_task(q.get())
        await settle()
        assert sorted(g.result() for g in (lone, other) if g.done()) == [("A", "a0")]
        for g in (lone, other):
            g.cancel()
        await settle()

    asyncio.run(main())


def test_draining_serves_the_key_with_the_least_work_first_and_ignores_the_throttle() -> None:
    clock = [0.0]
    throttle: CostThrottle[str] = CostThrottle(0.001, 1.0, clock=lambda: clock[0])
    throttle.charge("B", 100.0, 1.0)  # B is held for 1000 s

    async def main() -> list[str]:
        q: FairQueue[str, str] = FairQueue(100, 100, throttle, reserve_getters=1)
        for key, n in (("A", 3), ("B", 1), ("C", 2)):
            for i in range(n):
                await q.put(key, f"{key}{i}")
        first = await q.get()  # round robin, B held: A first
        q.drain_shortest_first()
        rest = [await q.get() for _ in range(5)]
        return [first[1]] + [item for _, item in rest]

    order = asyncio.run(main())
    assert order == ["A0", "B0", "C0", "C1", "A1", "A2"]  # after A0: B (1 left, held or not), C (2), A (2, later in turn)


def test_draining_wakes_a_getter_that_waits_on_a_held_key() -> None:
    clock = [0.0]
    throttle: CostThrottle[str] = CostThrottle(0.001, 1.0, clock=lambda: clock[0])
    throttle.charge("A", 100.0, 1.0)

    async def main() -> None:
        q: FairQueue[str, str] = FairQueue(10, 10, throttle, reserve_getters=1)
        await q.put("A", "a0")
        getter = asyncio.create_task(q.get())
        await settle()
        assert not getter.done()  # a lone getter keeps the reserve
        q.drain_shortest_first()
        assert await asyncio.wait_for(getter, 1.0) == ("A", "a0")

    asyncio.run(main())


def test_serves_at_once_follows_the_reserve_and_the_throttle():
    async def main():
        clock = FakeClock()
        throttle: CostThrottle[str] = CostThrottle(rate=1.0, burst_s=1.0, clock=clock)
        q: FairQueue[str, int] = FairQueue(8, 8, throttle, reserve_getters=1)
        assert q.serves_at_once("A", 1) and q.serves_at_once("A", 2)
        await q.put("A", 1)
        await q.get()  # A now has an item running
        assert not q.serves_at_once("A", 1)  # the last idle worker is kept for other sessions
        assert q.serves_at_once("A", 2) and q.serves_at_once("B", 1)
        q.task_done("A")
        assert q.serves_at_once("A", 1)
        throttle.charge("B", 5.0, 1.0)  # B is in debt: held
        assert not q.serves_at_once("B", 2) and q.serves_at_once("A", 2)
        assert FairQueue(8, 8).serves_at_once("A", 0)  # no reserve: a free key is always served

    asyncio.run(main())
