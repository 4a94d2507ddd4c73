"""The web door in-process: a real :class:`Runtime`, uvicorn on loopback (port 0), the real session
and VAD on shipped speech, the fake ASR backend of ``test_inprocess_doors``, and the
``websockets`` client.  ``/health`` and ``/metrics`` (parsed with ``prometheus_client``) too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from test_inprocess_doors import JFK_PCM, JFK_UTTERANCES, Client, FakeBackend, RecordingSink, eventually
from whisper_streaming.backends.base import BackendStatus, Capacity, EngineState, RemoteStatus, UtteranceJob, UtteranceResult
from whisper_streaming.runtime.runtime import Runtime, RuntimeOptions
from whisper_streaming.sinks.base import SessionClosed
from whisper_streaming.transports.tcp import TcpOptions, TcpTransport
from whisper_streaming.transports.web import WebOptions, WebTransport
from whisper_streaming.transports.web.app import PLACEHOLDER_PAGE, STATIC_DIR, build_app, health
from whisper_streaming.transports.web.stream import origin_allowed
from whisper_streaming.wire.protocol import UserId, Welcome

pytestmark = pytest.mark.timeout(60)

FRAME_BYTES = 3200  # 100 ms at 16 kHz s16le
WAIT_S = 10.0


@dataclass
class Server:
    runtime: Runtime
    backend: FakeBackend
    web: WebTransport
    port: int
    tcp_port: int | None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def web_serving(backend: FakeBackend, *, web_options: WebOptions | None = None, sinks: tuple[Any, ...] = (), tcp: bool = False,
                      **runtime_kw: Any) -> AsyncIterator[Server]:
    runtime = Runtime(RuntimeOptions(**runtime_kw), backend, sinks=sinks)
    web = WebTransport(runtime, web_options or WebOptions(host="127.0.0.1", port=0))
    runtime.add_transport(web)
    tcp_door = TcpTransport(runtime, TcpOptions(host="127.0.0.1", port=0)) if tcp else None
    if tcp_door is not None:
        runtime.add_transport(tcp_door)
    await runtime.start()
    assert web.address is not None and web.address[1] != 0
    try:
        yield Server(runtime, backend, web, web.address[1], tcp_door.address[1] if tcp_door and tcp_door.address else None)
    finally:
        if not runtime.stopping:
            await asyncio.wait_for(runtime.shutdown(), 15)


async def send_audio(ws: ClientConnection, pcm: bytes, frame: int = FRAME_BYTES) -> None:
    for i in range(0, len(pcm), frame):
        await ws.send(pcm[i : i + frame])


async def until(ws: ClientConnection, kind: str, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
    """Messages up to and including the first of ``kind``."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        text = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        assert isinstance(text, str), "the server sends only text frames"
        got.append(json.loads(text))
        if got[-1]["type"] == kind:
            return got


async def to_close(ws: ClientConnection, timeout_s: float = WAIT_S) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and its close code."""
    got: list[dict[str, Any]] = []
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout_s)))
    except ConnectionClosed as exc:
        return got, exc.rcvd.code if exc.rcvd is not None else None


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET (urllib in a thread)."""

    def fetch() -> tuple[int, str, str]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.headers.get("content-type", ""), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("content-type", ""), exc.read().decode()

    return await asyncio.to_thread(fetch)


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: ``(name, sorted labels) -> value``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "final"]


