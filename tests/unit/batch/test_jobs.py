"""JobStore (batch jobs) over a fake transcriber: the queue limit, progress, states, failures,
cancellation, concurrency, retention, close, and callbacks to a local HTTP receiver
(stdlib ``http.server`` in a thread, as ``tests/unit/sinks/test_webhook.py``).

Each test runs its coroutine with ``asyncio.run`` (pytest-asyncio is not used in this project).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from whisper_streaming.batch.jobs import JobQueueFull, JobState, JobStore, JobView
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.core.batch import BatchResult, BatchSegment, BatchWord
from whisper_streaming.errors import AsrError, UsageError
from whisper_streaming.transports.web.batch_api import job_json

pytestmark = pytest.mark.timeout(30)

SAMPLES = np.zeros(16000, np.float32)  # 1 s
REQUEST = BatchRequest(word_timestamps=True)
RESULT = BatchResult(
    language="en", duration_s=1.0, text=" Hello there. Bye.",
    segments=(
        BatchSegment(0, 0.0, 0.5, " Hello there.", -0.2, 0.01, 1.1,
                     words=(BatchWord(" Hello", 0.0, 0.2, 0.9), BatchWord(" there.", 0.2, 0.5, 0.8))),
        BatchSegment(1, 0.6, 1.0, " Bye.", -0.3, 0.02, 1.0, words=(BatchWord(" Bye.", 0.6, 1.0, 0.7),)),
    ),
)


@dataclass
class Call:
    """One ``transcribe`` call: its key, the progress the fake reports, and how it ends."""

    key: Hashable
    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    saw_cancel: bool = False


class FakeTranscriber:
    """Stands in for :class:`~whisper_streaming.batch.service.BatchTranscriber`.

    Each call reports ``progress`` (percent, ``"transcribing"``), recording the store's view of
    its job after each report, then waits for its ``release`` (unless ``auto_release``), then
    raises ``error`` or returns ``RESULT``.
    """

    def __init__(self, *, progress: tuple[float, ...] = (), error: BaseException | None = None, auto_release: bool = True) -> None:
        self.progress = progress
        self.error = error
        self.auto_release = auto_release
        self.calls: list[Call] = []
        self.store: JobStore | None = None
        self.seen: list[tuple[float, JobState]] = []  # (progress, state) of the job after each report
        self.closed = 0

    async def transcribe(self, samples: np.ndarray, request: BatchRequest, *, key: Hashable,
                         on_progress: Callable[[float, str], None] | None = None) -> BatchResult:
        assert samples.dtype == np.float32 and request is not None
        call = Call(key)
        self.calls.append(call)
        call.started.set()
        try:
            for pct in self.progress:
                assert on_progress is not None
                on_progress(pct, "transcribing")
                if self.store is not None:
                    view = self.store.get(key[1])  # type: ignore[index]
                    assert view is not None
                    self.seen.append((view.progress, view.state))
                await asyncio.sleep(0)
            if not self.auto_release:
                await call.release.wait()
        except asyncio.CancelledError:
            call.saw_cancel = True
            raise
        if self.error is not None:
            raise self.error
        return RESULT

    def close(self) -> None:
        self.closed += 1


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def settle(n: int = 10) -> None:
    """Let the loop run the jobs' tasks a few steps."""
    for _ in range(n):
        await asyncio.sleep(0)


def store_for(fake: FakeTranscriber, **kwargs: Any) -> JobStore:
    store = JobStore(fake, **kwargs)  # type: ignore[arg-type]
    fake.store = store
    return store


# --------------------------------------------------------------------------- limits and states


def test_bounds_out_of_range_are_usage_errors() -> None:
    for kwargs in ({"max_queued": 0}, {"max_running": 0}, {"retention_s": 0.0}):
        with pytest.raises(UsageError):
            JobStore(FakeTranscriber(), **kwargs)  # type: ignore[arg-type]


def test_queue_limit_refuses_at_max_queued_and_a_finished_job_frees_its_place() -> None:
    async def main() -> None:
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, max_queued=2)
        first = store.submit(SAMPLES, REQUEST)
        store.submit(SAMPLES, REQUEST)
        assert store.active == 2
        with pytest.raises(JobQueueFull):
            store.submit(SAMPLES, REQUEST)
        await settle()
        fake.calls[0].release.set()
        assert (await store.wait(first.id)).state is JobState.COMPLETED
        assert store.active == 1
        third = store.submit(SAMPLES, REQUEST)  # the finished job's place
        assert store.get(third.id) is not None and store.active == 2
        await store.close()

    asyncio.run(main())


