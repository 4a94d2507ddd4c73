"""Hostile peers against the real server with the real model and the default config (issue 19).

A bystander streams real speech at real time while attackers stream noise and hold
connections with ``%c``; each test asserts that the bystander is served on time, that status
probes are answered, and that noise costs little and comes back as no text.  Bounded: each
test streams at most ~12 s of audio at real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.server_process import ServerProcess
from speech import JFK, assert_transcript, load_speech, silence
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.wire.protocol import MAGIC, StatusRequest, encode_packet

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKET_BYTES = 960  # 30 ms at 16 kHz s16le


@pytest.fixture(scope="module")
def default_server() -> Iterator[ServerProcess]:
    """The server as a new user runs it: the shipped config (every default), a free port."""
    with ServerProcess(config=ROOT / "config_vad.yaml") as proc:
        yield proc


def _white(seconds: float, dbfs: float, seed: int) -> bytes:
    x = np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 32768.0 * 10.0 ** (dbfs / 20.0)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def _full_scale_white(seconds: float, seed: int) -> bytes:
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, int(16000 * seconds)) * 32767.0
    return x.astype("<i2").tobytes()


def _tone(seconds: float, hz: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000.0
    return (0.3 * 32767.0 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


async def _stream(client: AsyncStreamingClient, pcm: bytes, *, realtime: bool) -> None:
    t0 = time.monotonic()
    for i in range(0, len(pcm), PACKET_BYTES):
        await client.send_audio(pcm[i : i + PACKET_BYTES])
        if realtime:
            await asyncio.sleep(max(0.0, t0 + (i + PACKET_BYTES) / 32000 - time.monotonic()))


async def _session(port: int, user: str, pcm: bytes, *, realtime: bool) -> tuple[float, list[str]]:
    """Stream ``pcm``; return the seconds from the last audio packet to ``%F`` and the texts."""
    client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id=user)
    try:
        await client.begin()
        await _stream(client, pcm, realtime=realtime)
        t = time.monotonic()
        results = await asyncio.wait_for(client.finish(), 60)
        return time.monotonic() - t, [r.text for r in results]
    finally:
        await client.close()


async def _holder(port: int, stop: asyncio.Event) -> None:
    """A connection that only ever sends the magic and ``%c`` (it never identifies)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(MAGIC)
    try:
        while not stop.is_set():
            writer.write(encode_packet(StatusRequest()))
            await writer.drain()
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _probe_s(port: int) -> tuple[float, str]:
    t = time.monotonic()
    client = await AsyncStreamingClient.connect("127.0.0.1", port)
    try:
        text = await asyncio.wait_for(client.status(), 10)
    finally:
        await client.close()
    return time.monotonic() - t, text


def test_bystander_is_served_on_time_while_noise_streams_and_16_connections_hold_status(default_server: ServerProcess) -> None:
    """The issue's "done when" scenario, shortened: full-scale white noise at real time and 16
    ``%c`` holders against a bystander streaming JFK at real time."""
    port = default_server.port
    speech, _ = load_speech(JFK)

    async def run() -> tuple[tuple[float, list[str]], tuple[float, list[str]], tuple[float, str]]:
        stop = asyncio.Event()
        holders = [asyncio.create_task(_holder(port, stop)) for _ in range(16)]
        await asyncio.sleep(0.5)
        noise = asyncio.create_task(_session(port, "noise", _full_scale_white(12.0, seed=1), realtime=True))
        bystander = asyncio.create_task(_session(port, "bystander", speech + silence(0.6), realtime=True))
        await asyncio.sleep(4.0)
        probe = await _probe_s(port)
        got = await asyncio.gather(bystander, noise)
        stop.set()
        await asyncio.gather(*holders)
        return got[0], got[1], probe

    (by_latency_s, by_texts), (noise_latency_s, noise_texts), (probe_s, status) = asyncio.run(run())
    assert_transcript(JFK, " ".join(by_texts))
    assert by_latency_s <= 3.0, f"bystander final latency {by_latency_s:.2f} s"
    assert probe_s <= 1.0 and "sessions" in status
    assert noise_texts == [], f"noise came back as text: {noise_texts}"
    assert noise_latency_s <= 3.0


@pytest.mark.parametrize(
    ("name", "pcm"),
    [
        ("white -20 dBFS", _white(10.0, -20.0, seed=2)),
        ("300 Hz tone", _tone(10.0, 300.0)),
    ],
)
def test_steady_noise_costs_no_worker_time_and_gives_no_text(default_server: ServerProcess, name: str, pcm: bytes) -> None:
    """10 s of steady noise sent at once: ``%F`` follows ``%f`` at once (nothing was queued for
    a worker: before the screen, white noise held a worker for 8-9 s) and no text comes back."""

    async def run() -> tuple[float, list[str], str]:
        latency_s, texts = await _session(default_server.port, "noise", pcm, realtime=False)
        _, status = await _probe_s(default_server.port)
        return latency_s, texts, status

    latency_s, texts, status = asyncio.run(run())
    assert texts == [], f"{name} came back as text: {texts}"
    assert "utterances failed: 0" in status  # nothing was sent to a worker and failed there either
    assert latency_s <= 1.0, f"{name}: %F {latency_s:.2f} s after %f"