class GatedBackend(FakeBackend):
    """A fake backend whose ``submit`` waits for ``gate`` (a full ASR queue)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        return await super().submit(session_key, job)


# --------------------------------------------------------------------------- the stream


def test_start_audio_finish_gives_started_finals_summary_finished_and_start_again() -> None:
    backend = FakeBackend(delays={0: 0.3, 1: 0.0, 2: 0.05})  # the first utterance finishes last: still delivered first

    async def main() -> None:
        async with web_serving(backend) as srv:
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start", "user": "ann", "sample_rate": 16000, "encoding": "pcm_s16le",
                                          "language": None, "partials": False, "sentiment": False}))
                await send_audio(ws, JFK_PCM, frame=3333)  # odd-sized frames: half samples wait for the next frame
                await ws.send(json.dumps({"type": "finish"}))
                got = await until(ws, "finished")
                assert got[0] == {"type": "started", "options": {"sample_rate": 16000, "encoding": "pcm_s16le", "language": "auto",
                                                                 "partials": False, "sentiment": False, "speakers": None}}
                assert [m["type"] for m in got] == ["started", "final", "final", "final", "summary", "finished"]
                assert [m["text"] for m in finals(got)] == [FakeBackend.text(i, job) for i, (_, job) in enumerate(backend.jobs)]
                assert [m["text"].split()[0] for m in finals(got)] == ["job0", "job1", "job2"]
                assert [(m["start"], m["end"]) for m in finals(got)] == [(round(u.start_s, 3), round(u.end_s, 3)) for u in JFK_UTTERANCES]
                for (key, job), u in zip(backend.jobs, JFK_UTTERANCES):  # the utterances' exact samples reached the backend
                    assert key == "w1" and job.pcm == u.samples.astype("<i2").tobytes()
                assert got[-2] == {"type": "summary", "results": 3}
                assert srv.runtime.session_count == 1

                # start may follow finished: a second stream on the same socket, times from 0 again
                await ws.send(json.dumps({"type": "start"}))
                await send_audio(ws, JFK_PCM[: 16000 * 2 * 5])
                await ws.send(json.dumps({"type": "finish"}))
                second = await until(ws, "finished")
                assert second[0]["type"] == "started" and finals(second)
                assert finals(second)[0]["start"] == finals(got)[0]["start"]
                assert srv.runtime.stats.sessions_started == 1
            await eventually(lambda: srv.runtime.session_count == 0, what="the session's end")

    asyncio.run(main())


def test_a_browser_rate_is_resampled_and_gives_the_same_utterances() -> None:
    import numpy as np
    import soxr

    backend = FakeBackend()
    pcm48 = soxr.resample(np.frombuffer(JFK_PCM, dtype="<i2"), 16000, 48000).astype("<i2").tobytes()

    async def main() -> None:
        async with web_serving(backend) as srv:
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": 48000}))
                await send_audio(ws, pcm48, frame=48000 // 10 * 2 + 1)
                await ws.send(json.dumps({"type": "finish"}))
                got = await until(ws, "finished")
            assert got[0]["options"]["sample_rate"] == 48000
            assert len(finals(got)) == len(JFK_UTTERANCES)
            for m, u in zip(finals(got), JFK_UTTERANCES):  # times are seconds of the client's audio either way
                assert abs(m["start"] - u.start_s) < 0.1 and abs(m["end"] - u.end_s) < 0.1

    asyncio.run(main())


# --------------------------------------------------------------------------- malformed input ends that session only


@pytest.mark.parametrize(
    "first,reason",
    [
        ("not json", "BAD_MESSAGE"),
        ('{"type": "hello"}', "UNKNOWN_MESSAGE"),
        (b"\x00\x01", "AUDIO_BEFORE_BEGIN"),
        ('{"type": "start", "language": "klingon"}', "BAD_OPTION"),
        ('{"type": "finish"}', "FINISH_BEFORE_BEGIN"),
    ],
)
def test_malformed_input_ends_that_session_with_an_error_and_1008_while_another_streams(first: str | bytes, reason: str) -> None:
    backend = FakeBackend(delay_s=0.05)

    async def main() -> None:
        async with web_serving(backend) as srv:
            async with connect(srv.url) as good:
                await good.send(json.dumps({"type": "start", "user": "good"}))
                await send_audio(good, JFK_PCM[: len(JFK_PCM) // 2])
                async with connect(srv.url) as bad:
                    await bad.send(first)
                    got, code = await to_close(bad)
                assert got == [{"type": "error", "reason": reason}] or got[-1] == {"type": "error", "reason": reason}, got
                assert code == 1008
                await send_audio(good, JFK_PCM[len(JFK_PCM) // 2 :])
                await good.send(json.dumps({"type": "finish"}))
                ok = await until(good, "finished")
                assert len(finals(ok)) == 3 and not any(m["type"] == "error" for m in ok)
            assert srv.runtime.stats.errors[reason] == 1

    asyncio.run(main())


def test_an_oversized_message_closes_with_1009_and_is_counted() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with web_serving(backend, web_options=WebOptions(host="127.0.0.1", port=0, max_message_bytes=8192)) as srv:
            async with connect(srv.url, max_size=None) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await until(ws, "started")
                await ws.send(bytes(8192))  # at the limit: fine
                await ws.send(bytes(8193))
                _, code = await to_close(ws)
            assert code == 1009
            await eventually(lambda: srv.runtime.session_count == 0, what="the session's end")
            assert srv.runtime.stats.errors["FRAME_TOO_LARGE"] == 1

    asyncio.run(main())


def test_an_abrupt_close_mid_stream_ends_the_session_and_drops_its_queued_work() -> None:
    backend = FakeBackend(delay_s=2.0)
    sink = RecordingSink()

    async def main() -> None:
        async with web_serving(backend, sinks=(sink,)) as srv:
            ws = await connect(srv.url)
            await ws.send(json.dumps({"type": "start"}))
            await send_audio(ws, JFK_PCM)
            await eventually(lambda: len(backend.jobs) == 2, what="two utterances queued")
            assert srv.runtime.session_count == 1
            ws.transport.abort()  # no close handshake: the TCP connection just goes away
            await eventually(lambda: srv.runtime.session_count == 0, what="the session's cleanup")
            assert "w1" in backend.cancelled_sessions
            assert all(f.cancelled() for f in backend.futures)
            await eventually(lambda: bool(sink.of(SessionClosed)), what="the session's end in the sinks")

    asyncio.run(main())


def test_a_flooding_client_is_not_read_while_the_workers_are_full() -> None:
    backend = GatedBackend()

    async def main() -> None:
        async with web_serving(backend) as srv:
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await until(ws, "started")
                frames = 0
                copies = 60
                pcm = JFK_PCM * copies  # 11 minutes of speech (21 MB), sent as fast as the socket takes it

                async def flood() -> None:
                    nonlocal frames
                    for i in range(0, len(pcm), 32000):
                        await ws.send(pcm[i : i + 32000])
                        frames += 1

                sender = asyncio.create_task(flood())
                await eventually(lambda: backend.waiting == 1, what="the first utterance waiting for room")
                await asyncio.sleep(1.0)
                frames_then, audio_then = frames, srv.runtime.stats.audio_in_s
                await asyncio.sleep(1.0)
                # the server stopped reading: the client is blocked and nothing more was taken in
                assert frames == frames_then and not sender.done()
                assert srv.runtime.stats.audio_in_s == audio_then < 30.0
                assert frames < len(pcm) // 32000 // 2
                backend.gate.set()  # room again: everything flows
                await asyncio.wait_for(sender, 30)
                await ws.send(json.dumps({"type": "finish"}))
                got = await until(ws, "finished", timeout_s=30)
                assert len(finals(got)) >= copies
                assert srv.runtime.stats.audio_in_s == pytest.approx(len(pcm) / 32000, abs=0.01)

    asyncio.run(main())


# --------------------------------------------------------------------------- admission, origin, shutdown


def test_max_connections_counts_every_door_and_refuses_with_1013() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with web_serving(backend, tcp=True, max_sessions=1) as srv:
            assert srv.tcp_port is not None
            tcp = await Client.connect(srv.tcp_port)
            tcp.send(UserId("holder"))
            assert await tcp.next() == Welcome("Welcome!")
            async with connect(srv.url) as ws:
                await asyncio.sleep(0.2)  # connected without a message: no slot asked yet
                await ws.send(json.dumps({"type": "start"}))
                got, code = await to_close(ws)
            assert got == [{"type": "error", "reason": "SERVER_TOO_BUSY"}] and code == 1013
            assert srv.runtime.stats.sessions_rejected == 1 and srv.runtime.stats.errors["SERVER_TOO_BUSY"] == 1
            tcp.close()
            await eventually(lambda: srv.runtime.session_count == 0, what="the TCP session's end")
            async with connect(srv.url) as ws:  # the slot is free again
                await ws.send(json.dumps({"type": "start"}))
                assert (await until(ws, "started"))[-1]["type"] == "started"
                assert srv.runtime.sessions_by_transport() == {"websocket": 1}

    asyncio.run(main())


def test_a_connection_that_says_nothing_is_closed_without_taking_a_slot() -> None:
    backend = FakeBackend()

    async def main() -> None:
        options = WebOptions(host="127.0.0.1", port=0, identify_timeout_s=0.3)
        async with web_serving(backend, web_options=options) as srv:
            async with connect(srv.url) as ws:
                got, code = await to_close(ws)
            assert got == [{"type": "error", "reason": "TIMEOUT"}] and code == 1001
            assert srv.runtime.stats.sessions_started == 0

    asyncio.run(main())


def test_origin_check() -> None:
    assert origin_allowed(None, "127.0.0.1:8080", ())  # not a browser
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", ())  # the server's own page
    assert not origin_allowed("http://evil.example", "127.0.0.1:8080", ())
    assert not origin_allowed("null", "127.0.0.1:8080", ())
    assert origin_allowed("https://app.example.com", "asr.example.com", ("https://app.example.com",))
    assert origin_allowed("HTTPS://App.Example.com", "asr.example.com", ("https://app.example.com",))
    assert origin_allowed("http://anything", "h", ("*",))
    backend = FakeBackend()

    async def main() -> None:
        options = WebOptions(host="127.0.0.1", port=0, allowed_origins=("https://app.example.com",))
        async with web_serving(backend, web_options=options) as srv:
            async with connect(srv.url, origin="http://evil.example") as ws:  # type: ignore[arg-type]
                got, code = await to_close(ws)
            assert got == [{"type": "error", "reason": "BAD_ORIGIN"}] and code == 1008
            for origin in (f"http://127.0.0.1:{srv.port}", "https://app.example.com"):
                async with connect(srv.url, origin=origin) as ws:  # type: ignore[arg-type]
                    await ws.send(json.dumps({"type": "start"}))
                    assert (await until(ws, "started"))[0]["type"] == "started"
            assert srv.runtime.stats.errors["BAD_ORIGIN"] == 1

    asyncio.run(main())


def test_shutdown_finishes_open_streams_then_closes_with_1001() -> None:
    backend = FakeBackend(delay_s=0.3)

    async def main() -> None:
        async with web_serving(backend) as srv:
            ws = await connect(srv.url)
            await ws.send(json.dumps({"type": "start"}))
            await send_audio(ws, JFK_PCM)  # no finish
            await eventually(lambda: abs(srv.runtime.stats.audio_in_s - len(JFK_PCM) / 32000) < 1e-6, what="all audio taken in")
            assert len(backend.jobs) == 2 and not any(f.done() for f in backend.futures)  # results still pending
            (got, code), _ = await asyncio.gather(to_close(ws), asyncio.wait_for(srv.runtime.shutdown(), 15))
            assert [m["type"] for m in got] == ["started", "final", "final", "final", "summary", "finished"]
            assert code == 1001
            with pytest.raises(OSError):
                await connect(srv.url, open_timeout=2)

    asyncio.run(main())


def test_streams_still_owed_results_at_the_shutdown_deadline_are_told() -> None:
    backend = FakeBackend(delay_s=30.0)

    async def main() -> None:
        async with web_serving(backend, shutdown_timeout_s=1.0) as srv:
            ws = await connect(srv.url)
            await ws.send(json.dumps({"type": "start"}))
            await send_audio(ws, JFK_PCM)
            await eventually(lambda: abs(srv.runtime.stats.audio_in_s - len(JFK_PCM) / 32000) < 1e-6, what="all audio taken in")
            (got, code), _ = await asyncio.gather(to_close(ws), asyncio.wait_for(srv.runtime.shutdown(), 15))
            assert got[-1] == {"type": "error", "reason": "SHUTTING_DOWN"} and code == 1001
            assert srv.runtime.stats.errors["SHUTTING_DOWN"] == 1

    asyncio.run(main())


def test_uvicorn_leaves_the_signal_handlers_alone() -> None:
    async def main() -> None:
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        async with web_serving(FakeBackend()):
            assert {sig: signal.getsignal(sig) for sig in before} == before
        assert {sig: signal.getsignal(sig) for sig in before} == before

    asyncio.run(main())


def test_a_taken_port_is_an_oserror() -> None:
    async def main() -> None:
        async with web_serving(FakeBackend()) as srv:
            other = Runtime(RuntimeOptions(), FakeBackend())
            other.add_transport(WebTransport(other, WebOptions(host="127.0.0.1", port=srv.port)))
            with pytest.raises(OSError):
                await other.start()

    asyncio.run(main())


# --------------------------------------------------------------------------- /health, /metrics, the page


def test_health_reports_engines_sessions_and_queue() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with web_serving(backend, max_sessions=5) as srv:
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await until(ws, "started")
                status, kind, body = await get(srv.http("/health"))
                assert "websocket sessions: 1 (open 1)" in srv.runtime.status_text().splitlines()  # the %C line
            assert status == 200 and kind.startswith("application/json")
            assert json.loads(body) == {"status": "ok", "engines_ready": 2, "engines": ["idle", "busy"], "sessions": 1,
                                        "sessions_by_transport": {"websocket": 1}, "max_sessions": 5, "queue_depth": 0}
            await srv.runtime.shutdown()
            code, stopping = health(srv.runtime)
            assert code == 503 and stopping["status"] == "stopping"

    asyncio.run(main())


class RemoteFakeBackend(FakeBackend):
    """A backend with remote workers (the Redis backend's status), reachable or not."""

    def __init__(self, *, connected: bool) -> None:
        super().__init__()
        self.connected = connected

    def capacity(self) -> Capacity:
        return Capacity(idle_slots=1 if self.connected else 0, queue_depth=0, slots=2 if self.connected else 0, available=self.connected)

    def status(self) -> BackendStatus:
        engines = (EngineState.IDLE, EngineState.BUSY) if self.connected else ()
        remote = RemoteStatus("redis", self.connected, 1 if self.connected else 0, len(engines), 1 if self.connected else 0, 1,
                              jobs_redelivered=3, duplicates_dropped=1, jobs_resubmitted=2)
        return BackendStatus(engines, 0, 0, 0, 0, remote=remote)


def test_a_remote_backend_shows_its_workers_and_while_unreachable_refuses_sessions() -> None:
    async def main() -> None:
        backend = RemoteFakeBackend(connected=True)
        async with web_serving(backend) as srv:
            code, body = health(srv.runtime)
            assert code == 200 and body["status"] == "ok"
            assert body["workers"] == {"broker": "redis", "connected": True, "live": 1, "slots": 2, "busy": 1, "jobs_in_flight": 1,
                                       "redelivered": 3, "duplicates_dropped": 1, "resubmitted": 2}
            lines = srv.runtime.status_text().splitlines()
            assert "redis: connected; worker hosts live 1 (engines 2, busy 1)" in lines
            assert "jobs in flight: 1, redelivered 3, duplicates dropped 1, resubmitted 2" in lines
            got = metrics((await get(srv.http("/metrics")))[2])
            assert got[("whisper_streaming_broker_connected", ())] == 1 and got[("whisper_streaming_worker_hosts", ())] == 1
            assert got[("whisper_streaming_jobs_redelivered_total", ())] == 3
            assert got[("whisper_streaming_duplicate_results_total", ())] == 1

            backend.connected = False  # Redis gone: new sessions are refused, /health says so
            assert health(srv.runtime)[1]["status"] == "unavailable"
            assert "redis: UNREACHABLE; worker hosts live 0 (engines 0, busy 0)" in srv.runtime.status_text().splitlines()
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start"}))
                got_msgs, close_code = await to_close(ws)
            assert got_msgs == [{"type": "error", "reason": "SERVER_TOO_BUSY"}] and close_code == 1013
            assert metrics((await get(srv.http("/metrics")))[2])[("whisper_streaming_broker_connected", ())] == 0

    asyncio.run(main())


def test_metrics_move_after_a_session() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with web_serving(backend, tcp=True) as srv:
            status, kind, before_text = await get(srv.http("/metrics"))
            assert status == 200 and kind.startswith("text/plain")
            before = metrics(before_text)
            assert before[("whisper_streaming_finals_total", ())] == 0
            assert before[("whisper_streaming_sessions", (("transport", "tcp"),))] == 0
            assert before[("whisper_streaming_sessions", (("transport", "websocket"),))] == 0
            async with connect(srv.url) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await send_audio(ws, JFK_PCM)
                await ws.send(json.dumps({"type": "finish"}))
                await until(ws, "finished")
                during = metrics((await get(srv.http("/metrics")))[2])
                assert during[("whisper_streaming_sessions", (("transport", "websocket"),))] == 1
            async with connect(srv.url) as bad:
                await bad.send("not json")
                await to_close(bad)
            await eventually(lambda: srv.runtime.session_count == 0, what="the sessions' end")
            after = metrics((await get(srv.http("/metrics")))[2])
            assert after[("whisper_streaming_finals_total", ())] == 3
            assert after[("whisper_streaming_sessions_started_total", ())] == 2
            assert after[("whisper_streaming_errors_total", (("reason", "BAD_MESSAGE"),))] == 1
            assert after[("whisper_streaming_utterances_total", ())] == 3
            assert after[("whisper_streaming_audio_seconds_total", ())] == pytest.approx(len(JFK_PCM) / 32000)
            assert after[("whisper_streaming_final_latency_seconds_count", ())] == 3
            assert 0 <= after[("whisper_streaming_final_latency_seconds_sum", ())] < 3
            assert after[("whisper_streaming_final_latency_seconds_bucket", (("le", "+Inf"),))] == 3
            assert after[("whisper_streaming_sessions", (("transport", "websocket"),))] == 0
            assert after[("whisper_streaming_queue_depth", ())] == 0
            assert after[("whisper_streaming_worker_restarts_total", ())] == 2  # the fake backend's status
            assert after[("whisper_streaming_engines", (("state", "idle"),))] == 1
            assert after[("whisper_streaming_real_time_factor", ())] == 0.0  # the fake reports no worker time

    asyncio.run(main())


def test_two_runtimes_have_their_own_registries() -> None:
    async def main() -> None:
        async with web_serving(FakeBackend()) as a, web_serving(FakeBackend()) as b:
            assert a.web.registry is not b.web.registry
            a.runtime.stats.finals = 5
            assert metrics((await get(b.http("/metrics")))[2])[("whisper_streaming_finals_total", ())] == 0
            assert metrics((await get(a.http("/metrics")))[2])[("whisper_streaming_finals_total", ())] == 5

    asyncio.run(main())


def test_the_page_and_its_files_are_served(tmp_path: Path) -> None:
    async def main() -> None:
        async with web_serving(FakeBackend()) as srv:
            status, kind, body = await get(srv.http("/"))
            assert status == 200 and kind.startswith("text/html") and "<html" in body.lower()
            status, kind, body = await get(srv.http("/docs"))
            assert status == 200 and kind.startswith("text/html") and "/openapi.json" in body  # Swagger UI, served locally
            assert "https://" not in body and "http://" not in body  # no CDN
            for path in sorted(STATIC_DIR.iterdir())[:3]:  # the page's own files, from the package
                status, _, text = await get(srv.http(f"/static/{path.name}"))
                assert status == 200 and text == path.read_text(encoding="utf-8")

    asyncio.run(main())

    async def without_files() -> None:  # no page installed: a placeholder, and no /static
        runtime = Runtime(RuntimeOptions(), FakeBackend())
        app = build_app(runtime, WebTransport(runtime, WebOptions()).registry, lambda ws: asyncio.sleep(0), static_dir=tmp_path / "none")
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/")).text == PLACEHOLDER_PAGE
            assert (await client.get("/static/app.js")).status_code == 404

    asyncio.run(without_files())
