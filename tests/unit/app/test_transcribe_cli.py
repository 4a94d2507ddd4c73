"""``whisper-streaming-transcribe``: server mode against a fake jobs server (FastAPI on uvicorn in
a thread, on a loopback port) and local mode with an injected fake runner."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from whisper_streaming.batch.formats import render, result_from_verbose_json, to_verbose_json
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.app import transcribe_cli
from whisper_streaming.app.transcribe_cli import ProgressDisplay, submit_form, transcribe_main
from whisper_streaming.core.batch import BatchResult, BatchSegment, BatchWord, SpeakerSummary
from whisper_streaming.errors import AsrError

TOKEN = "s3cret-token"

RESULT = BatchResult(
    language="en", duration_s=3.0, text=" Hello there. Bye.",
    segments=(
        BatchSegment(id=0, start_s=0.0, end_s=1.5, text=" Hello there.", avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.2,
                     words=(BatchWord(" Hello", 0.0, 0.7, 0.9, "SPEAKER_00"), BatchWord(" there.", 0.7, 1.5, 0.8, "SPEAKER_00")),
                     speaker="SPEAKER_00"),
        BatchSegment(id=1, start_s=1.75, end_s=3.0, text=" Bye.", avg_logprob=-0.3, no_speech_prob=0.02, compression_ratio=1.0,
                     words=(BatchWord(" Bye.", 1.75, 3.0, 0.7, "SPEAKER_01"),), speaker="SPEAKER_01"),
    ),
    speakers=(SpeakerSummary("SPEAKER_00", 1.5, 1), SpeakerSummary("SPEAKER_01", 1.25, 1)),
)
"""Times exact to the millisecond: what the server sends back parses to the same result."""


# --------------------------------------------------------------------------- the fake jobs server


@dataclass
class FakeJobs:
    """Scripted job states: each GET of a job moves it to the next of ``script``."""

    script: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    uploads: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_names: set[str] = field(default_factory=set)
    refuse_names: set[str] = field(default_factory=set)


def _fake_app(current: dict[str, FakeJobs]) -> FastAPI:
    """The jobs API's shape; ``current["state"]`` is the running test's :class:`FakeJobs`."""
    app = FastAPI()

    def unauthorized(request: Request) -> JSONResponse | None:
        state = current["state"]
        header = request.headers.get("authorization")
        state.auth_headers.append(header)
        if state.token is not None and header != f"Bearer {state.token}":
            return JSONResponse({"detail": "UNAUTHORIZED"}, status_code=401)
        return None

    @app.post("/v1/jobs", status_code=202)
    async def create(request: Request) -> Any:
        if (refused := unauthorized(request)) is not None:
            return refused
        state = current["state"]
        form = await request.form()
        upload = form["file"]
        content = await upload.read()  # type: ignore[union-attr]
        fields = {k: form.getlist(k) for k in form.keys() if k != "file"}
        if upload.filename in state.refuse_names:  # type: ignore[union-attr]
            return JSONResponse({"error": {"message": "the file has no audio stream", "type": "invalid_request_error", "param": "file",
                                           "code": "MEDIA_NO_AUDIO"}}, status_code=422)
        state.uploads.append({"filename": upload.filename, "content": content, "fields": fields})  # type: ignore[union-attr]
        job_id = f"job{len(state.uploads)}"
        words = "word" in fields.get("timestamp_granularities[]", [])
        done: dict[str, Any]
        if upload.filename in state.fail_names:  # type: ignore[union-attr]
            done = {"status": "failed", "progress": 20, "stage": "decoding",
                    "error": {"code": "MEDIA_CORRUPT", "message": "the file is not readable audio"}}
        else:
            done = {"status": "completed", "progress": 100, "stage": "done", "result": to_verbose_json(RESULT, words=words)}
        state.jobs[job_id] = [dict(s) for s in state.script] + [done]
        return {"id": job_id, "status": "queued"}

    @app.get("/v1/jobs/{job_id}")
    async def get(job_id: str, request: Request) -> Any:
        if (refused := unauthorized(request)) is not None:
            return refused
        states = current["state"].jobs[job_id]
        now = states.pop(0) if len(states) > 1 else states[0]
        return {"id": job_id, **now}

    @app.delete("/v1/jobs/{job_id}")
    async def delete(job_id: str) -> Any:
        current["state"].deleted.append(job_id)
        return {"id": job_id, "status": "cancelled"}

    return app


@dataclass
class Served:
    state: FakeJobs
    url: str


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[dict[str, FakeJobs], str]]:
    current = {"state": FakeJobs()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None and no log_level: uvicorn must not reconfigure its loggers for the rest of the
    # session (its default config stops their propagation, which later caplog-based tests rely on)
    server = uvicorn.Server(uvicorn.Config(_fake_app(current), log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield current, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def served(_server: tuple[dict[str, FakeJobs], str]) -> Served:
    state_ref, url = _server
    state = FakeJobs(script=[{"status": "processing", "progress": 10, "stage": "decoding"},
                             {"status": "processing", "progress": 60, "stage": "transcribing"}])
    state_ref["state"] = state
    return Served(state, url)


def _audio(tmp_path: Path, name: str = "call.wav", content: bytes = b"RIFF fake audio") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _expected(fmt: str, *, words: bool = False) -> str:
    body, _ = render(result_from_verbose_json(to_verbose_json(RESULT, words=True)), fmt, words=words)
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n" if isinstance(body, dict) else body


FAST = ["--poll-interval", "0.01"]


# --------------------------------------------------------------------------- server mode


@pytest.mark.parametrize("fmt,api_format,ext", [
    ("txt", "text", "txt"), ("json", "json", "json"), ("verbose_json", "verbose_json", "json"), ("srt", "srt", "srt"), ("vtt", "vtt", "vtt"),
])
def test_server_mode_writes_each_format(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        fmt: str, api_format: str, ext: str) -> None:
    audio = _audio(tmp_path)
    out_dir = tmp_path / "out" / "nested"
    code = transcribe_main([str(audio), "--server", served.url + "/", "--format", fmt, "--words", "--output-dir", str(out_dir), *FAST])
    err = capsys.readouterr().err
    assert code == 0, err
    written = out_dir / f"call.{ext}"
    assert written.read_text(encoding="utf-8") == _expected(api_format, words=True)
    assert f"wrote {written}" in err
    if fmt == "verbose_json":
        d = json.loads(written.read_text(encoding="utf-8"))
        assert d["language"] == "english" and [w["word"] for w in d["words"]] == [" Hello", " there.", " Bye."]


def test_server_mode_sends_the_form_and_the_file(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = _audio(tmp_path, content=b"\x00\x01binary\xff" * 100)
    code = transcribe_main([str(audio), "--server", served.url, "--num-speakers", "2", "--features", "--words", "--language", "EN", *FAST])
    assert code == 0
    (upload,) = served.state.uploads
    assert upload["filename"] == "call.wav" and upload["content"] == b"\x00\x01binary\xff" * 100
    assert upload["fields"] == {"response_format": ["verbose_json"], "diarize": ["true"], "features": ["true"],
                                "timestamp_granularities[]": ["segment", "word"], "language": ["en"], "num_speakers": ["2"]}
    assert capsys.readouterr().out == _expected("text")  # one file, no --output-dir: stdout, diarized text
    assert served.state.auth_headers and all(h is None for h in served.state.auth_headers)


def test_form_defaults() -> None:
    assert submit_form(BatchRequest()) == {"response_format": "verbose_json", "diarize": "false", "features": "false",
                                           "timestamp_granularities[]": ["segment"]}


def test_progress_shown_is_monotone_and_ends_at_100(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served.state.script = [{"status": "queued", "progress": 0, "stage": "queued"},
                           {"status": "processing", "progress": 12, "stage": "decoding"},
                           {"status": "processing", "progress": 47, "stage": "transcribing"},
                           {"status": "processing", "progress": 31, "stage": "transcribing"},  # a server going back
                           {"status": "processing", "progress": 48.5, "stage": "transcribing"},  # same 5 % step: no line
                           {"status": "processing", "progress": 80, "stage": "diarizing"}]
    assert transcribe_main([str(_audio(tmp_path)), "--server", served.url, *FAST]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("call.wav: ")]
    shown = [(int(m.group(1)), m.group(2)) for m in (re.fullmatch(r"call\.wav: (\d+)% (\S+)", line) for line in lines) if m]
    assert len(shown) == len(lines)
    assert shown == [(0, "queued"), (12, "decoding"), (47, "transcribing"), (80, "diarizing"), (100, "done")]
    percents = [p for p, _ in shown]
    assert percents == sorted(percents)


def test_failed_job_gives_a_reason_and_exit_1_and_other_files_go_on(served: Served, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    served.state.fail_names = {"bad.mp4"}
    served.state.refuse_names = {"video.mp4"}
    bad, good, video = _audio(tmp_path, "bad.mp4"), _audio(tmp_path, "good.wav"), _audio(tmp_path, "video.mp4")
    missing = tmp_path / "missing.wav"
    code = transcribe_main([str(bad), str(missing), str(video), str(good), "--server", served.url, "--format", "srt", *FAST])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {bad}: MEDIA_CORRUPT: the file is not readable audio\n" in err
    assert f"error: {video}: HTTP_422: MEDIA_NO_AUDIO: the file has no audio stream\n" in err
    assert f"error: {missing}: no such file\n" in err
    assert "Traceback" not in err
    assert (tmp_path / "good.srt").read_text(encoding="utf-8") == _expected("srt")  # several files: beside each
    assert not (tmp_path / "bad.srt").exists()


def test_token_is_sent_as_bearer(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    served.state.token = TOKEN
    monkeypatch.delenv("WHISPER_STREAMING_TOKEN", raising=False)
    audio = _audio(tmp_path)
    assert transcribe_main([str(audio), "--server", served.url, *FAST]) == 1
    assert f"error: {audio}: HTTP_401: UNAUTHORIZED" in capsys.readouterr().err

    served.state.auth_headers.clear()
    assert transcribe_main([str(audio), "--server", served.url, "--token", TOKEN, *FAST]) == 0
    assert served.state.auth_headers and set(served.state.auth_headers) == {f"Bearer {TOKEN}"}  # POST and every GET

    served.state.auth_headers.clear()
    monkeypatch.setenv("WHISPER_STREAMING_TOKEN", TOKEN)  # the default, out of the process list
    assert transcribe_main([str(audio), "--server", served.url, *FAST]) == 0
    assert set(served.state.auth_headers) == {f"Bearer {TOKEN}"}


def test_ctrl_c_cancels_the_job_and_exits_130(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def interrupt(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(transcribe_cli, "_sleep", interrupt)
    code = transcribe_main([str(_audio(tmp_path)), "--server", served.url, *FAST])
    assert code == 130
    assert served.state.deleted == ["job1"]
    assert "interrupted" in capsys.readouterr().err


def test_unreachable_server_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    audio = _audio(tmp_path)
    assert transcribe_main([str(audio), "--server", f"http://127.0.0.1:{port}", "--timeout", "2", *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {audio}: cannot talk to the server: ConnectError")


# --------------------------------------------------------------------------- local mode


@dataclass
class FakeRunner:
    progress: list[tuple[float, str]] = field(default_factory=lambda: [(5.0, "decoding"), (50.0, "transcribing"), (90.0, "features")])
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[Path, BatchRequest, Path | None]] = field(default_factory=list)

    async def __call__(self, path: Path, request: BatchRequest, *, config_path: Path | None,
                       on_progress: Callable[[float, str], None]) -> BatchResult:
        self.calls.append((path, request, config_path))
        for percent, stage in self.progress:
            on_progress(percent, stage)
        if path.name in self.fail:
            raise self.fail[path.name]
        return RESULT


def test_local_mode_uses_the_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner()
    a, b = _audio(tmp_path, "a.wav"), _audio(tmp_path, "b.flac")
    config = tmp_path / "config_vad.yaml"
    code = transcribe_main([str(a), str(b), "--diarize", "--words", "--format", "vtt", "--config", str(config),
                            "--output-dir", str(tmp_path / "o")], local_runner=runner)
    err = capsys.readouterr().err
    assert code == 0, err
    assert [c[0] for c in runner.calls] == [a, b]
    assert runner.calls[0][1] == BatchRequest(language=None, word_timestamps=True, diarize=True, features=False)
    assert runner.calls[0][2] == config
    for name in ("a", "b"):
        assert (tmp_path / "o" / f"{name}.vtt").read_text(encoding="utf-8") == _expected("vtt")
    assert "a.wav: 50% transcribing" in err and "b.flac: 100% done" in err


def test_local_mode_failure_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner(fail={"a.wav": AsrError("worker crashed twice"), "b.wav": RuntimeError("boom")})
    a, b = _audio(tmp_path, "a.wav"), _audio(tmp_path, "b.wav")
    assert transcribe_main([str(a), str(b)], local_runner=runner) == 1
    captured = capsys.readouterr()
    assert f"error: {a}: worker crashed twice\n" in captured.err
    assert f"error: {b}: RuntimeError: boom\n" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_local_mode_prints_one_file_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert transcribe_main([str(_audio(tmp_path)), "--format", "json", "--language", "auto"], local_runner=FakeRunner()) == 0
    assert json.loads(capsys.readouterr().out) == {"text": RESULT.text}
    assert not list(tmp_path.glob("*.json"))


def test_local_mode_ctrl_c_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def interrupted(path: Path, request: BatchRequest, *, config_path: Path | None,
                          on_progress: Callable[[float, str], None]) -> BatchResult:
        raise KeyboardInterrupt

    assert transcribe_main([str(_audio(tmp_path))], local_runner=interrupted) == 130


@pytest.mark.parametrize("argv,message", [
    (["x.wav", "--language", "xx"], "--language"),
    (["x.wav", "--num-speakers", "99"], "num_speakers"),
    (["x.wav", "--server", "http://h:1", "--config", "c.yaml"], "--config"),
    (["x.wav", "--server", "ftp://h"], "--server"),
    (["x.wav", "--format", "docx"], "invalid choice"),
    ([], "FILE"),
])
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert transcribe_main(argv, local_runner=FakeRunner()) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- the progress display


def test_live_display_is_a_tqdm_bar_that_never_goes_back() -> None:
    out = io.StringIO()
    display = ProgressDisplay("call.wav", out, live=True)
    display.update(40.0, "transcribing")
    display.update(20.0, "transcribing")
    assert display.percent == 40.0
    display.update(150.0, "done")
    display.close()
    text = out.getvalue()
    assert "\r" in text and "call.wav: 100%|" in text and "done" in text and " 40%|" in text


def test_plain_display_steps() -> None:
    out = io.StringIO()
    display = ProgressDisplay("f", out, live=False, step_percent=10)
    for p in (1, 5, 9.9, 10, 15, 35, 35, float("nan"), 100):
        display.update(p, "s")
    assert out.getvalue().splitlines() == ["f: 1% s", "f: 10% s", "f: 35% s", "f: 100% s"]
