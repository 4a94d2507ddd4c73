"""The file API of the web door (``/v1/audio/transcriptions``, ``/v1/jobs``) with FastAPI's
TestClient on :func:`build_app`: a :class:`JobStore` over a fake transcriber (the real media
decoding, PyAV), the runtime of the other web tests (``test_inprocess_doors.FakeBackend``),
:class:`BodyLimit` for 413, tokens, the OpenAPI document, and the official ``openai`` client
(its ``http_client`` is the TestClient, an ``httpx2.Client``).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import json
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import openai
import pytest
import soundfile
from fastapi import WebSocket
from fastapi.testclient import TestClient

from test_inprocess_doors import FakeBackend
from whisper_streaming.batch.jobs import JobStore
from whisper_streaming.batch.request import MAX_SPEAKERS, BatchRequest
from whisper_streaming.core.auth import TokenSet
from whisper_streaming.core.batch import BatchResult, BatchSegment, BatchWord
from whisper_streaming.errors import AsrError
from whisper_streaming.pipeline.session import SessionOptions
from whisper_streaming.runtime.metrics import metrics_registry
from whisper_streaming.runtime.runtime import Runtime, RuntimeOptions
from whisper_streaming.transports.web.app import build_app
from whisper_streaming.transports.web.auth import BearerBeforeBody
from whisper_streaming.transports.web.batch_api import BATCH_PATHS, BatchApiOptions, BodyLimit, callback_refusal, job_json

pytestmark = pytest.mark.timeout(60)

TRANSCRIPTIONS = "/v1/audio/transcriptions"
JOBS = "/v1/jobs"
GOOD = "Good-token_0123456789"
RESULT = BatchResult(
    language="en", duration_s=0.5, text=" Hello there. Bye.",
    segments=(
        BatchSegment(0, 0.0, 0.25, " Hello there.", -0.2, 0.01, 1.1,
                     words=(BatchWord(" Hello", 0.0, 0.1, 0.9), BatchWord(" there.", 0.1, 0.25, 0.8))),
        BatchSegment(1, 0.3, 0.5, " Bye.", -0.3, 0.02, 1.0, words=(BatchWord(" Bye.", 0.3, 0.5, 0.7),)),
    ),
)


def wav_bytes(seconds: float = 0.5, rate_hz: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    buf = io.BytesIO()
    soundfile.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()


WAV = wav_bytes()


def video_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for k in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, fractions.Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


class FakeTranscriber:
    """Stands in for ``BatchTranscriber``: reports ``progress``, waits for ``release`` unless
    ``auto_release``, then raises ``error`` or returns :data:`RESULT`."""

    def __init__(self) -> None:
        self.progress: tuple[float, ...] = ()
        self.error: BaseException | None = None
        self.auto_release = True
        self.release: asyncio.Event | None = None
        self.calls: list[tuple[Hashable, BatchRequest, int]] = []
        self.cancelled = 0

    async def transcribe(self, samples: np.ndarray, request: BatchRequest, *, key: Hashable,
                         on_progress: Callable[[float, str], None] | None = None) -> BatchResult:
        self.calls.append((key, request, len(samples)))
        try:
            for pct in self.progress:
                assert on_progress is not None
                on_progress(pct, "transcribing")
            if not self.auto_release:
                if self.release is None:
                    self.release = asyncio.Event()
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return RESULT

    def close(self) -> None:
        pass


@dataclass
class Api:
    client: TestClient
    store: JobStore
    fake: FakeTranscriber
    runtime: Runtime

    def release(self) -> None:
        """Let the held transcriptions finish (in the app's event loop)."""

        def go() -> None:
            self.fake.auto_release = True
            if self.fake.release is not None:
                self.fake.release.set()

        self.client.portal.call(go)  # type: ignore[union-attr]

    def job(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.client.get(f"{JOBS}/{job_id}")
            assert r.status_code == 200, r.text
            if until(r.json()) or time.monotonic() > deadline:
                return r.json()
            time.sleep(0.01)


async def _no_stream(websocket: WebSocket) -> None:
    await websocket.close()


@contextmanager
def api(*, tokens: TokenSet | None = None, max_bytes: int | None = None, options: BatchApiOptions | None = None,
        **store_kw: Any) -> Iterator[Api]:
    """A TestClient on :func:`build_app` with a job store (one event loop for the whole block)."""
    runtime = Runtime(RuntimeOptions(session=SessionOptions(tokens=tokens)), FakeBackend())
    fake = FakeTranscriber()
    store_kw.setdefault("callback_body", job_json)
    store = JobStore(fake, **store_kw)  # type: ignore[arg-type]
    app: Any = build_app(runtime, metrics_registry(runtime), _no_stream, jobs=store, batch_options=options)
    if max_bytes is not None:
        app = BodyLimit(app, max_bytes=max_bytes)
    with TestClient(app) as client:
        try:
            yield Api(client, store, fake, runtime)
        finally:
            client.portal.call(store.close)  # type: ignore[union-attr]


def upload(data: bytes = WAV, name: str = "a.wav") -> dict[str, Any]:
    return {"file": (name, data, "application/octet-stream")}


def error_of(r: Any) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# --------------------------------------------------------------------------- POST /v1/audio/transcriptions


def test_json_is_the_default_format() -> None:
    with api() as a:
        r = a.client.post(TRANSCRIPTIONS, files=upload(), data={"model": "whisper-1"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json() == {"text": RESULT.text}
        (key, request, n), = a.fake.calls
        assert key[0] == "batch" and n == 8000 and request == BatchRequest()
        assert a.store.active == 0


@pytest.mark.parametrize("fmt,media_type,expected", [
    ("text", "text/plain", "Hello there. Bye.\n"),
    ("srt", "text/plain", "1\n00:00:00,000 --> 00:00:00,250\nHello there.\n\n2\n00:00:00,300 --> 00:00:00,500\nBye.\n\n"),
    ("vtt", "text/vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:00.250\nHello there.\n\n00:00:00.300 --> 00:00:00.500\nBye.\n\n"),
])
def test_text_formats(fmt: str, media_type: str, expected: str) -> None:
    with api() as a:
        r = a.client.post(TRANSCRIPTIONS, files=upload(), data={"response_format": fmt})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == f"{media_type}; charset=utf-8"  # OpenAI answers srt as text/plain too
        assert r.text == expected


def test_verbose_json_has_words_only_with_word_granularity() -> None:
    with api() as a:
        r = a.client.post(TRANSCRIPTIONS, files=upload(), data={"response_format": "verbose_json", "language": "EN",
                                                                "timestamp_granularities[]": ["word", "segment"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["language"] == "english" and body["duration"] == 0.5 and body["text"] == RESULT.text
        assert [s["text"] for s in body["segments"]] == [" Hello there.", " Bye."]
        assert body["words"] == [{"word": " Hello", "start": 0.0, "end": 0.1}, {"word": " there.", "start": 0.1, "end": 0.25},
                                 {"word": " Bye.", "start": 0.3, "end": 0.5}]
        assert a.fake.calls[-1][1] == BatchRequest(language="en", word_timestamps=True)

        r = a.client.post(TRANSCRIPTIONS, files=upload(), data={"response_format": "verbose_json"})
        assert r.status_code == 200
        body = r.json()
        assert "words" not in body and all("words" not in s for s in body["segments"]) and len(body["segments"]) == 2
        assert a.fake.calls[-1][1].word_timestamps is False


@pytest.mark.parametrize("data,param", [
    ({"response_format": "xml"}, "response_format"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),  # word needs verbose_json
    ({"timestamp_granularities[]": "word", "response_format": "srt"}, "timestamp_granularities[]"),
    ({"response_format": "verbose_json", "timestamp_granularities[]": "sentence"}, "timestamp_granularities[]"),
    ({"language": "english"}, "language"),
    ({"language": "e1"}, "language"),
    ({"language": "日本"}, "language"),
    ({"num_speakers": "0"}, "num_speakers"),
    ({"num_speakers": str(MAX_SPEAKERS + 1)}, "num_speakers"),
    ({"num_speakers": "two"}, "num_speakers"),  # refused by FastAPI's validation: still 400 in OpenAI's shape
    ({"temperature": "2"}, "temperature"),
    ({"diarize": "maybe"}, "diarize"),
])
def test_bad_fields_are_400_in_openais_shape(data: dict[str, str], param: str) -> None:
    with api() as a:
        for path in (TRANSCRIPTIONS, JOBS):
            if path == JOBS and param in ("response_format", "timestamp_granularities[]") and "verbose_json" not in str(data):
                continue  # jobs always answer verbose_json: response_format is not checked there
            r = a.client.post(path, files=upload(), data=data)
            assert r.status_code == 400, (path, r.text)
            error = error_of(r)
            assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
        assert a.fake.calls == [] and a.store.active == 0


def test_a_missing_file_is_400_in_openais_shape() -> None:
    with api() as a:
        for path in (TRANSCRIPTIONS, JOBS):
            r = a.client.post(path, data={"model": "whisper-1"})
            assert r.status_code == 400 and error_of(r)["param"] == "file"


def test_num_speakers_in_range_asks_for_diarization() -> None:
    with api() as a:
        r = a.client.post(TRANSCRIPTIONS, files=upload(), data={"num_speakers": "2", "features": "true"})
        assert r.status_code == 200, r.text
        assert a.fake.calls[0][1] == BatchRequest(diarize=True, num_speakers=2, features=True)


@pytest.mark.parametrize("data,status,code", [
    (b"this is not an audio file at all " * 50, 422, "MEDIA_CORRUPT"),
    (b"", 422, "MEDIA_EMPTY"),
    (None, 422, "MEDIA_NO_AUDIO"),  # a video-only MP4
])
def test_unusable_uploads_get_their_reason(data: bytes | None, status: int, code: str) -> None:
    body = video_only_mp4() if data is None else data
    with api() as a:
        for path in (TRANSCRIPTIONS, JOBS):
            r = a.client.post(path, files=upload(body, "x.mp4"))
            assert r.status_code == status, r.text
            error = error_of(r)
            assert error["code"] == code and error["param"] == "file" and error["message"]
        assert a.fake.calls == []


def test_audio_over_max_duration_is_413() -> None:
    with api(options=BatchApiOptions(max_duration_s=0.2)) as a:
        r = a.client.post(TRANSCRIPTIONS, files=upload())
        assert r.status_code == 413 and error_of(r)["code"] == "MEDIA_TOO_LONG"
        assert a.fake.calls == []


def test_a_failed_transcription_is_500_with_its_code() -> None:
    with api() as a:
        a.fake.error = AsrError("chunk 1 failed on every attempt")
        r = a.client.post(TRANSCRIPTIONS, files=upload())
        assert r.status_code == 500
        error = error_of(r)
        assert error["code"] == "ASR_FAILED" and error["type"] == "server_error" and "chunk 1" in error["message"]


# --------------------------------------------------------------------------- limits


def test_content_length_over_the_limit_is_413_before_the_body_is_read() -> None:
    with api(max_bytes=4096) as a:
        for path in (TRANSCRIPTIONS, JOBS):
            r = a.client.post(path, files=upload(wav_bytes(0.5)))  # 16 kB
            assert r.status_code == 413, r.text
            error = error_of(r)
            assert error["code"] == "UPLOAD_TOO_LARGE" and error["param"] == "file"
        assert a.fake.calls == [] and a.store.active == 0
        small = wav_bytes(0.05)  # 1.6 kB: under the limit
        assert a.client.post(TRANSCRIPTIONS, files=upload(small)).status_code == 200
        assert a.client.get("/health").status_code == 200  # other routes are not bounded


def _multipart(data: bytes, boundary: str = "xyzBOUNDARYxyz") -> tuple[list[bytes], dict[str, str]]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    parts = [head] + [data[i:i + 1024] for i in range(0, len(data), 1024)] + [f"\r\n--{boundary}--\r\n".encode()]
    return parts, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_a_chunked_body_without_content_length_over_the_limit_is_413() -> None:
    with api(max_bytes=4096) as a:
        for path in (TRANSCRIPTIONS, JOBS):
            parts, headers = _multipart(wav_bytes(0.5))
            r = a.client.post(path, content=(p for p in parts), headers=headers)
            assert r.status_code == 413, r.text
            assert error_of(r)["code"] == "UPLOAD_TOO_LARGE"
        assert a.fake.calls == [] and a.store.active == 0
        parts, headers = _multipart(wav_bytes(0.05))
        r = a.client.post(TRANSCRIPTIONS, content=(p for p in parts), headers=headers)
        assert r.status_code == 200, r.text  # a chunked body under the limit works


def test_body_limit_refuses_a_chunked_body_as_soon_as_it_passes_the_limit() -> None:
    """At the ASGI level: the body arrives in many messages; reading stops at the one that passes."""
    received: list[int] = []
    given = 0

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        nonlocal given
        given += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": given < 100}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": JOBS, "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(inner, max_bytes=4500)(scope, receive, send))
    assert given == 5 and received == [1000] * 4
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["error"]["code"] == "UPLOAD_TOO_LARGE"

    received.clear(), sent.clear()
    given = 0
    asyncio.run(BodyLimit(inner, max_bytes=4500)({**scope, "path": "/other"}, receive, send))  # other paths: not bounded
    assert given == 100 and sent[0]["status"] == 200


def test_429_when_the_store_is_full() -> None:
    with api(max_queued=1) as a:
        a.fake.auto_release = False
        r = a.client.post(JOBS, files=upload())
        assert r.status_code == 202
        first = r.json()["id"]
        for path in (JOBS, TRANSCRIPTIONS):
            r = a.client.post(path, files=upload())
            assert r.status_code == 429, r.text
            error = error_of(r)
            assert error["code"] == "SERVER_TOO_BUSY" and error["type"] == "rate_limit_error"
        a.release()
        assert a.job(first, lambda b: b["status"] == "completed")["status"] == "completed"
        assert a.client.post(TRANSCRIPTIONS, files=upload()).status_code == 200  # the finished job freed its place


# --------------------------------------------------------------------------- jobs


def test_job_lifecycle_202_progress_result() -> None:
    with api() as a:
        a.fake.auto_release = False
        a.fake.progress = (40.0,)
        r = a.client.post(JOBS, files=upload(), data={"timestamp_granularities[]": "word", "diarize": "true"})
        assert r.status_code == 202, r.text
        body = r.json()
        job_id = body["id"]
        assert body == {"id": job_id, "status": "queued", "progress": 0.0, "stage": "queued"}
        assert r.headers["location"] == f"{JOBS}/{job_id}"

        running = a.job(job_id, lambda b: b["status"] == "processing" and b["progress"] == 40.0)
        assert running["status"] == "processing" and running["progress"] == 40.0 and running["stage"] == "transcribing"
        assert "result" not in running and "error" not in running and running["filename"] == "a.wav"
        assert a.fake.calls[0][1] == BatchRequest(word_timestamps=True, diarize=True)

        a.release()
        done = a.job(job_id, lambda b: b["status"] == "completed")
        assert done["status"] == "completed" and done["progress"] == 100.0 and "finished_at" in done
        assert done["result"]["text"] == RESULT.text and len(done["result"]["segments"]) == 2
        assert [w["word"] for w in done["result"]["words"]] == [" Hello", " there.", " Bye."]
        assert a.client.get(f"{JOBS}/{job_id}").headers["cache-control"] == "no-store"


def test_delete_cancels_a_job_and_unknown_ids_are_404() -> None:
    with api() as a:
        a.fake.auto_release = False
        job_id = a.client.post(JOBS, files=upload()).json()["id"]
        a.job(job_id, lambda b: b["status"] == "processing")
        r = a.client.delete(f"{JOBS}/{job_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["id"] == job_id
        assert a.job(job_id, lambda b: True)["status"] == "cancelled"
        assert a.client.delete(f"{JOBS}/{job_id}").json()["status"] == "cancelled"  # again: harmless
        a.client.portal.call(asyncio.sleep, 0.05)  # type: ignore[union-attr]
        assert a.fake.cancelled == 1  # the running transcription was cancelled, once
        for method in ("get", "delete"):
            r = getattr(a.client, method)(f"{JOBS}/job_nope")
            assert r.status_code == 404 and error_of(r)["code"] == "NOT_FOUND"


def test_callback_url_is_refused_when_callbacks_are_off_and_checked_when_on() -> None:
    with api(options=BatchApiOptions(callbacks=False)) as a:
        r = a.client.post(JOBS, files=upload(), data={"callback_url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 400 and error_of(r)["param"] == "callback_url"
        assert a.client.post(JOBS, files=upload()).status_code == 202  # without one: fine
    with api() as a:
        r = a.client.post(JOBS, files=upload(), data={"callback_url": "ftp://example.com/hook"})
        assert r.status_code == 400 and error_of(r)["param"] == "callback_url"
        assert a.fake.calls == [] and a.store.active == 0


@pytest.mark.parametrize("targets, url, allowed", [
    ("private", "http://127.0.0.1:9/hook", False),  # the server's own ports
    ("private", "http://localhost:9/hook", False),
    ("private", "http://[::1]:9/hook", False),
    ("private", "http://[::ffff:127.0.0.1]:9/hook", False),  # IPv4-mapped loopback
    ("private", "http://169.254.169.254/latest/meta-data/", False),  # a cloud's metadata service
    ("private", "http://0.0.0.0:9/hook", False),
    ("private", "http://10.1.2.3/hook", True),  # an internal service
    ("private", "https://8.8.8.8/hook", True),
    ("public", "http://10.1.2.3/hook", False),
    ("public", "http://192.168.1.5/hook", False),
    ("public", "https://8.8.8.8/hook", True),
    ("any", "http://127.0.0.1:9/hook", True),
    ("private", "http://no-such-host.invalid/hook", False),
])
def test_callback_url_targets(targets: str, url: str, allowed: bool) -> None:
    why = asyncio.run(callback_refusal(url, targets))
    assert (why is None) == allowed, why


def test_a_callback_to_a_refused_target_is_400_before_anything_is_queued() -> None:
    with api() as a:
        r = a.client.post(JOBS, files=upload(), data={"callback_url": "http://169.254.169.254/latest/meta-data/"})
        assert r.status_code == 400 and error_of(r)["param"] == "callback_url" and "link-local" in error_of(r)["message"]
        assert a.fake.calls == [] and a.store.active == 0
    with api(options=BatchApiOptions(callback_targets="any")) as a:
        assert a.client.post(JOBS, files=upload(), data={"callback_url": "http://127.0.0.1:9/hook"}).status_code == 202


# --------------------------------------------------------------------------- tokens, OpenAPI, openai client


def test_an_upload_without_a_token_is_refused_before_its_body_is_read() -> None:
    """FastAPI parses a multipart form before the route's guard runs: the door's middleware
    answers 401 first, without reading the body (the app and ``receive`` are never called)."""
    received = 0
    app_called = False

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal app_called
        app_called = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    refusals: list[Any] = []
    gate = BearerBeforeBody(inner, TokenSet((GOOD,)), paths=BATCH_PATHS, on_refused=refusals.append)
    for headers in ([], [(b"authorization", b"Bearer Wrong-token_0123456789")]):
        sent.clear()
        asyncio.run(gate({"type": "http", "method": "POST", "path": JOBS, "headers": headers}, receive, send))
        assert sent[0]["status"] == 401 and (b"www-authenticate", b'Bearer realm="whisper_streaming"') in sent[0]["headers"]
        assert json.loads(sent[1]["body"]) == {"detail": "UNAUTHORIZED"}
    assert received == 0 and not app_called and len(refusals) == 2
    asyncio.run(gate({"type": "http", "method": "POST", "path": JOBS, "headers": [(b"authorization", f"Bearer {GOOD}".encode())]},
                     receive, send))
    assert app_called and sent[-1]["body"] == b"ok"  # a valid token passes
    app_called = False
    asyncio.run(gate({"type": "http", "method": "GET", "path": "/health", "headers": []}, receive, send))
    assert app_called  # other routes are the routes' own business
    app_called = False
    asyncio.run(BearerBeforeBody(inner, None, paths=BATCH_PATHS)({"type": "http", "method": "POST", "path": JOBS, "headers": []},
                                                                  receive, send))
    assert app_called  # tokens off


def test_a_client_that_disconnects_from_a_synchronous_transcription_cancels_its_job() -> None:
    """On a real uvicorn: the client sends the whole upload, then goes away while the job runs."""
    import socket as socket_mod

    import uvicorn

    async def main() -> None:
        runtime = Runtime(RuntimeOptions(), FakeBackend())
        fake = FakeTranscriber()
        fake.auto_release = False
        store = JobStore(fake, callback_body=job_json)  # type: ignore[arg-type]
        app = build_app(runtime, metrics_registry(runtime), _no_stream, jobs=store)
        sock = socket_mod.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=1))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            parts, headers = _multipart(WAV)
            body = b"".join(parts)
            head = (f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['content-type']}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + body)
            await writer.drain()
            deadline = time.monotonic() + 5
            while not fake.calls:  # the job is running (held by the fake)
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            writer.close()
            deadline = time.monotonic() + 5
            while fake.cancelled == 0:
                assert time.monotonic() < deadline, "the job kept running after its client left"
                await asyncio.sleep(0.01)
            assert store.active == 0
        finally:
            server.should_exit = True
            await serving
            await store.close()

    asyncio.run(main())


def test_with_tokens_on_the_batch_routes_want_a_bearer_token() -> None:
    with api(tokens=TokenSet((GOOD,))) as a:
        for headers in ({}, {"Authorization": "Bearer Wrong-token_0123456789"}):
            assert a.client.post(TRANSCRIPTIONS, files=upload(), headers=headers).status_code == 401
            assert a.client.post(JOBS, files=upload(), headers=headers).status_code == 401
            assert a.client.get(f"{JOBS}/job_x", headers=headers).status_code == 401
            assert a.client.delete(f"{JOBS}/job_x", headers=headers).status_code == 401
        assert a.fake.calls == []
        auth = {"Authorization": f"Bearer {GOOD}"}
        r = a.client.post(TRANSCRIPTIONS, files=upload(), headers=auth)
        assert r.status_code == 200 and r.json() == {"text": RESULT.text}
        r = a.client.post(JOBS, files=upload(), headers=auth)
        assert r.status_code == 202
        job_id = r.json()["id"]
        assert a.client.get(f"{JOBS}/{job_id}").status_code == 401
        assert a.client.get(f"{JOBS}/{job_id}", headers=auth).status_code == 200
        assert a.client.delete(f"{JOBS}/{job_id}", headers=auth).status_code == 200
        assert a.runtime.stats.errors["UNAUTHORIZED"] == 9


def test_openapi_lists_the_batch_paths() -> None:
    with api() as a:
        r = a.client.get("/openapi.json")
        assert r.status_code == 200
        paths = r.json()["paths"]
        assert "post" in paths[TRANSCRIPTIONS] and "post" in paths[JOBS]
        assert {"get", "delete"} <= set(paths[f"{JOBS}/{{job_id}}"])


def test_the_openai_client_transcribes_through_the_api() -> None:
    with api(tokens=TokenSet((GOOD,))) as a:
        client = openai.OpenAI(api_key=GOOD, base_url="http://testserver/v1", http_client=a.client, max_retries=0)
        got = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV))
        assert got.text == RESULT.text
        verbose = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV), response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"], language="en")
        assert verbose.language == "english" and verbose.duration == 0.5
        assert [w.word for w in verbose.words or []] == [" Hello", " there.", " Bye."]
        assert [s.text for s in verbose.segments or []] == [" Hello there.", " Bye."]
        srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV), response_format="srt")
        assert isinstance(srt, str) and srt.startswith("1\n00:00:00,000 --> 00:00:00,250\n")
        with pytest.raises(openai.BadRequestError):
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV), language="english")
        bad = openai.OpenAI(api_key="Wrong-token_0123456789", base_url="http://testserver/v1", http_client=a.client, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV))
