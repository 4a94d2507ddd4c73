"""TLS and access tokens on the web door, in-process: a real :class:`Runtime` and
:class:`WebTransport` (uvicorn) on loopback, the real session and VAD on shipped speech, the fake
ASR backend of ``test_inprocess_doors``; a certificate made in the test (trustme); the
``websockets`` client for ``/v1/stream`` (WSS), the stdlib's HTTP client for ``/health`` and
``/metrics`` (Bearer).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from test_inprocess_doors import JFK_PCM, JFK_UTTERANCES, FakeBackend
from tls_certs import ServerFiles, make_server_files
from whisper_streaming.core.auth import TokenSet
from whisper_streaming.pipeline.session import SessionOptions
from whisper_streaming.runtime.runtime import Runtime, RuntimeOptions
from whisper_streaming.transports.web import WebOptions, WebTransport

pytestmark = pytest.mark.timeout(60)

GOOD = "Good-token_0123456789"
WRONG = "Wrong-token_0123456789"
TOKENS = TokenSet((GOOD,))
EXPECTED_TEXTS = [f"job{i}" for i in range(len(JFK_UTTERANCES))]
FRAME_BYTES = 3200  # 100 ms at 16 kHz


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    return make_server_files(tmp_path_factory.mktemp("tls"))


@dataclass
class Web:
    runtime: Runtime
    port: int
    tls: bool

    def url(self, path: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def serving(*, tls: ssl.SSLContext | None = None, tokens: TokenSet | None = None) -> AsyncIterator[Web]:
    runtime = Runtime(RuntimeOptions(session=SessionOptions(tokens=tokens)), FakeBackend())
    door = WebTransport(runtime, WebOptions(host="127.0.0.1", port=0, ssl_context=tls))
    runtime.add_transport(door)
    await runtime.start()
    assert door.address is not None
    try:
        yield Web(runtime, door.address[1], tls is not None)
    finally:
        await asyncio.wait_for(runtime.shutdown(), 15)


async def stream_jfk(ws: Any, start: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Send a start, the recording, a finish; return every message up to ``finished`` (or the close)."""
    await ws.send(json.dumps({"type": "start", **(start or {})}))
    for i in range(0, len(JFK_PCM), FRAME_BYTES):
        await ws.send(JFK_PCM[i : i + FRAME_BYTES])
    await ws.send(json.dumps({"type": "finish"}))
    return await received(ws)


async def received(ws: Any) -> list[dict[str, Any]]:
    """Messages until ``finished`` or the server's close."""
    got: list[dict[str, Any]] = []
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            got.append(message)
            if message["type"] == "finished":
                return got
    except websockets.ConnectionClosed:
        return got


