"""The Redis backend against a real ``redis-server`` (our own, on a free loopback port): a front end
(:class:`RedisBackend`) and worker hosts (:class:`WorkerHost`) in this process, with fake engines
(no model), so every test is about the broker: delivery, fairness, recovery, Redis down."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import pytest
import redis

from bench.redis_process import RedisProcess
from fakes import RAISE, pcm, text_for
from whisper_streaming.backends.base import AsrBackend, BackendStatus, Capacity, UtteranceJob, UtteranceResult
from whisper_streaming.backends.pool import PoolOptions
from whisper_streaming.backends.redis_backend import RedisBackend, RedisBackendOptions
from whisper_streaming.backends.redis_protocol import (
    MessageError,
    RedisKeys,
    RedisOptions,
    WireJob,
    WireResult,
    dumps,
    loads,
)
from whisper_streaming.backends.redis_worker import WorkerHost, WorkerHostOptions
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.base import EngineOptions
from whisper_streaming.errors import AsrError, BackendUnavailableError, ConfigError

pytestmark = pytest.mark.timeout(90)

WAIT_S = 20.0


class FakeEngines(AsrBackend):
    """In-process engines for a worker host: ``workers`` slots; an utterance tagged ``tag`` with
    ``ms`` (see :func:`fakes.pcm`) answers ``"utt <tag>"`` after ``ms``; ``RAISE`` fails."""

    instances: list[FakeEngines] = []

    def __init__(self, options: PoolOptions) -> None:
        self.slots = options.workers
        self.calls: list[int] = []
        self.closed = False
        FakeEngines.instances.append(self)

    async def start(self) -> None:
        pass

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        tag, ms = struct.unpack("<hh", job.pcm[:4])
        self.calls.append(tag)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[UtteranceResult] = loop.create_future()

        def answer() -> None:
            if fut.done():
                return
            if tag == RAISE:
                fut.set_exception(AsrError("fake engine failure"))
            else:
                fut.set_result(UtteranceResult(Transcript(text_for(tag), "en", 1.0, (), 0.01)))

        loop.call_later(max(0, ms) / 1000, answer)
        return fut

    def cancel_session(self, session_key: Hashable) -> None:
        pass

    def capacity(self) -> Capacity:
        return Capacity(self.slots, 0, self.slots)

    def status(self) -> BackendStatus:
        return BackendStatus((), 0, 0, 0, 0)

    async def close(self) -> None:
        self.closed = True


def redis_options(server: RedisProcess, **kw: Any) -> RedisOptions:
    kw.setdefault("heartbeat_s", 0.2)
    kw.setdefault("worker_ttl_s", 0.8)
    kw.setdefault("claim_after_s", 0.8)
    return RedisOptions(url=server.url, **kw)


def host(server: RedisProcess, slots: int = 1, name: str | None = None, **kw: Any) -> WorkerHost:
    pool = PoolOptions(EngineOptions(engine="fake", model="unused"), workers=slots, throttle_worker_s_per_s=None)
    return WorkerHost(WorkerHostOptions(redis_options(server, **kw), pool, worker_id=name), backend_factory=FakeEngines)


def front(server: RedisProcess, *, redis_kw: dict[str, Any] | None = None, **kw: Any) -> RedisBackend:
    return RedisBackend(RedisBackendOptions(redis_options(server, **(redis_kw or {})), **kw))


async def until(pred: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def text(fut: asyncio.Future[UtteranceResult]) -> str:
    return (await asyncio.wait_for(asyncio.shield(fut), WAIT_S)).transcript.text


@contextlib.asynccontextmanager
async def running(fe: RedisBackend, *hosts: WorkerHost) -> AsyncIterator[None]:
    """Start the front end and the hosts, wait until the front end sees a live host; stop them all after."""
    await fe.start()
    for h in hosts:
        await h.start()
    try:
        await until(lambda: fe.capacity().available, "a live host")
        yield
    finally:
        for h in hosts:
            await h.stop()
        await fe.close()


def run(body: Callable[[], Awaitable[None]]) -> None:
    FakeEngines.instances.clear()
    asyncio.run(asyncio.wait_for(body(), 60))


# --------------------------------------------------------------------------- codec


def test_broker_messages_round_trip_and_foreign_pickles_are_refused():
    job = WireJob("f:1", "r", "s", UtteranceJob(pcm(3), partial=True))
    assert loads(dumps(job), WireJob) == job

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    with pytest.raises(MessageError, match="not allowed"):
        loads(pickle.dumps(Evil()), WireJob)
    with pytest.raises(MessageError, match="not a WireJob"):
        loads(dumps(WireResult("f:1", "w")), WireJob)
    with pytest.raises(MessageError):
        loads(b"not a pickle", WireJob)


# --------------------------------------------------------------------------- delivery


def test_utterances_go_round_trip_through_a_worker_host(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server, slots=2, name="host-a")
        async with running(fe, wh):
            assert fe.capacity().slots == 2
            futures = [await fe.submit(f"s{i}", UtteranceJob(pcm(i, 20))) for i in range(5)]
            assert [await text(f) for f in futures] == [text_for(i) for i in range(5)]
            st = fe.status()
            assert st.remote is not None and st.remote.workers_live == 1 and st.remote.slots_live == 2
            assert st.utterances_done == 5 and st.remote.jobs_in_flight == 0
            keys = RedisKeys("whisper_streaming")
            plain = redis.Redis.from_url(redis_server.url)
            assert plain.xlen(keys.jobs) == 0  # answered jobs are deleted from the stream
            assert plain.xpending(keys.jobs, "asr-workers")["pending"] == 0

    run(body)


def test_an_engine_failure_reaches_the_caller_as_asr_error(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server)
        async with running(fe, wh):
            with pytest.raises(AsrError, match="fake engine failure"):
                await text(await fe.submit("s", UtteranceJob(pcm(RAISE))))
            assert await text(await fe.submit("s", UtteranceJob(pcm(1)))) == text_for(1)

    run(body)


def test_at_most_live_slots_are_in_redis_and_sessions_take_turns(redis_server):
    """One slot: a session that queues five utterances does not put five on the shared stream,
    and another session's utterance goes after at most one more of them, not after all five."""

    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server, slots=1)
        plain = redis.Redis.from_url(redis_server.url)
        async with running(fe, wh):
            chatty = [await fe.submit("chatty", UtteranceJob(pcm(i, 60))) for i in range(5)]
            await asyncio.sleep(0.01)
            other = await fe.submit("other", UtteranceJob(pcm(99, 10)))
            most = 0
            while not all(f.done() for f in chatty + [other]):
                most = max(most, plain.xlen("whisper_streaming:jobs"), fe.status().remote.jobs_in_flight)  # type: ignore[union-attr]
                await asyncio.sleep(0.005)
            assert most == 1
            order = FakeEngines.instances[0].calls
            assert order.index(99) <= 2, order

    run(body)


