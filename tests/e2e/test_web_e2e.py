"""The web door end to end: the real server process (HTTP on a free port), the bundled Whisper base
model, real speech over the WebSocket; ``/health`` and ``/metrics`` of that server."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from bench.server_process import ServerProcess
from speech import JFK, LIBRI, assert_transcript, good_session, load_speech, silence

pytestmark = pytest.mark.e2e

FRAME_BYTES = 3200  # 100 ms


async def websocket_session(port: int, name: str, **start: object) -> tuple[str, list[dict]]:
    """Stream one file (plus trailing silence) over ``/v1/stream``; the joined finals and every message."""
    pcm, _ = load_speech(name)
    pcm += silence(0.6)
    async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
        await ws.send(json.dumps({"type": "start", "user": "web", **start}))
        for i in range(0, len(pcm), FRAME_BYTES):
            await ws.send(pcm[i : i + FRAME_BYTES])
        await ws.send(json.dumps({"type": "finish"}))
        messages: list[dict] = []
        while not messages or messages[-1]["type"] not in ("finished", "error"):
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
    return " ".join(m["text"] for m in messages if m["type"] == "final"), messages


@pytest.mark.parametrize("name", [JFK, LIBRI])
def test_websocket_gives_the_same_transcript_as_tcp(server: ServerProcess, name: str) -> None:
    assert server.http_port, "no 'http listening on' line"
    tcp_text = asyncio.run(good_session(server.port, name, user="tcp"))
    ws_text, messages = asyncio.run(websocket_session(server.http_port, name))
    assert messages[0]["type"] == "started" and messages[-1] == {"type": "finished"}
    assert not any(m["type"] == "error" for m in messages), messages
    assert ws_text == tcp_text
    assert_transcript(name, ws_text)
    ends = [m["end"] for m in messages if m["type"] == "final"]
    assert ends == sorted(ends)


def test_health_and_metrics_of_the_real_server(server: ServerProcess) -> None:
    assert server.http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health", timeout=10) as response:
        assert response.status == 200
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["engines_ready"] == 1 and health["queue_depth"] >= 0
    asyncio.run(websocket_session(server.http_port, JFK))
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    assert samples["whisper_streaming_finals_total"] >= 1
    assert samples["whisper_streaming_audio_seconds_total"] >= 11.0
    assert samples["whisper_streaming_worker_seconds_total"] > 0
    assert 0 < samples["whisper_streaming_real_time_factor"] < 5
    assert samples["whisper_streaming_final_latency_seconds_count"] >= 1