def test_states_queued_processing_completed_and_progress_monotone_to_exactly_100() -> None:
    async def main() -> None:
        fake = FakeTranscriber(progress=(10, 50, 30, 80, 100, 120), auto_release=False)
        store = store_for(fake)
        view = store.submit(SAMPLES, REQUEST, filename="a.wav")
        assert (view.state, view.progress, view.filename, view.duration_s) == (JobState.QUEUED, 0.0, "a.wav", 1.0)
        await settle()
        running = store.get(view.id)
        assert running is not None and running.state is JobState.PROCESSING
        assert fake.calls[0].key == ("batch", view.id)
        seen = [p for p, _ in fake.seen]
        assert seen == [10, 50, 50, 80, 99, 99]  # never back, never 100 before completion
        assert all(state is JobState.PROCESSING for _, state in fake.seen)
        assert running.progress == 99 and running.result is None
        fake.calls[0].release.set()
        final = await store.wait(view.id)
        assert final.state is JobState.COMPLETED and final.progress == 100.0 and final.stage == "completed"
        assert final.result == RESULT and final.error is None and final.finished_at is not None
        await store.close()

    asyncio.run(main())


def test_progress_never_reaches_100_when_the_job_fails() -> None:
    async def main() -> None:
        store = store_for(FakeTranscriber(progress=(40, 100), error=AsrError("chunk 3 failed on every attempt")))
        view = store.submit(SAMPLES, REQUEST)
        final = await store.wait(view.id)
        assert final.state is JobState.FAILED and final.progress == 99.0 and final.result is None
        await store.close()

    asyncio.run(main())


def test_asr_error_fails_the_job_with_asr_failed_and_its_message() -> None:
    async def main() -> None:
        store = store_for(FakeTranscriber(error=AsrError("chunk 3 failed on every attempt")))
        final = await store.wait(store.submit(SAMPLES, REQUEST).id)
        assert final.state is JobState.FAILED
        assert final.error is not None and final.error.code == "ASR_FAILED"
        assert final.error.message == "chunk 3 failed on every attempt"
        assert store.active == 0
        await store.close()

    asyncio.run(main())


def test_another_exception_is_internal_error_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = store_for(FakeTranscriber(error=RuntimeError("secret /srv/path/to/file")))
        final = await store.wait(store.submit(SAMPLES, REQUEST).id)
        assert final.state is JobState.FAILED
        assert final.error is not None and final.error.code == "INTERNAL_ERROR"
        assert "secret" not in final.error.message and "/srv" not in final.error.message
        assert "secret" not in json.dumps(job_json(final))
        await store.close()

    asyncio.run(main())
    assert any("failed" in r.getMessage() for r in caplog.records)  # logged for the operator


# --------------------------------------------------------------------------- cancellation and concurrency


def test_cancel_a_queued_job_it_never_runs_and_a_second_cancel_is_harmless() -> None:
    async def main() -> None:
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, max_running=1)
        first = store.submit(SAMPLES, REQUEST)
        second = store.submit(SAMPLES, REQUEST)
        await settle()
        assert store.get(second.id).state is JobState.QUEUED  # type: ignore[union-attr]
        cancelled = store.cancel(second.id)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED and cancelled.error is None
        assert cancelled.progress == 0.0
        again = store.cancel(second.id)
        assert again is not None and again.state is JobState.CANCELLED and again.finished_at == cancelled.finished_at
        assert store.active == 1
        fake.calls[0].release.set()
        assert (await store.wait(first.id)).state is JobState.COMPLETED
        await settle()
        assert len(fake.calls) == 1  # the cancelled job never reached the transcriber
        assert store.cancel("job_nope") is None
        await store.close()

    asyncio.run(main())