def test_partials_and_chunks_wait_for_streaming_utterances(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server, slots=1)
        async with running(fe, wh):
            first = await fe.submit("a", UtteranceJob(pcm(1, 100)))
            await asyncio.sleep(0.05)
            low = await fe.submit("b", UtteranceJob(pcm(2, 10), partial=True))
            final = await fe.submit("c", UtteranceJob(pcm(3, 10)))
            for f in (first, low, final):
                await text(f)
            assert FakeEngines.instances[0].calls == [1, 3, 2]

    run(body)


# --------------------------------------------------------------------------- recovery


def test_a_job_whose_worker_stopped_is_taken_over_and_answered_once(redis_server):
    """A consumer that read a job and died (it never acknowledges, never sends a heartbeat): a
    live host takes the job over after ``claim_after_s`` and the caller gets exactly one answer."""

    async def body() -> None:
        fe = front(redis_server)
        await fe.start()
        plain = redis.Redis.from_url(redis_server.url)
        wh = host(redis_server, name="alive")
        await wh.start()
        try:
            await until(lambda: fe.capacity().available, "a live host")
            await wh.stop()  # the only live host leaves: the job below waits in the stream
            await until(lambda: not fe.capacity().available, "the host to leave")
            # a host that is seen live but dies once it has read the job: a record and a read, no ack
            plain.set("whisper_streaming:worker:ghost", dumps_record("ghost"), px=800)
            plain.sadd("whisper_streaming:workers", "ghost")
            await until(lambda: fe.capacity().available, "the ghost to be seen live")
            fut = await fe.submit("s", UtteranceJob(pcm(7, 10)))
            await until(lambda: plain.xlen("whisper_streaming:jobs") == 1, "the job to reach redis")
            got = plain.xreadgroup("asr-workers", "ghost", {"whisper_streaming:jobs": ">"}, count=1)
            assert got and got[0][1]
            t0 = time.monotonic()
            rescuer = host(redis_server, name="rescuer")
            await rescuer.start()
            assert await text(fut) == text_for(7)
            assert time.monotonic() - t0 < 5.0
            assert rescuer.redelivered == 1
            await asyncio.sleep(0.5)
            assert fe.status().remote.duplicates_dropped == 0  # type: ignore[union-attr]
            assert plain.xpending("whisper_streaming:jobs", "asr-workers")["pending"] == 0
            await rescuer.stop()
            await until(lambda: fe.status().remote.workers_live == 0, "the rescuer to leave")  # type: ignore[union-attr]
            assert fe.status().remote.jobs_redelivered == 1  # type: ignore[union-attr]  # a total: it outlives the host
        finally:
            await fe.close()

    run(body)


