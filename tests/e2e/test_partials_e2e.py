"""Partial hypotheses end to end (issue 12): the real server (default config, 2 workers) and the
real model on real speech at real-time pace, over raw packets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server_process import ServerProcess
from speech import JFK, assert_transcript, load_speech, silence
from whisper_streaming.wire.protocol import (
    MAGIC, Audio, Begin, Finish, Finished, Options, OptionsAccepted, Packet, PacketDecoder, Partial, Result, Role, UserId,
    encode_packet,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKET_BYTES = 960


@pytest.fixture(scope="module")
def two_worker_server() -> Iterator[ServerProcess]:
    with ServerProcess(config=ROOT / "config_vad.yaml") as proc:
        yield proc


async def _stream(port: int, options: tuple[tuple[str, str], ...], pcm: bytes) -> tuple[list[tuple[float, Packet]], float]:
    """Stream ``pcm`` at real time after ``%o options``; the packets received with their arrival
    times (s since the first audio packet), and that first packet's time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = PacketDecoder(Role.CLIENT)
    got: list[tuple[float, Packet]] = []
    t0 = 0.0

    async def read() -> None:
        while not any(isinstance(p, Finished) for _, p in got):
            data = await reader.read(65536)
            if not data:
                return
            decoder.receive_data(data)
            now = time.monotonic() - t0 if t0 else 0.0
            got.extend((now, p) for p in decoder.packets())

    reading = asyncio.create_task(read())
    writer.write(MAGIC + encode_packet(UserId("partials")))
    if options:
        writer.write(encode_packet(Options(options)))
    writer.write(encode_packet(Begin()))
    t0 = time.monotonic()
    for i in range(0, len(pcm), PACKET_BYTES):
        writer.write(encode_packet(Audio(pcm[i : i + PACKET_BYTES])))
        await writer.drain()
        await asyncio.sleep(max(0.0, t0 + (i + PACKET_BYTES) / 32000 - time.monotonic()))
    writer.write(encode_packet(Finish()))
    await asyncio.wait_for(reading, 60)
    writer.close()
    return got, t0


def test_partials_arrive_early_grow_and_are_superseded_by_the_final(two_worker_server: ServerProcess) -> None:
    pcm = load_speech(JFK)[0] + silence(1.0)
    got, _ = asyncio.run(_stream(two_worker_server.port, (("partials", "1"),), pcm))
    packets = [p for _, p in got]
    assert OptionsAccepted((("partials", "1"),)) in packets
    results = [p for p in packets if isinstance(p, Result)]
    assert_transcript(JFK, " ".join(r.text for r in results))
    partials = [(t, p) for t, p in got if isinstance(p, Partial)]
    assert len(partials) >= 3, packets
    # the first partial of the first utterance: at most 2 s after its first voiced sample
    t_first, first = partials[0]
    assert t_first - first.start_s <= 2.0, (t_first, first)
    assert first.stable or first.unstable
    # wire rules: stable only grows within an utterance; partials before their own %R
    current: list[Partial] = []
    for p in packets:
        if isinstance(p, Partial):
            if current and current[-1].start_s == p.start_s:
                assert p.stable.startswith(current[-1].stable), (current[-1], p)
            current.append(p)
        elif isinstance(p, Result):
            assert all(c.start_s == p.start_s for c in current), (current, p)
            current = []


def test_without_the_option_no_partial_is_sent(two_worker_server: ServerProcess) -> None:
    pcm = load_speech(JFK)[0][: 32000 * 4] + silence(1.0)
    got, _ = asyncio.run(_stream(two_worker_server.port, (), pcm))
    assert not any(isinstance(p, Partial) for _, p in got)
    assert any(isinstance(p, Result) for _, p in got)


def test_a_one_worker_server_gives_partials_on_its_partial_worker(server: ServerProcess) -> None:
    """``model.channel: 1`` and the default ``partials.workers: 1``: the partial worker, not the one
    worker of the finals, decodes them (with ``partials.workers: 0`` such a server answers
    ``partials=0``: ``tests/unit/app/test_wiring_partials.py``)."""
    pcm = load_speech(JFK)[0][: 32000 * 4] + silence(1.0)
    got, _ = asyncio.run(_stream(server.port, (("partials", "1"),), pcm))
    packets = [p for _, p in got]
    assert OptionsAccepted((("partials", "1"),)) in packets
    assert any(isinstance(p, Partial) and (p.stable or p.unstable) for p in packets), packets
    results = [p for p in packets if isinstance(p, Result)]
    assert results and "fellow americans" in " ".join(r.text for r in results).lower()