def test_cancel_a_running_job_the_transcriber_sees_cancelled_error_and_the_next_starts() -> None:
    async def main() -> None:
        fake = FakeTranscriber(progress=(25,), auto_release=False)
        store = store_for(fake, max_running=1)
        first = store.submit(SAMPLES, REQUEST)
        second = store.submit(SAMPLES, REQUEST)
        await settle()
        assert store.get(first.id).state is JobState.PROCESSING  # type: ignore[union-attr]
        view = store.cancel(first.id)
        assert view is not None and view.state is JobState.CANCELLED and view.progress == 25.0 and view.result is None
        await settle()
        assert fake.calls[0].saw_cancel
        assert store.cancel(first.id).state is JobState.CANCELLED  # type: ignore[union-attr]
        assert (await store.wait(first.id)).state is JobState.CANCELLED
        assert len(fake.calls) == 2 and store.get(second.id).state is JobState.PROCESSING  # type: ignore[union-attr]
        fake.calls[1].release.set()
        assert (await store.wait(second.id)).state is JobState.COMPLETED
        await store.close()

    asyncio.run(main())


def test_max_running_one_keeps_the_second_job_queued_while_the_first_runs() -> None:
    async def main() -> None:
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, max_running=1)
        a = store.submit(SAMPLES, REQUEST)
        b = store.submit(SAMPLES, REQUEST)
        await settle(30)
        assert len(fake.calls) == 1
        assert store.get(a.id).state is JobState.PROCESSING and store.get(b.id).state is JobState.QUEUED  # type: ignore[union-attr]
        fake.calls[0].release.set()
        await store.wait(a.id)
        await settle()
        assert len(fake.calls) == 2 and store.get(b.id).state is JobState.PROCESSING  # type: ignore[union-attr]
        fake.calls[1].release.set()
        await store.wait(b.id)
        await store.close()

    asyncio.run(main())


def test_max_running_two_runs_two_at_once() -> None:
    async def main() -> None:
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, max_running=2)
        views = [store.submit(SAMPLES, REQUEST) for _ in range(3)]
        await settle(30)
        assert len(fake.calls) == 2
        assert [store.get(v.id).state for v in views] == [JobState.PROCESSING, JobState.PROCESSING, JobState.QUEUED]  # type: ignore[union-attr]
        await store.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- retention, wait, close


def test_a_finished_job_is_forgotten_after_retention_s() -> None:
    async def main() -> None:
        clock = Clock()
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, retention_s=60.0, clock=clock)
        done = store.submit(SAMPLES, REQUEST)
        running = store.submit(SAMPLES, REQUEST)
        await settle()
        fake.calls[0].release.set()
        final = await store.wait(done.id)
        assert final.finished_at == 1000.0
        clock.t += 60.0
        assert store.get(done.id) is not None  # exactly retention_s: still there
        clock.t += 0.5
        assert store.get(done.id) is None
        with pytest.raises(UsageError):
            await store.wait(done.id)
        assert store.cancel(done.id) is None
        assert store.get(running.id) is not None  # an active job never expires
        await store.close()

    asyncio.run(main())


def test_wait_returns_the_final_view_and_refuses_an_unknown_id() -> None:
    async def main() -> None:
        store = store_for(FakeTranscriber(progress=(50,)))
        view = store.submit(SAMPLES, REQUEST)
        waiters = await asyncio.gather(store.wait(view.id), store.wait(view.id))
        assert all(w.state is JobState.COMPLETED and w.result == RESULT for w in waiters)
        assert await store.wait(view.id) == waiters[0]  # already finished: at once
        with pytest.raises(UsageError):
            await store.wait("job_unknown")
        await store.close()

    asyncio.run(main())


def test_close_cancels_active_jobs_with_shutting_down_and_refuses_new_ones() -> None:
    async def main() -> None:
        fake = FakeTranscriber(auto_release=False)
        store = store_for(fake, max_running=1)
        running = store.submit(SAMPLES, REQUEST)
        queued = store.submit(SAMPLES, REQUEST)
        await settle()
        await asyncio.wait_for(store.close(), 5)
        assert fake.calls[0].saw_cancel and len(fake.calls) == 1
        for view in (store.get(running.id), store.get(queued.id)):
            assert view is not None and view.state is JobState.CANCELLED
            assert view.error is not None and view.error.code == "SHUTTING_DOWN"
        assert store.active == 0
        with pytest.raises(UsageError):
            store.submit(SAMPLES, REQUEST)
        await store.close()  # idempotent

    asyncio.run(main())


# --------------------------------------------------------------------------- callbacks


@dataclass
class Receiver:
    url: str
    bodies: list[Any] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A local HTTP server that answers every POST with 200 and keeps the JSON bodies."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # the callback's client reads the environment
    lock = threading.Lock()
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.bodies.append(json.loads(raw))
                state.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

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
        server.shutdown()
        server.server_close()