def dumps_record(worker_id: str, slots: int = 1) -> bytes:
    from whisper_streaming.backends.redis_protocol import WorkerRecord

    return dumps(WorkerRecord(worker_id, "nowhere", 1, slots, 0))


def test_a_job_delivered_max_attempts_times_fails_instead_of_going_round(redis_server):
    async def body() -> None:
        fe = front(redis_server, redis_kw={"max_attempts": 2})
        await fe.start()
        plain = redis.Redis.from_url(redis_server.url)
        try:
            plain.set("whisper_streaming:worker:ghost", dumps_record("ghost"), px=5000)
            plain.sadd("whisper_streaming:workers", "ghost")
            await until(lambda: fe.capacity().available, "the ghost to be seen live")
            fut = await fe.submit("s", UtteranceJob(pcm(7, 10)))
            await until(lambda: plain.xlen("whisper_streaming:jobs") == 1, "the job to reach redis")
            entry = plain.xreadgroup("asr-workers", "ghost", {"whisper_streaming:jobs": ">"}, count=1)[0][1][0][0]
            plain.xclaim("whisper_streaming:jobs", "asr-workers", "ghost2", 0, [entry])  # a second host took it and died too
            wh = host(redis_server, max_attempts=2)
            await wh.start()
            with pytest.raises(AsrError, match="delivered 3 times"):
                await text(fut)
            assert FakeEngines.instances[-1].calls == []  # never decoded a third time
            assert wh.failed_for_good == 1
            await wh.stop()
        finally:
            await fe.close()

    run(body)


def test_a_second_answer_to_the_same_job_is_dropped(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server)
        plain = redis.Redis.from_url(redis_server.url)
        async with running(fe, wh):
            fut = await fe.submit("s", UtteranceJob(pcm(5)))
            assert await text(fut) == text_for(5)
            job_id = f"{fe.frontend_id}:0"
            late = WireResult(job_id, "late-host", UtteranceResult(Transcript("late", "en", 1.0, (), 0.01)))
            plain.xadd(fe.results_key, {"body": dumps(late)})
            await until(lambda: fe.status().remote.duplicates_dropped == 1, "the duplicate to be dropped")  # type: ignore[union-attr]
            assert fut.result().transcript.text == text_for(5)
            assert fe.status().utterances_done == 1

    run(body)


