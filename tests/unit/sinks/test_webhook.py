"""WebhookSink against a scripted HTTP server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.webhook import WebhookSink, WebhookStats, encode_body


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class Hook:
    """The server's state: a script of replies (then 200s), what was received, a gate."""

    def __init__(self) -> None:
        self.script: collections.deque[Reply] = collections.deque()
        self.received: list[Received] = []
        self.gate = threading.Event()
        self.gate.set()
        self.url = ""

    def bodies(self) -> list[Any]:
        return [r.body for r in self.received]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)))
            reply = state.script.popleft() if state.script else Reply()
            state.gate.wait(10)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


def sink_for(hook: Hook, **kwargs: Any) -> WebhookSink:
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("backoff_max_s", 0.05)
    kwargs.setdefault("timeout_s", 2.0)
    return WebhookSink(hook.url, trust_env=False, **kwargs)


def test_delivers_in_order_as_json(hook: Hook) -> None:
    bodies = [{"event": "result", "i": i, "text": f"héllo {i}"} for i in range(25)] + [{"event": "hangup"}]

    async def main() -> WebhookStats:
        sink = sink_for(hook, headers={"Authorization": "Bearer t0k"})
        for body in bodies:
            assert sink.post_nowait(body)
        assert await sink.flush(5)
        return await sink.aclose()

    stats = asyncio.run(main())
    assert hook.bodies() == bodies
    assert stats == WebhookStats(posted=26, delivered=26)
    first = hook.received[0]
    assert first.path == "/hook"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["authorization"] == "Bearer t0k"


@pytest.mark.parametrize("status", [503, 500, 429])
def test_retries_after_5xx_and_429_then_succeeds(hook: Hook, status: int) -> None:
    hook.script.extend([Reply(status), Reply(status), Reply(200)])

    async def main() -> WebhookStats:
        sink = sink_for(hook, max_retries=3)
        sink.post_nowait({"n": 1})
        sink.post_nowait({"n": 2})
        return await sink.aclose(5)

    stats = asyncio.run(main())
    assert hook.bodies() == [{"n": 1}, {"n": 1}, {"n": 1}, {"n": 2}]
    assert stats == WebhookStats(posted=2, delivered=2, retries=2)


def test_retry_after_header_lengthens_the_wait_up_to_the_cap(hook: Hook) -> None:
    hook.script.extend([Reply(503, headers={"Retry-After": "0.3"}), Reply(200)])

    async def main() -> float:
        sink = sink_for(hook, backoff_s=0.0, backoff_max_s=1.0)
        start = time.monotonic()
        sink.post_nowait({"n": 1})
        assert await sink.flush(5)
        elapsed = time.monotonic() - start
        await sink.aclose()
        return elapsed

    assert 0.3 <= asyncio.run(main()) < 1.0
    assert len(hook.received) == 2


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_no_retry_on_other_4xx_and_3xx(hook: Hook, status: int) -> None:
    hook.script.append(Reply(status))

    async def main() -> WebhookStats:
        sink = sink_for(hook, max_retries=5)
        sink.post_nowait({"bad": True})
        sink.post_nowait({"good": True})
        return await sink.aclose(5)

    stats = asyncio.run(main())
    assert hook.bodies() == [{"bad": True}, {"good": True}]
    assert stats == WebhookStats(posted=2, delivered=1, failed=1)


def test_gives_up_after_max_retries(hook: Hook) -> None:
    hook.script.extend([Reply(503)] * 10)

    async def main() -> WebhookStats:
        sink = sink_for(hook, max_retries=2)
        sink.post_nowait({"n": 1})
        return await sink.aclose(5)

    stats = asyncio.run(main())
    assert len(hook.received) == 3
    assert stats == WebhookStats(posted=1, failed=1, retries=2)


def test_timeout_is_retried_without_waiting_for_the_slow_answer(hook: Hook) -> None:
    hook.script.extend([Reply(200, delay_s=2.0), Reply(200)])

    async def main() -> tuple[WebhookStats, float]:
        sink = sink_for(hook, timeout_s=0.2, max_retries=1)
        start = time.monotonic()
        sink.post_nowait({"n": 1})
        assert await sink.flush(5)
        elapsed = time.monotonic() - start
        return await sink.aclose(), elapsed

    stats, elapsed = asyncio.run(main())
    assert stats == WebhookStats(posted=1, delivered=1, retries=1)
    assert hook.bodies() == [{"n": 1}, {"n": 1}]
    assert 0.2 <= elapsed < 1.5


