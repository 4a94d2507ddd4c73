"""Speaker identification end to end (issue 15): the real server and model, real speech of three
people; voice samples over the TCP protocol and the WebSocket, every later result labelled with the
right name, a third speaker ``unknown``, ``speakers=auto``, enrolment errors, saved voices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path


import pytest
from websockets.asyncio.client import connect

from bench.server_process import ServerProcess
from speech import DATA, JFK, silence
from whisper_streaming.client.audio_files import load_pcm16
from whisper_streaming.client.cli import stream_file
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.errors import ServerError

pytestmark = pytest.mark.e2e

WOMAN = "librispeech_test-clean_1995-1837-0001.wav"  # alice
MAN = JFK  # bob
STRANGER = "librispeech_test-clean_61-70968-0000.wav"  # never enrolled


def halves(name: str) -> tuple[bytes, bytes]:
    pcm = load_pcm16(DATA / name)
    return pcm[: len(pcm) // 2].tobytes(), pcm[len(pcm) // 2 :].tobytes()


def conversation() -> tuple[bytes, list[tuple[float, float, str]]]:
    """The halves not used for enrolment, alternating, then the stranger; and who speaks when."""
    parts = [(halves(WOMAN)[1], "alice"), (halves(MAN)[1], "bob"), (load_pcm16(DATA / STRANGER).tobytes(), "unknown"),
             (halves(WOMAN)[1], "alice")]
    pcm, truth, t = b"", [], 0.0
    for audio, who in parts:
        truth.append((t, t + len(audio) / 32000, who))
        pcm += audio + silence(1.2)
        t += len(audio) / 32000 + 1.2
    return pcm, truth


def who_spoke(truth: list[tuple[float, float, str]], start_s: float, end_s: float) -> str:
    mid = (start_s + end_s) / 2
    return next(who for a, b, who in truth if a - 0.5 <= mid <= b + 0.5)


async def tcp_enrol(client: AsyncStreamingClient, name: str, pcm: bytes) -> str:
    accepted = await client.set_options(enroll=name)
    assert accepted["enroll"] == name
    await stream_file(client, pcm + silence(0.6), speed=0)
    assert client.last_summary is not None
    return client.last_summary.text


def test_two_enrolled_speakers_over_tcp_every_result_right_and_a_stranger_unknown(server: ServerProcess) -> None:
    async def main() -> None:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="speakers-tcp")
        try:
            text = await tcp_enrol(client, "alice", halves(WOMAN)[0])
            assert text.startswith("enrolled: alice\nspeech: ")
            assert float(text.split("speech: ")[1].split()[0]) >= 3.0
            assert (await tcp_enrol(client, "bob", halves(MAN)[0])).startswith("enrolled: bob")
            pcm, truth = conversation()
            results = await stream_file(client, pcm, speed=0)
        finally:
            await client.close()
        assert len(results) >= 4
        for r in results:
            assert r.speaker is not None, r
            assert r.speaker.label == who_spoke(truth, r.start_s, r.end_s), (r, truth)
        assert {r.speaker.label for r in results} == {"alice", "bob", "unknown"}

    asyncio.run(main())


async def ws_stream(ws, pcm: bytes, first: dict) -> list[dict]:  # noqa: ANN001
    await ws.send(json.dumps(first))
    for i in range(0, len(pcm), 3200):
        await ws.send(pcm[i : i + 3200])
    await ws.send(json.dumps({"type": "finish"}))
    messages: list[dict] = []
    while not messages or messages[-1]["type"] not in ("finished", "error"):
        messages.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
    return messages


def test_two_enrolled_speakers_over_the_websocket_and_auto_labels(server: ServerProcess) -> None:
    async def main() -> None:
        async with connect(f"ws://127.0.0.1:{server.http_port}/v1/stream") as ws:
            got = await ws_stream(ws, halves(WOMAN)[0] + silence(0.6), {"type": "enroll", "name": "alice", "user": "speakers-ws"})
            assert {"type": "enrolled", "name": "alice", "speech": got[-3]["speech"]} == got[-3] and got[-3]["speech"] >= 3.0
            got = await ws_stream(ws, halves(MAN)[0] + silence(0.6), {"type": "enroll", "name": "bob"})
            assert got[-3]["type"] == "enrolled" and got[-3]["name"] == "bob"
            pcm, truth = conversation()
            finals = [m for m in await ws_stream(ws, pcm, {"type": "start"}) if m["type"] == "final"]
            assert len(finals) >= 4
            for m in finals:
                assert m["speaker"] == who_spoke(truth, m["start"], m["end"]), (m, truth)
                assert 0.0 <= m["speaker_score"] <= 1.0
            # no enrolment needed: labels by clustering within the stream
            two = halves(WOMAN)[1] + silence(1.2) + halves(MAN)[1] + silence(1.2) + halves(WOMAN)[0] + silence(0.6)
            finals = [m for m in await ws_stream(ws, two, {"type": "start", "speakers": "auto"}) if m["type"] == "final"]
            labels = [m["speaker"] for m in finals]
            assert len(set(labels)) == 2 and labels[0] == "S1" and labels[-1] == "S1" and "S2" in labels, finals

    asyncio.run(main())


@pytest.mark.parametrize("audio", ["short", "silence"])
def test_a_voice_sample_with_too_little_speech_ends_the_session(server: ServerProcess, audio: str) -> None:
    async def main() -> None:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id=f"enrol-{audio}")
        try:
            pcm = halves(STRANGER)[0][: 32000 * 1] if audio == "short" else silence(4.0)
            with pytest.raises(ServerError) as err:
                await tcp_enrol(client, "carol", pcm)
            assert err.value.reason == "ENROLL_TOO_SHORT"
        finally:
            await client.close()

    asyncio.run(main())


@pytest.fixture(scope="module")
def voices_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("voices-server")
    config = root / "config.yaml"
    config.write_text(f"network:\n  socket_timeout: 30\nmodel:\n  language: en\n  channel: 1\nspeakers:\n  dir: {root / 'voices'}\n",
                      encoding="utf-8")
    with ServerProcess(config=config, log_path=root / "server.log") as proc:
        yield proc, root / "voices"


def test_saved_voices_label_a_later_session(voices_server: tuple[ServerProcess, Path]) -> None:
    server, directory = voices_server

    async def main() -> None:
        first = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="enrols")
        try:
            await tcp_enrol(first, "alice", halves(WOMAN)[0])
            await tcp_enrol(first, "bob", halves(MAN)[0])
        finally:
            await first.close()
        assert len(list(directory.glob("*.json"))) == 2
        later = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="later")
        try:
            accepted = await later.set_options(speakers="alice,bob")
            assert accepted["speakers"] == "alice,bob"
            pcm, truth = conversation()
            results = await stream_file(later, pcm, speed=0)
        finally:
            await later.close()
        assert results and all(r.speaker is not None and r.speaker.label == who_spoke(truth, r.start_s, r.end_s) for r in results)
        missing = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="missing")
        try:
            with pytest.raises(ServerError) as err:
                await missing.set_options(speakers="zed")
                await stream_file(missing, silence(0.5), speed=0)
            assert err.value.reason == "UNKNOWN_SPEAKER"
        finally:
            await missing.close()

    asyncio.run(main())


