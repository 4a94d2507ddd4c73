"""The sinks as plug-ins: every door's events through the one Sink interface."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from whisper_streaming.analyzers.sentiment import Sentiment
from whisper_streaming.core.results import FinalResult
from whisper_streaming.sinks.base import ResultPublished, SessionClosed, SessionInfo, Sink, StreamAudioReceived, StreamClosed, StreamOpened
from whisper_streaming.sinks.jsonl import JsonlSink, ResultsLog
from whisper_streaming.sinks.pcm import PcmRecorder, PcmSink
from whisper_streaming.sinks.webhook import WebhookSink, webhook_body

TCP = SessionInfo("c7", "tcp", "127.0.0.1:5000", user_id="alice")
CALL = SessionInfo("a3", "audiosocket", "127.0.0.1:6000", user_id="0b1c", call_id="0b1c")
NEG = Sentiment("negative", 0.91234)


def test_every_sink_implements_the_interface(tmp_path: Path) -> None:
    sinks = [JsonlSink(ResultsLog(tmp_path / "r.jsonl")), WebhookSink("http://127.0.0.1:9/x"), PcmSink(PcmRecorder(tmp_path / "pcm"))]
    assert all(isinstance(s, Sink) for s in sinks)
    for s in sinks:
        asyncio.run(s.aclose(0.1))


def test_webhook_body_of_a_tcp_session_is_keyed_by_the_connection() -> None:
    body = webhook_body(ResultPublished(TCP, FinalResult(1.234, 3.4, "I hate it", 2, "en", annotations={"sentiment": NEG})))
    assert body == {"event": "result", "session_id": "c7", "user_id": "alice", "stream_index": 2, "start_s": 1.23, "end_s": 3.4,
                    "text": "I hate it", "language": "en", "sentiment": "negative", "score": 0.9123}
    end = webhook_body(SessionClosed(TCP, results=3, audio_s=12.345, reason="closed"))
    assert end == {"event": "session_end", "session_id": "c7", "user_id": "alice", "results": 3, "audio_s": 12.35, "reason": "closed"}


def test_webhook_body_of_an_audiosocket_call_is_unchanged() -> None:
    body = webhook_body(ResultPublished(CALL, FinalResult(0.5, 1.0, "hello", 0, "")))
    assert body == {"event": "result", "call_id": "0b1c", "start_s": 0.5, "end_s": 1.0, "text": "hello", "language": None,
                    "sentiment": None, "score": None}
    assert webhook_body(SessionClosed(CALL, 1, 2.0, "hangup")) == {"event": "hangup", "call_id": "0b1c", "results": 1, "audio_s": 2.0,
                                                                  "reason": "hangup"}
    assert webhook_body(StreamOpened(CALL, 0, 8000)) is None  # audio events are not posted


def test_jsonl_sink_writes_one_line_per_result_of_any_door(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(ResultsLog(path))
    sink.publish(StreamOpened(TCP, 0, 16000))
    sink.publish(ResultPublished(TCP, FinalResult(1.0, 2.0, "one", 0, "en", annotations={"sentiment": NEG})))
    sink.publish(ResultPublished(CALL, FinalResult(0.0, 1.0, "two", 0, "en")))
    sink.publish(SessionClosed(TCP, 1, 2.0, "closed"))
    asyncio.run(sink.aclose(1.0))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["session_id"], r["user_id"], r["text"], r["sentiment"]) for r in rows] == [("c7", "alice", "one", "negative"), ("a3", "0b1c", "two", None)]


def test_pcm_sink_records_each_stream_of_each_session(tmp_path: Path) -> None:
    sink = PcmSink(PcmRecorder(tmp_path))
    tone = (np.sin(np.arange(800) / 5) * 8000).astype("<i2").tobytes()
    sink.publish(StreamOpened(TCP, 0, 16000))
    sink.publish(StreamOpened(CALL, 0, 8000))
    sink.publish(StreamAudioReceived(TCP, 0, tone))
    sink.publish(StreamAudioReceived(CALL, 0, tone[:800]))
    sink.publish(StreamAudioReceived(TCP, 0, tone))
    sink.publish(StreamClosed(TCP, 0))
    sink.publish(StreamAudioReceived(TCP, 0, tone))  # after its end: not recorded
    sink.publish(SessionClosed(CALL, 0, 0.05, "hangup"))  # closes the call's open stream
    asyncio.run(sink.aclose(5.0))  # the files are written on the sink's own thread
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == 2
    by_rate = {sf.info(f).samplerate: sf.read(f, dtype="int16")[0] for f in files}
    assert len(by_rate[16000]) == 1600 and len(by_rate[8000]) == 400
    assert by_rate[16000][:800].tobytes() == tone
    assert any(f.name.startswith("alice_") for f in files)



def _stream(sink: PcmSink, info: SessionInfo, index: int, chunks: list[bytes], rate: int = 16000) -> None:
    sink.publish(StreamOpened(info, index, rate))
    for c in chunks:
        sink.publish(StreamAudioReceived(info, index, c))
    sink.publish(StreamClosed(info, index))


def test_pcm_sink_continues_a_long_stream_in_part_files(tmp_path: Path) -> None:
    from whisper_streaming.sinks.pcm import PcmLimits

    sink = PcmSink(PcmRecorder(tmp_path), PcmLimits(max_file_bytes=1 << 20, max_total_bytes=None))
    chunk = (np.arange(4800) % 300 - 150).astype("<i2").tobytes()  # 9600 bytes
    _stream(sink, TCP, 0, [chunk] * 250)  # 2.4 MB: three files of at most 1 MiB
    asyncio.run(sink.aclose(5.0))
    files = sorted(tmp_path.glob("*.wav"), key=lambda f: (len(f.name), f.name))
    assert [f.name.endswith(s) for f, s in zip(files, ("_0.wav", "_0_part2.wav", "_0_part3.wav"))] == [True] * 3
    frames = [sf.read(f, dtype="int16")[0] for f in files]
    assert all(len(fr) * 2 <= 1 << 20 for fr in frames)
    assert np.concatenate(frames).tobytes() == chunk * 250  # nothing lost at the seams


def test_pcm_sink_caps_the_total_and_the_files_per_session(tmp_path: Path) -> None:
    from whisper_streaming.sinks.pcm import PcmLimits

    sink = PcmSink(PcmRecorder(tmp_path), PcmLimits(max_file_bytes=1 << 20, max_total_bytes=1 << 20, max_files_per_session=3))
    for i in range(10):  # a client pipelining %b%f: only 3 files
        _stream(sink, TCP, i, [])
    other = SessionInfo("c8", "tcp", user_id="bob")
    _stream(sink, other, 0, [bytes(600_000)] * 3)  # 1.8 MB against a 1 MiB total
    _stream(sink, other, 1, [bytes(1000)])  # over the total: not even opened
    asyncio.run(sink.aclose(5.0))
    alice = list(tmp_path.glob("alice_*.wav"))
    bob = list(tmp_path.glob("bob_*.wav"))
    assert len(alice) == 3
    assert len(bob) == 1 and sink.bytes_written == 1 << 20
    assert len(sf.read(bob[0], dtype="int16")[0]) * 2 == 1 << 20


def test_pcm_sink_publish_never_waits_for_the_disk(tmp_path: Path) -> None:
    import threading

    from whisper_streaming.sinks.pcm import PcmLimits

    gate = threading.Event()
    recorder = PcmRecorder(tmp_path)
    original = recorder.open_stream

    def slow_open(*args, **kwargs):  # a disk that hangs
        gate.wait(10)
        return original(*args, **kwargs)

    recorder.open_stream = slow_open  # type: ignore[method-assign]
    sink = PcmSink(recorder, PcmLimits(queue_chunks=50))
    import time

    t0 = time.monotonic()
    _stream(sink, TCP, 0, [bytes(960)] * 500)
    assert time.monotonic() - t0 < 0.5  # publishing 500 chunks did not wait for the hung disk
    assert sink.chunks_dropped >= 400  # the recording lost them, not the session
    gate.set()
    asyncio.run(sink.aclose(5.0))