def test_connection_refused_is_retried_then_failed() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> WebhookStats:
        sink = WebhookSink(f"http://127.0.0.1:{port}/x", trust_env=False, max_retries=2, backoff_s=0.01, timeout_s=1.0)
        sink.post_nowait({"n": 1})
        return await sink.aclose(5)

    assert asyncio.run(main()) == WebhookStats(posted=1, failed=1, retries=2)


def test_full_queue_drops_oldest_and_post_never_blocks(hook: Hook) -> None:
    hook.gate.clear()  # the server holds the first request

    async def main() -> tuple[WebhookStats, WebhookStats, float]:
        sink = sink_for(hook, max_queue=3, timeout_s=5.0)
        sink.post_nowait({"i": 0})
        for _ in range(100):  # let the worker take body 0 in flight
            await asyncio.sleep(0.01)
            if hook.received:
                break
        start = time.monotonic()
        for i in range(1, 1001):
            assert sink.post_nowait({"i": i})
        post_time = time.monotonic() - start
        during = sink.stats
        hook.gate.set()
        return during, await sink.aclose(5), post_time

    during, final, post_time = asyncio.run(main())
    assert during == WebhookStats(posted=1001, dropped=997, pending=4)
    assert final == WebhookStats(posted=1001, delivered=4, dropped=997)
    assert hook.bodies() == [{"i": 0}, {"i": 998}, {"i": 999}, {"i": 1000}]
    # 1000 posts while the server is stuck: none waits on the network (a blocking post would wait
    # for the gate, which opens only after the loop).  The bound is loose: a loaded CI core took 0.7 s.
    assert post_time < 2.5


def test_aclose_flushes_what_is_queued(hook: Hook) -> None:
    hook.script.extend([Reply(200, delay_s=0.05)] * 5)

    async def main() -> WebhookStats:
        sink = sink_for(hook)
        for i in range(5):
            sink.post_nowait({"i": i})
        stats = await sink.aclose(deadline_s=5)
        assert sink.closed
        assert not sink.post_nowait({"late": True})  # refused after close, counted
        return stats

    stats = asyncio.run(main())
    assert hook.bodies() == [{"i": i} for i in range(5)]
    assert stats == WebhookStats(posted=5, delivered=5)


def test_aclose_deadline_abandons_the_rest(hook: Hook) -> None:
    hook.gate.clear()

    async def main() -> tuple[WebhookStats, float]:
        sink = sink_for(hook, timeout_s=5.0)
        for i in range(3):
            sink.post_nowait({"i": i})
        start = time.monotonic()
        stats = await sink.aclose(deadline_s=0.3)
        elapsed = time.monotonic() - start
        sink.post_nowait({"late": True})
        assert sink.stats.dropped == 1
        return stats, elapsed

    stats, elapsed = asyncio.run(main())
    hook.gate.set()
    assert stats == WebhookStats(posted=3, abandoned=3)
    assert 0.3 <= elapsed < 1.5


def test_usage_errors() -> None:
    for url in ("ftp://example.com/x", "not a url", "http://", ""):
        with pytest.raises(UsageError):
            WebhookSink(url)
    for kwargs in ({"timeout_s": 0}, {"max_retries": -1}, {"max_queue": 0}, {"backoff_s": 2, "backoff_max_s": 1}):
        with pytest.raises(UsageError):
            WebhookSink("http://127.0.0.1:9/x", **kwargs)
    with pytest.raises(UsageError):
        encode_body({"x": object()})
    with pytest.raises(UsageError):
        encode_body({"x": float("nan")})
    with pytest.raises(UsageError):
        encode_body(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert encode_body({"t": "é", "n": 1}) == '{"t":"é","n":1}'.encode()
    with pytest.raises(UsageError):  # no running loop
        WebhookSink("http://127.0.0.1:9/x").post_nowait({"n": 1})


def test_unserializable_body_is_refused_at_post_and_the_sink_goes_on(hook: Hook) -> None:
    async def main() -> WebhookStats:
        sink = sink_for(hook)
        with pytest.raises(UsageError):
            sink.post_nowait({"x": {1, 2}})
        sink.post_nowait({"ok": 1})
        return await sink.aclose(5)

    assert asyncio.run(main()) == WebhookStats(posted=1, delivered=1)
    assert hook.bodies() == [{"ok": 1}]