def test_graceful_stop_finishes_the_job_in_hand(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server), host(redis_server)
        await fe.start()
        await wh.start()
        try:
            await until(lambda: fe.capacity().available, "a live host")
            fut = await fe.submit("s", UtteranceJob(pcm(4, 400)))
            await until(lambda: wh.jobs_in_hand == 1, "the host to take the job")
            await wh.stop()
            assert fut.done()  # answered before stop() returned
            assert await text(fut) == text_for(4)
            assert FakeEngines.instances[0].closed
            await until(lambda: not fe.capacity().available, "the front end to see no host")
        finally:
            await fe.close()

    run(body)


# --------------------------------------------------------------------------- Redis down


def test_redis_restart_loses_no_utterance(redis_server):
    """Redis killed with jobs in flight and queued, back within the grace period (empty:
    persistence off): new sessions are refused meanwhile, and every utterance is answered once."""

    async def body() -> None:
        fe, wh = front(redis_server, unavailable_grace_s=15.0), host(redis_server, slots=1)
        async with running(fe, wh):
            futures = [await fe.submit(f"s{i % 2}", UtteranceJob(pcm(i, 300))) for i in range(4)]
            await until(lambda: wh.jobs_in_hand == 1, "a job in hand")
            redis_server.kill()
            await until(lambda: not fe.capacity().available, "the front end to see redis gone")
            assert fe.status().remote.connected is False  # type: ignore[union-attr]
            await asyncio.sleep(0.5)
            redis_server.restart()
            assert [await text(f) for f in futures] == [text_for(i) for i in range(4)]
            assert fe.capacity().available
            st = fe.status().remote
            assert st is not None and st.connected and st.jobs_in_flight == 0
            assert st.jobs_resubmitted >= 1  # the job lost with redis was handed over again

    run(body)


def test_redis_down_past_the_grace_period_fails_waiting_utterances_clearly(redis_server):
    async def body() -> None:
        fe, wh = front(redis_server, unavailable_grace_s=1.0), host(redis_server, slots=1)
        await fe.start()
        await wh.start()
        try:
            await until(lambda: fe.capacity().available, "a live host")
            redis_server.kill()
            await until(lambda: not fe.capacity().available, "the front end to see redis gone")
            fut = await fe.submit("s", UtteranceJob(pcm(1)))
            with pytest.raises(BackendUnavailableError, match="redis unreachable"):
                await asyncio.wait_for(fut, 10)
        finally:
            await wh.stop(timeout_s=1.0)
            await fe.close()

    run(body)


def test_no_live_worker_host_means_unavailable(redis_server):
    async def body() -> None:
        fe = front(redis_server, unavailable_grace_s=0.5)
        await fe.start()
        try:
            await asyncio.sleep(0.5)
            assert fe.status().remote.connected  # type: ignore[union-attr]
            assert not fe.capacity().available
            fut = await fe.submit("s", UtteranceJob(pcm(1)))
            with pytest.raises(BackendUnavailableError, match="no worker host alive"):
                await asyncio.wait_for(fut, 10)
        finally:
            await fe.close()

    run(body)


def test_a_password_in_the_url_is_used_and_a_wrong_one_is_a_config_error():
    with RedisProcess(password="s3cret") as server:
        async def body() -> None:
            fe, wh = front(server), host(server)
            await fe.start()
            await wh.start()
            try:
                await until(lambda: fe.capacity().available, "a live host")
                assert await text(await fe.submit("s", UtteranceJob(pcm(2)))) == text_for(2)
            finally:
                await wh.stop()
                await fe.close()
            wrong = RedisBackend(RedisBackendOptions(RedisOptions(url=server.url.replace("s3cret", "wrong"))))
            with pytest.raises(ConfigError, match="credentials"):
                await wrong.start()
            assert "s3cret" not in wrong._safe_url()  # noqa: SLF001 - the log form of the URL

        run(body)


