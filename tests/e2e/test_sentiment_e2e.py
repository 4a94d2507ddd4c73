"""Sentiment end to end on the real server process and the bundled Whisper base model.

* the shared ``server`` fixture (``model.language: en``, sentiment off by default, engine vader):
  a legacy client sees the original bytes; an opted-in client gets labels on clearly positive
  and clearly negative spoken sentences and the ``%S`` summary; ``tcp_client.py --sentiment``;
* a dedicated server (language detected, sentiment on server-wide with the ``transformers``
  engine on a tiny local DistilBERT, ``languages: [en]``, a results log): Korean speech gets
  ``sentiment=unsupported language=ko``; three concurrent sessions append to the JSONL log.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from whisper_streaming.client.audio_files import load_pcm16
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.client.cli import stream_file
from bench.server_process import REPO_ROOT, ServerProcess
from whisper_streaming.wire.protocol import MAGIC, Audio, Begin, Finish, UserId, encode_packet
from whisper_streaming.analyzers.sentiment_stats import SentimentSummary

from speech import DATA, LIBRI, assert_transcript, normalized_wer, silence
from tiny_classifier import build_tiny_classifier

pytestmark = pytest.mark.e2e

SENTIMENT_DATA = DATA / "sentiment"
POSITIVE = SENTIMENT_DATA / "tts_positive_en.wav"
NEGATIVE = SENTIMENT_DATA / "tts_negative_en.wav"
KOREAN = SENTIMENT_DATA / "picovoice_leopard_test_ko.wav"
PLAIN_RESULT = re.compile(r"\d+\.\d \d+\.\d : [^\t]*\Z")


def pcm_of(path: Path) -> bytes:
    return load_pcm16(path).tobytes() + silence(0.6)


def reference(path: Path) -> str:
    return path.with_suffix(".txt").read_text(encoding="utf-8").strip()


async def opted_in_streams(port: int, paths: list[Path], *, user: str = "opt-in") -> tuple[dict, list[tuple[list, SentimentSummary]]]:
    """``%o sentiment=1``, then one stream per file; returns the %O answer and (results, summary) per stream."""
    client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id=user)
    try:
        accepted = await client.set_options(sentiment=True)
        streams = []
        for path in paths:
            results = await stream_file(client, pcm_of(path), speed=0)
            assert client.last_summary is not None
            streams.append((results, SentimentSummary.from_text(client.last_summary.text)))
            client.last_summary = None
        return accepted, streams
    finally:
        await client.close()


def _raw_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    frames, pos = [], 0
    while pos + 6 <= len(data):
        length = int(data[pos + 2 : pos + 6], 16)
        frames.append((data[pos : pos + 2], data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    assert pos == len(data), "trailing partial frame"
    return frames


async def _legacy_raw_session(port: int, pcm: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(MAGIC + encode_packet(UserId("legacy")) + encode_packet(Begin()))
        for i in range(0, len(pcm), 9600):
            writer.write(encode_packet(Audio(pcm[i : i + 9600])))
        writer.write(encode_packet(Finish()))
        await writer.drain()
        received = b""
        while not received.endswith(b"%F0000"):
            chunk = await asyncio.wait_for(reader.read(65536), 60)
            assert chunk, "closed before %F"
            received += chunk
        return received
    finally:
        writer.close()


# --------------------------------------------------------------------------- shared server (sentiment off by default)


def test_legacy_client_traffic_is_unchanged(server: ServerProcess) -> None:
    data = asyncio.run(_legacy_raw_session(server.port, pcm_of(NEGATIVE) + pcm_of(POSITIVE)))
    frames = _raw_frames(data)
    codes = [code for code, _ in frames]
    assert codes[0] == b"%L" and codes[-1] == b"%F" and set(codes[1:-1]) == {b"%R"}, codes
    assert len(codes) >= 4  # both sentences transcribed
    for _, payload in frames[1:-1]:
        assert PLAIN_RESULT.match(payload.decode("utf-8")), payload  # no sentiment field, no tab
    assert b"\t" not in data and b"%O" not in codes and b"%S" not in codes


def test_opted_in_client_gets_labels_and_summary(server: ServerProcess) -> None:
    accepted, streams = asyncio.run(opted_in_streams(server.port, [POSITIVE, NEGATIVE]))
    assert accepted == {"sentiment": True}
    for (results, summary), path, label in zip(streams, (POSITIVE, NEGATIVE), ("positive", "negative")):
        assert_transcript_ok(path, " ".join(r.text for r in results))
        assert results and all(r.sentiment is not None for r in results)
        labels = [r.sentiment.label for r in results]
        assert labels.count(label) == len(labels), (path.name, [(r.text, r.sentiment) for r in results])
        assert all(r.sentiment.score >= 0.5 for r in results)  # clearly polar
        assert summary.results == len(results) and summary.count(label) == len(results) and summary.unsupported == 0
        assert summary.percent(label) == 100.0
        assert summary.mean_score == pytest.approx(sum(r.sentiment.score for r in results) / len(results), abs=0.002)
    status = asyncio.run(_status(server.port))
    m = re.search(r"^sentiment: positive=(\d+) negative=(\d+) neutral=(\d+) unsupported=(\d+)$", status, re.M)
    assert m, status
    assert int(m.group(1)) >= len(streams[0][0]) and int(m.group(2)) >= len(streams[1][0])


def assert_transcript_ok(path: Path, text: str) -> None:
    wer = normalized_wer(reference(path), text)
    assert wer <= 0.15, f"WER {wer:.2f} for {path.name}: {text!r}"


async def _status(port: int) -> str:
    client = await AsyncStreamingClient.connect("127.0.0.1", port)
    try:
        return await client.status()
    finally:
        await client.close()


def test_tcp_client_cli_sentiment(server: ServerProcess) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--port", str(server.port), "--speed", "0", "--sentiment"]
    run = subprocess.run([*cmd, "--ifn", str(NEGATIVE)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    split = lines.index("summary:")
    results, summary = lines[:split], "\n".join(lines[split + 1 :])
    assert results and all(re.fullmatch(r"\d+\.\d \d+\.\d : .+  \[negative \d\.\d{3}\]", line) for line in results), run.stdout
    parsed = SentimentSummary.from_text(summary)
    assert parsed.negative == parsed.results == len(results)


# --------------------------------------------------------------------------- dedicated server: server-wide, transformers, log


@pytest.fixture(scope="module")
def sentiment_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("sentiment-server")
    model = build_tiny_classifier(root / "tiny-distilbert")
    log_path = root / "logs" / "results.jsonl"
    config = root / "config.yaml"
    config.write_text(
        "network:\n  socket_timeout: 30\nmodel:\n  language: null\n  channel: 1\n"
        f"sentiment:\n  enabled: true\n  engine: transformers\n  model: {model}\n  languages: [en]\n"
        f"results:\n  jsonl_path: {log_path}\n",
        encoding="utf-8",
    )
    with ServerProcess(config=config, log_path=root / "server.log") as proc:
        yield proc, log_path


def test_unsupported_language_and_server_wide_default(sentiment_server: tuple[ServerProcess, Path]) -> None:
    proc, _ = sentiment_server

    async def run() -> tuple[list, object]:
        client = await AsyncStreamingClient.connect("127.0.0.1", proc.port, user_id="korean")  # no %o: the server-wide default
        try:
            return await stream_file(client, pcm_of(KOREAN), speed=0), client.last_summary
        finally:
            await client.close()

    results, summary = asyncio.run(run())
    assert results, "no transcript for the Korean file"
    assert all(re.search(r"[가-힣]", r.text) for r in results), results
    for r in results:
        assert (r.sentiment.label, r.sentiment.score, r.sentiment.language) == ("unsupported", None, "ko")
    parsed = SentimentSummary.from_text(summary.text)  # type: ignore[attr-defined]
    assert parsed.unsupported == parsed.results == len(results) and parsed.mean_score is None


def test_results_log_with_concurrent_sessions(sentiment_server: tuple[ServerProcess, Path]) -> None:
    proc, log_path = sentiment_server

    async def one(user: str, path: Path) -> list:
        client = await AsyncStreamingClient.connect("127.0.0.1", proc.port, user_id=user)
        try:
            return await stream_file(client, pcm_of(path), speed=2)
        finally:
            await client.close()

    async def run() -> list[list]:
        return await asyncio.gather(one("log-a", POSITIVE), one("log-b", NEGATIVE), one("log-c", DATA / LIBRI))

    sent = dict(zip(("log-a", "log-b", "log-c"), asyncio.run(run())))
    assert_transcript(LIBRI, " ".join(r.text for r in sent["log-c"]))
    lines = log_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is valid JSON
    mine = [r for r in records if r["user_id"] in sent]
    assert len(mine) == sum(len(results) for results in sent.values())  # one line per result
    assert len({r["session_id"] for r in mine}) == 3  # distinct sessions
    for user, results in sent.items():
        logged = [r for r in mine if r["user_id"] == user]
        assert [r["text"] for r in logged] == [r.text for r in results]
        for rec, res in zip(logged, results):  # the log keeps 2 decimals, %R one
            assert abs(rec["start_s"] - res.start_s) <= 0.051 and abs(rec["end_s"] - res.end_s) <= 0.051
        for rec, res in zip(logged, results):
            assert rec["language"] == "en" and rec["stream_index"] == 0
            assert rec["sentiment"] == res.sentiment.label in ("positive", "negative")  # the tiny model's 2 labels
            assert rec["score"] == pytest.approx(res.sentiment.score, abs=0.001)
