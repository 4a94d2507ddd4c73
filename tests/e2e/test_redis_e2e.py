"""The Redis backend end to end: our own ``redis-server`` (persistence off, free loopback port), a
front end (``backend.kind: redis``) and two worker hosts as separate processes with the real
bundled model, real speech at real-time pace.  A worker host SIGKILLed mid-utterance and a Redis
killed and brought back lose no utterance; a new session is refused while Redis is down."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.redis_process import RedisProcess
from bench.server_process import ServerProcess
from bench.worker_process import WorkerProcess
from speech import JFK, LIBRI, assert_transcript, load_speech, silence
from whisper_streaming.client.cli import stream_file
from whisper_streaming.client.streaming import AsyncStreamingClient, Result, StreamingClient
from whisper_streaming.errors import ServerError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OTHER = "librispeech_test-clean_61-70968-0000.wav"

CONFIG = """\
model:
  language: en
  channel: 1
server:
  max_connections_per_ip: 0
backend:
  kind: redis
  redis_url: {url}
  heartbeat_s: 0.5
  worker_ttl_s: 1.5
  claim_after_s: 1.5
  unavailable_grace_s: 20
"""


class Cluster:
    """Redis, a front end and two worker hosts (one engine each)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = RedisProcess(log_path=tmp / "redis.log")
        self.config = tmp / "redis.yaml"
        self.config.write_text(CONFIG.format(url=self.redis.url), encoding="utf-8")
        self.workers = [self.new_worker("a"), self.new_worker("b")]
        self.front = ServerProcess(config=self.config, log_path=tmp / "front.log")

    def new_worker(self, name: str) -> WorkerProcess:
        return WorkerProcess(config=self.config, log_path=self.tmp / f"worker-{name}-{time.monotonic_ns()}.log")

    def status(self) -> str:
        with StreamingClient("127.0.0.1", self.front.port) as c:
            return c.status()

    def wait_hosts(self, n: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while f"worker hosts live {n} " not in self.status():
            assert time.monotonic() < deadline, self.status()
            time.sleep(0.2)

    def close(self) -> None:
        self.front.stop()
        for w in self.workers:
            w.stop()
        self.redis.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        c.wait_hosts(2)
        yield c
    finally:
        c.close()


async def session(port: int, name: str, user: str) -> list[Result]:
    pcm, _ = load_speech(name)
    client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id=user)
    try:
        return await stream_file(client, pcm + silence(0.8), speed=1.0)
    finally:
        await client.close()


def check_once(name: str, results: list[Result]) -> None:
    """Every utterance once: the transcript is right and no utterance (start, end) came twice."""
    spans = [(r.start_s, r.end_s) for r in results]
    assert spans == sorted(set(spans)), spans
    assert_transcript(name, " ".join(r.text for r in results))


def counter(status: str, pattern: str) -> int:
    m = re.search(pattern, status)
    assert m, status
    return int(m.group(1))


def test_a_worker_host_killed_mid_utterance_loses_no_utterance(cluster: Cluster):
    victim = cluster.workers[0]
    probe = redis.Redis.from_url(cluster.redis.url)
    killed = threading.Event()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = probe.xpending_range("whisper_streaming:jobs", "asr-workers", "-", "+", 10, consumername=victim.worker_id)
            if pending:  # the victim holds an utterance right now
                victim.kill()
                killed.set()
                return
            time.sleep(0.005)

    async def run() -> list[list[Result]]:
        killer = asyncio.get_running_loop().run_in_executor(None, kill_when_busy)
        got = await asyncio.gather(*(session(cluster.front.port, name, f"kill-{i}") for i, name in enumerate((LIBRI, JFK, OTHER))))
        await killer
        return got

    results = asyncio.run(run())
    assert killed.is_set(), "the victim never held an utterance"
    for name, got in zip((LIBRI, JFK, OTHER), results):
        check_once(name, got)
    status = cluster.status()
    assert counter(status, r"redelivered (\d+)") >= 1, status  # the survivor took the victim's utterance over
    assert counter(status, r"utterances failed: (\d+)") == 0, status
    survivor = cluster.workers[1].log_text()
    assert "took over job" in survivor, survivor
    cluster.workers[0] = cluster.new_worker("a2")  # back to two hosts for the next test
    cluster.wait_hosts(2)


def test_redis_killed_and_restarted_mid_stream_loses_no_utterance(cluster: Cluster):
    restarted = threading.Event()
    refused: list[str] = []

    def outage() -> None:
        time.sleep(3.0)  # the stream is under way, utterances in flight
        cluster.redis.kill()
        deadline = time.monotonic() + 10
        while "UNREACHABLE" not in cluster.status():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        try:
            with StreamingClient("127.0.0.1", cluster.front.port, user_id="during-outage") as c:
                c.begin()
        except ServerError as exc:
            refused.append(exc.reason)
        time.sleep(1.0)
        cluster.redis.restart()
        restarted.set()

    async def run() -> list[Result]:
        side = asyncio.get_running_loop().run_in_executor(None, outage)
        got = await session(cluster.front.port, LIBRI, "through-outage")
        await side
        return got

    results = asyncio.run(run())
    assert restarted.is_set()
    assert refused == ["SERVER_TOO_BUSY"]
    check_once(LIBRI, results)
    cluster.wait_hosts(2)
    status = cluster.status()
    assert "redis: connected" in status, status
    assert counter(status, r"utterances failed: (\d+)") == 0, status
    # and the cluster still works after it
    check_once(JFK, asyncio.run(session(cluster.front.port, JFK, "after-outage")))
