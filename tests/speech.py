"""Test helpers: shipped speech files, silence, normalized WER."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jiwer
import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

from whisper_streaming.client.audio_files import load_pcm16
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.client.cli import stream_file
from whisper_streaming.wire.protocol import PacketDecoder, Role

DATA = Path(__file__).parent / "data"
JFK = "jfk.wav"
LIBRI = "librispeech_dev-clean_1272-128104-0000.wav"
_normalize = EnglishTextNormalizer()

# A short socket timeout so the idle-timeout test is quick; small max_connections for SERVER_TOO_BUSY
# (every test client is on loopback: no per-address limit).
E2E_CONFIG = """\
network:
  socket_timeout: 4
  handshake_timeout_s: 2
model:
  language: en
  channel: 1
server:
  max_connections: 4
  max_connections_per_ip: 0
  shutdown_timeout_s: 30
batch:
  callback_targets: any  # the callback test's receiver is on loopback
"""


def normalized_wer(reference: str, hypothesis: str) -> float:
    """WER after Whisper's English text normalizer (jiwer)."""
    return jiwer.wer(_normalize(reference), _normalize(hypothesis) or "<empty>")


def speech_files() -> list[Path]:
    return sorted(p for p in DATA.glob("*.wav") if p.with_suffix(".txt").exists())


def load_speech(name: str) -> tuple[bytes, str]:
    path = DATA / name
    return load_pcm16(path).tobytes(), path.with_suffix(".txt").read_text(encoding="utf-8").strip()


def silence(seconds: float) -> bytes:
    return np.zeros(int(16000 * seconds), dtype=np.int16).tobytes()


async def good_session(port: int, name: str, *, speed: float = 0.0, user: str = "good") -> str:
    """Stream one file (plus trailing silence) and return the joined transcript."""
    pcm, _ = load_speech(name)
    client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id=user)
    try:
        results = await stream_file(client, pcm + silence(0.6), speed=speed)
    finally:
        await client.close()
    return " ".join(r.text for r in results)


async def raw_exchange(port: int, payload: bytes, *, wait_s: float = 10.0) -> tuple[list, bool]:
    """Send raw bytes; return the server's packets and whether the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    decoder = PacketDecoder(Role.CLIENT)
    closed = False
    try:
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                closed = True
                break
            decoder.receive_data(data)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return decoder.packets(), closed


def assert_transcript(name: str, text: str) -> None:
    reference = (DATA / name).with_suffix(".txt").read_text(encoding="utf-8")
    wer = normalized_wer(reference, text)
    assert wer <= 0.15, f"WER {wer:.2f} for {name}: {text!r}"


def worker_pids(server_pid: int) -> list[int]:
    """PIDs of the server's ASR worker processes (spawned children; not the resource tracker)."""
    children = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