def test_a_poison_utterance_that_kills_every_engine_fails_after_max_attempts(redis_server, tmp_path):
    """Two hosts with real engine processes (fake engines): an utterance that kills the engine
    process every time is tried ``max_attempts`` times in all, then fails; it never goes round
    between the hosts, and the hosts still serve the next utterance."""
    from fakes import CRASH, calls, make_engine

    from whisper_streaming.backends.pool import ProcessPool

    def real_host(name: str) -> WorkerHost:
        pool = PoolOptions(EngineOptions(engine="fake", model=str(tmp_path)), workers=1, engine_factory=make_engine,
                           throttle_worker_s_per_s=None, max_attempts=2)
        return WorkerHost(WorkerHostOptions(redis_options(redis_server, max_attempts=2), pool, worker_id=name), backend_factory=ProcessPool)

    async def body() -> None:
        fe = front(redis_server)
        hosts = [real_host("h1"), real_host("h2")]
        await fe.start()
        for h in hosts:
            await h.start()
        try:
            await until(lambda: fe.capacity().slots == 2, "two live hosts")
            with pytest.raises(AsrError, match="died"):
                await text(await fe.submit("s", UtteranceJob(pcm(CRASH))))
            await asyncio.sleep(2.0)  # longer than claim_after_s: nothing is redelivered
            assert [tag for _, tag in calls(tmp_path)] == [CRASH, CRASH]
            assert sum(h.redelivered for h in hosts) == 0
            assert await text(await fe.submit("s", UtteranceJob(pcm(3)))) == text_for(3)
            await until(lambda: fe.status().worker_restarts == 2, "the hosts' engine restarts to reach the front end's status")
        finally:
            for h in hosts:
                await h.stop()
            await fe.close()

    run(body)


def test_dead_consumers_with_nothing_pending_are_forgotten_and_those_holding_jobs_are_not(redis_server, monkeypatch):
    import whisper_streaming.backends.redis_worker as rw

    monkeypatch.setattr(rw, "CONSUMER_SWEEP_BEATS", 1)
    monkeypatch.setattr(rw, "DEAD_CONSUMER_TTLS", 0.5)  # idle > 0.4 s with the test's 0.8 s TTL

    async def body() -> None:
        plain = redis.Redis.from_url(redis_server.url)
        fe, wh = front(redis_server), host(redis_server, name="live")
        async with running(fe, wh):
            await wh.stop()  # no live host: the job below stays with the consumer that read it
            plain.xgroup_createconsumer("whisper_streaming:jobs", "asr-workers", "gone-empty")
            plain.xadd("whisper_streaming:jobs", {"id": "x", "body": b"junk"})
            plain.xreadgroup("asr-workers", "gone-holding", {"whisper_streaming:jobs": ">"}, count=1)
            await asyncio.sleep(0.6)
            sweeper = host(redis_server, name="sweeper", claim_after_s=30.0)  # it must not take the job over meanwhile
            await sweeper.start()
            try:
                def names() -> set[str]:
                    return {c["name"].decode() for c in plain.xinfo_consumers("whisper_streaming:jobs", "asr-workers")}

                await until(lambda: "gone-empty" not in names(), "the empty dead consumer to be deleted")
                assert "gone-holding" in names()  # its pending job is not lost
                assert plain.xpending("whisper_streaming:jobs", "asr-workers")["pending"] == 1
            finally:
                await sweeper.stop()

    run(body)


def test_a_worker_host_that_cannot_reach_redis_says_so(caplog):
    from bench.redis_process import free_port

    async def body() -> None:
        options = RedisOptions(url=f"redis://127.0.0.1:{free_port()}/0", heartbeat_s=0.2, worker_ttl_s=0.8, claim_after_s=0.8,
                               connect_timeout_s=0.5)
        pool = PoolOptions(EngineOptions(engine="fake", model="unused"), workers=1)
        wh = WorkerHost(WorkerHostOptions(options, pool, worker_id="lonely"), backend_factory=FakeEngines)
        with caplog.at_level("WARNING", logger="whisper_streaming.backends.redis_worker"):
            await wh.start()
            await until(lambda: "unreachable" in caplog.text, "the warning")
            await wh.stop(timeout_s=1.0)
        assert "lonely" in caplog.text and "retrying" in caplog.text

    run(body)


