"""End to end, Asterisk AudioSocket (issue 7): a fake Asterisk streams the 8 kHz telephone prompt
to a dedicated server with ``audiosocket.enabled``; results arrive at a local webhook receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import soundfile

from speech import DATA, E2E_CONFIG, _normalize, normalized_wer
from test_e2e_tel import _stream
from whisper_streaming.wire.audiosocket import audio_frames, encode_frame, hangup_frame, uuid_frame
from bench.server_process import ServerProcess

pytestmark = pytest.mark.e2e

TEL = DATA / "tel" / "asterisk_core_en_tt-allbusy.wav"
FRAME_MS = 20
PACE = 4.0  # times real time


@dataclass
class Receiver:
    url: str
    bodies: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_call(self, call_id: str | None) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, b) for t, b in self.bodies if b.get("call_id") == call_id]

    def wait_hangup(self, call_id: str | None, timeout_s: float = 30.0) -> list[tuple[float, dict[str, Any]]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.for_call(call_id)
            if any(b["event"] == "hangup" for _, b in got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"no hangup body for {call_id} within {timeout_s} s; got {self.for_call(call_id)}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.bodies.append((time.monotonic(), json.loads(raw)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        yield rec
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def as_server(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("audiosocket")
    config = d / "config.yaml"
    config.write_text(E2E_CONFIG + f"audiosocket:\n  enabled: true\n  port: 0\nresults:\n  webhook_url: {receiver.url}\n"
                      f"  jsonl_path: {d / 'results.jsonl'}\n", encoding="utf-8")
    with ServerProcess(config=config, log_path=d / "server.log") as proc:
        assert proc.audiosocket_port
        yield proc
    assert proc.proc.returncode == 0


def _pcm(seconds: float | None = None) -> bytes:
    samples, rate = soundfile.read(str(TEL), dtype="int16")
    assert rate == 8000
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    return samples.tobytes()


async def _fake_asterisk(port: int, frames: list[bytes], *, pace: float = PACE, may_be_cut: bool = False) -> float:
    """Send ``frames`` (20 ms audio ones paced), wait until the server closes; returns the time the last frame went out.

    ``may_be_cut``: the server may drop the call midway (malformed frames).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = last = time.monotonic()
    sent_audio_s = 0.0
    try:
        for frame in frames:
            writer.write(frame)
            if frame[0] in (0x10, 0x12):
                sent_audio_s += FRAME_MS / 1000
                await writer.drain()
                delay = start + sent_audio_s / pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        await writer.drain()
        last = time.monotonic()
        await asyncio.wait_for(reader.read(), 60)  # the server closes after the call is finished
    except ConnectionError:
        if not may_be_cut:
            raise
    finally:
        writer.close()
    return last


def _call(port: int, call_id: str, pcm: bytes, *, pace: float = 1.0) -> float:
    """A whole call at real-time pace, as Asterisk sends it."""
    frames = [uuid_frame(call_id), *audio_frames(pcm, 8000, FRAME_MS), hangup_frame()]
    return asyncio.run(_fake_asterisk(port, frames, pace=pace))


def test_call_results_reach_the_webhook_as_good_as_tcp_16khz(as_server: ServerProcess, receiver: Receiver) -> None:
    reference = TEL.with_suffix(".txt").read_text(encoding="utf-8").strip()
    call_id = str(uuid.uuid4())
    hung_up_at = _call(as_server.audiosocket_port, call_id, _pcm())
    bodies = receiver.wait_hangup(call_id)
    results = [b for _, b in bodies if b["event"] == "result"]
    hangups = [b for _, b in bodies if b["event"] == "hangup"]
    assert results and len(hangups) == 1
    assert hangups[0]["results"] == len(results)
    assert hangups[0]["audio_s"] == pytest.approx(soundfile.info(str(TEL)).duration, abs=0.05)
    for r in results:
        assert 0.0 <= r["start_s"] < r["end_s"] <= 9.0 and r["language"] == "en" and r["sentiment"] is None
    wer_as = normalized_wer(reference, " ".join(r["text"] for r in results))
    wer_tcp = normalized_wer(reference, " ".join(r.text for r in _stream(as_server.port, 16000, "pcm_s16le")))
    last_result_at = max(t for t, b in bodies if b["event"] == "result")
    print(f"normalized WER: AudioSocket 8 kHz {wer_as:.3f}, TCP 16 kHz {wer_tcp:.3f}; "
          f"last result {last_result_at - hung_up_at:.2f} s after the hangup frame")
    assert wer_as <= wer_tcp + 0.10


def test_hangup_mid_utterance_delivers_the_words_so_far(as_server: ServerProcess, receiver: Receiver) -> None:
    call_id = str(uuid.uuid4())
    _call(as_server.audiosocket_port, call_id, _pcm(2.6))  # inside "All representatives of the household are ..."
    bodies = receiver.wait_hangup(call_id)
    text = " ".join(b["text"] for _, b in bodies if b["event"] == "result")
    words = _normalize(text).split()
    assert "representatives" in words, text
    reference_words = set(_normalize(TEL.with_suffix(".txt").read_text(encoding="utf-8")).split())
    assert len(set(words) - reference_words) <= 1, text
    assert [b for _, b in bodies if b["event"] == "hangup"][0]["audio_s"] == pytest.approx(2.6, abs=0.05)


def test_malformed_calls_end_alone(as_server: ServerProcess, receiver: Receiver) -> None:
    good_id = str(uuid.uuid4())
    port = as_server.audiosocket_port
    pcm = _pcm(4.5)

    async def run() -> None:
        audio_first = list(audio_frames(pcm[:3200], 8000, FRAME_MS)) + [uuid_frame(uuid.uuid4())]
        unknown_kind = [uuid_frame(uuid.uuid4()), *list(audio_frames(pcm[:3200], 8000, FRAME_MS)), encode_frame(0x7E, b"xx")]
        good = [uuid_frame(good_id), *audio_frames(pcm, 8000, FRAME_MS), hangup_frame()]
        await asyncio.gather(_fake_asterisk(port, good), _fake_asterisk(port, audio_first, may_be_cut=True),
                             _fake_asterisk(port, unknown_kind, may_be_cut=True))

    before = as_server.log_text().count("malformed AudioSocket data")
    asyncio.run(run())
    bodies = receiver.wait_hangup(good_id)
    assert "representatives" in " ".join(b["text"] for _, b in bodies if b["event"] == "result")
    deadline = time.monotonic() + 5
    while as_server.log_text().count("malformed AudioSocket data") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert as_server.log_text().count("malformed AudioSocket data") == before + 2
    assert as_server.proc.poll() is None
