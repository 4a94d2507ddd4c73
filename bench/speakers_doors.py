"""Two enrolled speakers alternating, over the TCP protocol and over the WebSocket (issue 15's "done when").

Starts the server (``--config``, default: the shipped defaults), and for each door: one
connection enrols Harvard speaker 1 and speaker 2 of ``../shared/data/speech/en`` from their
first two sentences each (``enroll=spk1``, ``enroll=spk2``), then streams their other sentences
alternating (spk1 snt3, spk2 snt3, spk1 snt4, ...; 1.2 s of silence between) at real-time pace,
and checks the speaker of every result against who spoke at its time.  Prints one line per
result and the accuracy per door.

Usage: ``.venv/bin/python bench/speakers_doors.py [--config config_vad.yaml] [--speed 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, load_dir, machine_info  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402
from whisper_streaming.client.cli import stream_file  # noqa: E402
from whisper_streaming.client.streaming import AsyncStreamingClient  # noqa: E402

GAP = np.zeros(int(1.2 * 16000), dtype="<i2").tobytes()
TAIL = np.zeros(int(0.6 * 16000), dtype="<i2").tobytes()


def harvard() -> dict[str, list[bytes]]:
    files = {f.name: f.pcm for f in load_dir(DEFAULT_AUDIO_DIR)}
    return {spk: [files[f"speechbrain_harvard_{spk}_snt{i}.wav"] for i in range(1, 7)] for spk in ("spk1", "spk2")}


def conversation(voices: dict[str, list[bytes]]) -> tuple[bytes, list[tuple[float, float, str]]]:
    pcm, truth, t = b"", [], 0.0
    for i in range(2, 6):
        for spk in ("spk1", "spk2"):
            audio = voices[spk][i]
            truth.append((t, t + len(audio) / 32000, spk))
            pcm += audio + GAP
            t += (len(audio) + len(GAP)) / 32000
    return pcm, truth


def who(truth: list[tuple[float, float, str]], start_s: float, end_s: float) -> str:
    mid = (start_s + end_s) / 2
    return min(truth, key=lambda x: 0 if x[0] <= mid <= x[1] else min(abs(mid - x[0]), abs(mid - x[1])))[2]


async def tcp(port: int, voices: dict[str, list[bytes]], speed: float) -> list[tuple[float, float, str, str, float]]:
    client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="doors-tcp", timeout_s=30)
    try:
        for spk in ("spk1", "spk2"):
            await client.set_options(enroll=spk)
            await stream_file(client, voices[spk][0] + GAP + voices[spk][1] + TAIL, speed=speed)
            print(f"tcp: {client.last_summary.text if client.last_summary else 'not enrolled'!r}")
        pcm, _ = conversation(voices)
        results = await stream_file(client, pcm + TAIL, speed=speed)
    finally:
        await client.close()
    return [(r.start_s, r.end_s, r.text, r.speaker.label if r.speaker else "-", r.speaker.score if r.speaker else 0.0) for r in results]


async def websocket(http_port: int, voices: dict[str, list[bytes]], speed: float) -> list[tuple[float, float, str, str, float]]:
    from websockets.asyncio.client import connect

    async def run(ws, pcm: bytes, first: dict) -> list[dict]:  # noqa: ANN001
        await ws.send(json.dumps(first))
        step = 3200
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])
            if speed > 0:
                await asyncio.sleep(step / 32000 / speed)
        await ws.send(json.dumps({"type": "finish"}))
        out: list[dict] = []
        while not out or out[-1]["type"] not in ("finished", "error"):
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
        return out

    async with connect(f"ws://127.0.0.1:{http_port}/v1/stream") as ws:
        for spk in ("spk1", "spk2"):
            got = await run(ws, voices[spk][0] + GAP + voices[spk][1] + TAIL, {"type": "enroll", "name": spk, "user": "doors-ws"})
            print("websocket:", next((m for m in got if m["type"] in ("enrolled", "error")), None))
        pcm, _ = conversation(voices)
        finals = [m for m in await run(ws, pcm + TAIL, {"type": "start"}) if m["type"] == "final"]
    return [(m["start"], m["end"], m["text"], m.get("speaker", "-"), m.get("speaker_score", 0.0)) for m in finals]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None)
    p.add_argument("--speed", type=float, default=1.0)
    args = p.parse_args()
    voices = harvard()
    _, truth = conversation(voices)
    report: dict[str, object] = {"machine": machine_info()}
    with ServerProcess(config=args.config) as server:
        assert server.http_port
        for door, results in (("tcp", asyncio.run(tcp(server.port, voices, args.speed))),
                              ("websocket", asyncio.run(websocket(server.http_port, voices, args.speed)))):
            right = 0
            for start, end, text, label, score in results:
                expected = who(truth, start, end)
                right += label == expected
                print(f"{door:9s} {start:6.2f} {end:6.2f} {label:8s} {score:.3f} {'ok ' if label == expected else 'BAD'} {expected}: {text[:60]}")
            report[door] = {"results": len(results), "right": right}
            print(f"{door}: {right}/{len(results)} results labelled right")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