def finals(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"].split()[0] for m in messages if m["type"] == "final"]


def http_get(port: int, path: str, *, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """A blocking GET (run it in a thread): status, headers (lower-case names), body."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10) if tls is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode("utf-8")
    finally:
        conn.close()


# --------------------------------------------------------------------------- TLS


def test_wss_stream_and_https_health_with_a_test_certificate(certs: ServerFiles) -> None:
    async def main() -> None:
        async with serving(tls=certs.server_context()) as web:
            async with websockets.connect(web.url("/v1/stream"), ssl=certs.client_context()) as ws:
                got = await stream_jfk(ws)
            assert got[0]["type"] == "started" and got[-1] == {"type": "finished"}
            assert finals(got) == EXPECTED_TEXTS

            status, _, body = await asyncio.to_thread(http_get, web.port, "/health", tls=certs.client_context())
            assert status == 200 and json.loads(body)["status"] == "ok"

            with pytest.raises(OSError):  # a client that does not trust the certificate fails its handshake
                await asyncio.to_thread(http_get, web.port, "/health", tls=ssl.create_default_context())
            with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to the TLS port gets no HTTP answer
                await asyncio.to_thread(http_get, web.port, "/health")
            with pytest.raises((OSError, websockets.InvalidHandshake, websockets.InvalidMessage)):
                async with websockets.connect(f"ws://127.0.0.1:{web.port}/v1/stream", open_timeout=5):
                    pass
            assert web.runtime.stats.sessions_started == 1

    asyncio.run(main())


# --------------------------------------------------------------------------- tokens: the WebSocket


@pytest.mark.parametrize("how", ["none", "wrong query", "wrong start"])
def test_websocket_without_a_valid_token_is_unauthorized_with_1008(how: str) -> None:
    async def main() -> None:
        async with serving(tokens=TOKENS) as web:
            url = web.url("/v1/stream" + (f"?token={WRONG}" if how == "wrong query" else ""))
            start = {"token": WRONG} if how == "wrong start" else {}
            async with websockets.connect(url) as ws:
                got = await stream_jfk(ws, start)
                await asyncio.wait_for(ws.wait_closed(), 5)
            assert got == [{"type": "error", "reason": "UNAUTHORIZED"}]
            assert ws.close_code == 1008
            assert web.runtime.backend.jobs == []  # type: ignore[attr-defined]
            assert web.runtime.stats.errors["UNAUTHORIZED"] == 1

    asyncio.run(main())


@pytest.mark.parametrize("how", ["query", "start"])
def test_websocket_with_the_right_token_streams(how: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with serving(tokens=TOKENS) as web:
            url = web.url("/v1/stream" + (f"?token={GOOD}" if how == "query" else ""))
            async with websockets.connect(url) as ws:
                got = await stream_jfk(ws, {"token": GOOD} if how == "start" else {})
                second = await stream_jfk(ws)  # a second stream, its start without a token
            assert got[0]["type"] == "started" and "token" not in got[0]["options"]  # never echoed
            assert finals(got) == EXPECTED_TEXTS
            # a query token goes with every start; a start token authenticates the session for the later ones
            assert finals(second) == [f"job{i + 3}" for i in range(3)]

    asyncio.run(main())
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")]  # not the test's own client
    assert not [line for line in server_lines if GOOD in line]  # never logged by the server ...
    if how == "query":  # ... though uvicorn logs the request line with its query: redacted
        assert any("/v1/stream?token=***" in line for line in server_lines)


# --------------------------------------------------------------------------- tokens: HTTP


def test_metrics_wants_a_bearer_token_health_and_the_page_do_not() -> None:
    async def main() -> None:
        async with serving(tokens=TOKENS) as web:
            for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": f"Basic {GOOD}"}, {"Authorization": GOOD}):
                status, head, body = await asyncio.to_thread(http_get, web.port, "/metrics", headers=headers)
                assert status == 401 and head.get("www-authenticate", "").startswith("Bearer"), (headers, status)
                assert json.loads(body) == {"detail": "UNAUTHORIZED"}
            assert web.runtime.stats.errors["UNAUTHORIZED"] == 4

            status, head, body = await asyncio.to_thread(http_get, web.port, "/metrics", headers={"Authorization": f"Bearer {GOOD}"})
            assert status == 200
            names = {family.name for family in text_string_to_metric_families(body)}
            assert names  # Prometheus text the official parser reads

            assert (await asyncio.to_thread(http_get, web.port, "/health"))[0] == 200
            assert (await asyncio.to_thread(http_get, web.port, "/"))[0] == 200

    asyncio.run(main())


def test_tokens_off_metrics_is_open() -> None:
    async def main() -> None:
        async with serving() as web:
            status, _, _ = await asyncio.to_thread(http_get, web.port, "/metrics")
            assert status == 200

    asyncio.run(main())


@pytest.mark.parametrize(
    "message,expected",
    [
        ('127.0.0.1:5 - "WebSocket /v1/stream?token=abc.def" [accepted]', '127.0.0.1:5 - "WebSocket /v1/stream?token=***" [accepted]'),
        ("GET /v1/stream?user=a&token=abc&x=1 HTTP/1.1", "GET /v1/stream?user=a&token=***&x=1 HTTP/1.1"),
        ('< TEXT \'{"type": "start", "token": "abc/+~"}\' [30 bytes]', '< TEXT \'{"type": "start", "token": "***"}\' [30 bytes]'),
        ("GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1"),
    ],
)
def test_redact_tokens_filter(message: str, expected: str) -> None:
    from whisper_streaming.transports.web.auth import RedactTokens

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s", (message,), None)
    assert RedactTokens().filter(record) is True
    assert record.getMessage() == expected