def _normalized(view: JobView) -> Any:
    return json.loads(json.dumps(job_json(view)))


def test_callback_one_post_per_finished_job_with_the_job_json(receiver: Receiver) -> None:
    async def main() -> list[JobView]:
        ok = store_for(FakeTranscriber(progress=(50,)), callback_body=job_json, callback_retries=0)
        bad = store_for(FakeTranscriber(error=AsrError("decoder exploded")), callback_body=job_json, callback_retries=0)
        hold = FakeTranscriber(auto_release=False)
        slow = store_for(hold, callback_body=job_json, callback_retries=0)
        views = [ok.submit(SAMPLES, REQUEST, filename="ok.wav", callback_url=receiver.url + "?n=1"),
                 bad.submit(SAMPLES, REQUEST, filename="bad.wav", callback_url=receiver.url),
                 slow.submit(SAMPLES, REQUEST, filename="slow.wav", callback_url=receiver.url)]
        plain = ok.submit(SAMPLES, REQUEST)  # no callback_url: nothing posted
        finals = [await ok.wait(views[0].id), await bad.wait(views[1].id)]
        await settle()
        slow.cancel(views[2].id)
        finals.append(await slow.wait(views[2].id))
        await ok.wait(plain.id)
        for store in (ok, bad, slow):
            await asyncio.wait_for(store.close(), 10)  # delivers the callbacks still queued
        await asyncio.sleep(0.2)  # nothing more arrives
        return finals

    finals = asyncio.run(main())
    assert len(receiver.bodies) == 3
    by_id = {b["id"]: b for b in receiver.bodies}
    assert len(by_id) == 3
    completed, failed, cancelled = (by_id[v.id] for v in finals)
    assert completed == _normalized(finals[0])
    assert completed["status"] == "completed" and completed["progress"] == 100.0
    assert completed["result"]["text"] == RESULT.text and [w["word"] for w in completed["result"]["words"]] == [" Hello", " there.", " Bye."]
    assert failed == _normalized(finals[1])
    assert failed["status"] == "failed" and failed["error"] == {"code": "ASR_FAILED", "message": "decoder exploded"}
    assert "result" not in failed
    assert cancelled == _normalized(finals[2]) and cancelled["status"] == "cancelled"
    assert sorted(receiver.paths) == ["/hook", "/hook", "/hook?n=1"]


def test_close_sends_the_shutting_down_callback(receiver: Receiver) -> None:
    async def main() -> JobView:
        store = store_for(FakeTranscriber(auto_release=False), callback_body=job_json, callback_retries=0)
        view = store.submit(SAMPLES, REQUEST, callback_url=receiver.url)
        await settle()
        await asyncio.wait_for(store.close(), 10)
        final = store.get(view.id)
        assert final is not None
        return final

    final = asyncio.run(main())
    assert receiver.bodies == [_normalized(final)]
    assert receiver.bodies[0]["error"]["code"] == "SHUTTING_DOWN"


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http://", "file:///etc/passwd"])
def test_a_bad_callback_url_is_a_usage_error_at_submit_and_nothing_is_queued(url: str) -> None:
    async def main() -> None:
        fake = FakeTranscriber()
        store = store_for(fake, callback_body=job_json)
        with pytest.raises(UsageError):
            store.submit(SAMPLES, REQUEST, callback_url=url)
        await settle()
        assert store.active == 0 and fake.calls == []
        await store.close()

    asyncio.run(main())


def test_waiting_audio_is_held_as_16_bit_and_reaches_the_transcriber_as_float32() -> None:
    got: list[np.ndarray] = []

    class Recording(FakeTranscriber):
        async def transcribe(self, samples: np.ndarray, request: BatchRequest, **kwargs: Any) -> BatchResult:  # type: ignore[override]
            got.append(samples)
            return await super().transcribe(samples, request, **kwargs)

    async def main() -> None:
        store = store_for(Recording())
        audio = (0.5 * np.sin(np.arange(16000) / 10.0)).astype(np.float32)
        view = store.submit(audio, BatchRequest())
        assert store._jobs[view.id].samples.dtype == np.int16  # half the memory of float32 while it waits
        await store.wait(view.id)
        assert got[0].dtype == np.float32 and np.max(np.abs(got[0] - audio)) < 1e-4

    asyncio.run(main())
