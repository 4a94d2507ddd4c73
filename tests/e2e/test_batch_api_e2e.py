"""The file API end to end: the real server process, the bundled Whisper base model, real speech;
the official ``openai`` client, a job with diarization, features, progress and a callback."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import numpy as np
import openai
import pytest
import soundfile as sf

from bench.server_process import ServerProcess
from speech import DATA, JFK, LIBRI, assert_transcript

pytestmark = pytest.mark.e2e

FEMALE = "librispeech_test-clean_1995-1837-0001.wav"


def client(server: ServerProcess) -> openai.OpenAI:
    assert server.http_port, "no 'http listening on' line"
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key="unused", max_retries=0, timeout=300)


def test_the_openai_client_transcribes_through_the_api(server: ServerProcess) -> None:
    c = client(server)
    with open(DATA / JFK, "rb") as f:
        plain = c.audio.transcriptions.create(model="whisper-1", file=f)
    assert_transcript(JFK, plain.text)
    with open(DATA / LIBRI, "rb") as f:
        verbose = c.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                timestamp_granularities=["word", "segment"])
    assert_transcript(LIBRI, verbose.text)
    assert verbose.language == "english" and verbose.duration == pytest.approx(5.855, abs=0.01)
    words, segments = verbose.words or [], verbose.segments or []
    assert len(words) >= 10 and segments
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in words)
    for w in words:  # every word inside a segment
        assert any(s.start - 0.01 <= w.start and w.end <= s.end + 0.01 for s in segments), w
    with open(DATA / JFK, "rb") as f:
        srt = c.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and "-->" in srt and "country" in srt
    with open(DATA / JFK, "rb") as f:
        vtt = c.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT") and "country" in vtt


def test_a_compressed_upload_and_a_bad_file(server: ServerProcess) -> None:
    audio, rate = sf.read(DATA / JFK, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="OGG", subtype="OPUS")
    url = f"http://127.0.0.1:{server.http_port}/v1/audio/transcriptions"
    answer = httpx2.post(url, files={"file": ("jfk.ogg", buf.getvalue())}, data={"response_format": "text"}, timeout=300)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert_transcript(JFK, answer.text)
    bad = httpx2.post(url, files={"file": ("x.mp3", b"ID3" + bytes(500))}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "MEDIA_CORRUPT"


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


MALE = "librispeech_test-clean_61-70968-0000.wav"


def two_speakers() -> tuple[bytes, list[tuple[float, float, str]]]:
    """A woman (LibriSpeech 1995), a man (LibriSpeech 61), the woman again, the man again (each
    file cut in two halves); and who speaks when."""
    woman, rate = sf.read(DATA / FEMALE, dtype="float32")
    man, _ = sf.read(DATA / MALE, dtype="float32")
    gap = np.zeros(int(0.7 * rate), dtype=np.float32)
    w, m = len(woman) // 2, len(man) // 2
    parts = [(woman[:w], "A"), (gap, ""), (man[:m], "B"), (gap, ""), (woman[w:], "A"), (gap, ""), (man[m:], "B")]
    truth, t = [], 0.0
    for samples, who in parts:
        if who:
            truth.append((t, t + len(samples) / rate, who))
        t += len(samples) / rate
    buf = io.BytesIO()
    sf.write(buf, np.concatenate([p for p, _ in parts]), rate, format="FLAC")
    return buf.getvalue(), truth


def test_a_job_with_diarization_features_progress_and_callback(server: ServerProcess) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        data, truth = two_speakers()
        base = f"http://127.0.0.1:{server.http_port}/v1/jobs"
        created = httpx2.post(base, files={"file": ("two.flac", data)}, timeout=60,
                              data={"diarize": "true", "features": "true", "timestamp_granularities[]": "word",
                                    "callback_url": f"http://127.0.0.1:{receiver.server_address[1]}/done"})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        progress, stages = [], []
        deadline = time.monotonic() + 400
        while True:
            view = httpx2.get(f"{base}/{job_id}", timeout=10).json()
            progress.append(view["progress"])
            stages.append(view["stage"])
            if view["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        assert view["status"] == "completed", view
        assert progress == sorted(progress) and progress[-1] == 100 and 100 not in progress[:-1]
        assert "transcribing" in stages
        result = view["result"]
        assert "wizard" in result["text"].lower() and "sorrow" in result["text"].lower()
        speakers = result["speakers"]
        assert len(speakers) == 2, speakers
        # the speaker of most of the man's words, and of the woman's
        def speaker_of(lo: float, hi: float) -> str:
            votes = [w["speaker"] for w in result["words"] if lo <= (w["start"] + w["end"]) / 2 <= hi]
            return max(set(votes), key=votes.count)
        woman, man = speaker_of(*truth[0][:2]), speaker_of(*truth[1][:2])
        assert woman != man and speaker_of(*truth[2][:2]) == woman and speaker_of(*truth[3][:2]) == man
        for spk, who in ((woman, "A"), (man, "B")):
            true_s = sum(b - a for a, b, w in truth if w == who)
            got_s = next(s["total_speech_s"] for s in speakers if s["id"] == spk)
            assert abs(got_s - true_s) < 3.0, (spk, got_s, true_s)
        for seg in result["segments"]:
            f = seg["features"]
            assert -40 < f["rms_dbfs"] < 0 and len(f["mfcc_mean"]) == 13
            assert f["f0_hz"]["median"] is None or 60 < f["f0_hz"]["median"] < 400
            assert seg["speaker"] in (woman, man)
        deadline = time.monotonic() + 30
        while not _Receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_Receiver.bodies) == 1
        assert _Receiver.bodies[0]["id"] == job_id and _Receiver.bodies[0]["status"] == "completed"
        assert httpx2.delete(f"{base}/{job_id}", timeout=10).json()["status"] == "completed"  # finished: stays so
        assert httpx2.get(f"{base}/nope", timeout=10).status_code == 404
    finally:
        receiver.shutdown()


def test_the_command_line_tool_against_the_server_and_in_process(server: ServerProcess, tmp_path) -> None:  # noqa: ANN001
    from whisper_streaming.app.transcribe_cli import transcribe_main

    remote, local = tmp_path / "remote", tmp_path / "local"
    assert transcribe_main([str(DATA / JFK), "--server", f"http://127.0.0.1:{server.http_port}", "--format", "srt",
                            "--output-dir", str(remote)]) == 0
    srt = (remote / "jfk.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,") and "country" in srt
    assert transcribe_main([str(DATA / LIBRI), "--format", "verbose_json", "--words", "--output-dir", str(local)]) == 0
    result = json.loads((local / (Path(LIBRI).stem + ".json")).read_text(encoding="utf-8"))
    assert_transcript(LIBRI, result["text"])
    assert result["words"] and result["language"] == "english"
    assert transcribe_main([str(tmp_path / "missing.wav"), "--format", "txt", "--output-dir", str(local)]) == 1