def test_rediss_with_a_private_ca_and_a_password(tmp_path):
    """``rediss://`` (TLS) with the CA given in the URL, as docs/deployment.md shows: a front end
    and a host get through; without the CA the front end cannot connect and refuses sessions."""
    from urllib.parse import quote

    from tls_certs import make_server_files

    files = make_server_files(tmp_path, "127.0.0.1")
    with RedisProcess(tls_cert=files.cert_file, tls_key=files.key_file, tls_ca=files.ca_file, password="s3cret") as server:
        assert server.url.startswith("rediss://")
        url = f"{server.url}?ssl_ca_certs={quote(str(files.ca_file))}"

        async def body() -> None:
            fe = RedisBackend(RedisBackendOptions(RedisOptions(url=url, heartbeat_s=0.2, worker_ttl_s=0.8, claim_after_s=0.8)))
            pool = PoolOptions(EngineOptions(engine="fake", model="unused"), workers=1, throttle_worker_s_per_s=None)
            wh = WorkerHost(WorkerHostOptions(RedisOptions(url=url, heartbeat_s=0.2, worker_ttl_s=0.8, claim_after_s=0.8), pool),
                            backend_factory=FakeEngines)
            async with running(fe, wh):
                assert await text(await fe.submit("s", UtteranceJob(pcm(6)))) == text_for(6)
            untrusted = RedisBackend(RedisBackendOptions(RedisOptions(url=server.url, connect_timeout_s=1.0)))
            await untrusted.start()  # the certificate is not trusted: not connected, sessions refused
            try:
                await asyncio.sleep(0.3)
                assert not untrusted.capacity().available and not untrusted.status().remote.connected  # type: ignore[union-attr]
            finally:
                await untrusted.close()

        run(body)


def test_a_session_over_its_queue_bound_waits_in_submit_backpressure(redis_server):
    """The front end's queue is bounded per session, as the local pool's: with one slow engine,
    the session's third queued utterance waits in ``submit`` (the TCP reader stops reading) until
    one is answered, while another session's submit goes through at once."""

    async def body() -> None:
        fe, wh = front(redis_server, max_queued_per_session=2), host(redis_server, slots=1)
        async with running(fe, wh):
            first = [await fe.submit("flood", UtteranceJob(pcm(i, 300))) for i in range(3)]  # 1 in Redis, 2 queued
            blocked = asyncio.ensure_future(fe.submit("flood", UtteranceJob(pcm(3, 10))))
            await asyncio.sleep(0.1)
            assert not blocked.done()
            other = await asyncio.wait_for(fe.submit("other", UtteranceJob(pcm(9, 10))), 1.0)  # not held up
            await text(first[0])
            fourth = await asyncio.wait_for(blocked, WAIT_S)  # room again: the waiting submit returns
            assert [await text(f) for f in (*first, fourth, other)] == [text_for(i) for i in (0, 1, 2, 3, 9)]

    run(body)


def test_starts_at_once_is_false_only_for_a_session_the_throttle_holds() -> None:
    """No connection needed: the front end's own queue decides (no reserve worker there)."""
    fe = RedisBackend(RedisBackendOptions(RedisOptions(url="redis://127.0.0.1:1/0"), throttle_worker_s_per_s=0.02, throttle_burst_s=0.3))
    assert fe.starts_at_once("H") and fe.starts_at_once("B")
    assert fe._throttle is not None  # noqa: SLF001 - charge a worker's answer as the front end does
    fe._throttle.charge("H", 0.6, 0.6)  # noqa: SLF001
    assert not fe.starts_at_once("H") and fe.starts_at_once("B")
    unthrottled = RedisBackend(RedisBackendOptions(RedisOptions(url="redis://127.0.0.1:1/0"), throttle_worker_s_per_s=None))
    assert unthrottled.starts_at_once("H")
