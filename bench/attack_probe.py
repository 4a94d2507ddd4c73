"""Attack probe (issue 19): a bystander streams JFK at real time (3 rounds) while another client
streams 30 s of full-scale white noise at real time and 16 others hold connections that send only
``%c`` (every 5 s, never ``%u``); measured: the bystander's time from its last audio packet to
``%F`` (its final latency from the end of audio), the noise client's ``%f`` -> ``%F``, a fresh
``%c`` probe's answer time, and the server's session counters.  First without the attack, then
with it, on one server (``config_vad.yaml``, default settings).

    .venv/bin/python bench/attack_probe.py
"""
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from bench.common import machine_info  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402
from speech import JFK, load_speech, silence  # noqa: E402
from whisper_streaming.client import AsyncStreamingClient  # noqa: E402
from whisper_streaming.wire.protocol import MAGIC, StatusRequest, encode_packet  # noqa: E402

PACKET = 960  # 30 ms

async def stream(client, pcm, realtime=True):
    t0 = time.monotonic()
    for i in range(0, len(pcm), PACKET):
        await client.send_audio(pcm[i:i+PACKET])
        if realtime:
            await asyncio.sleep(max(0.0, t0 + (i + PACKET) / 32000 - time.monotonic()))

async def bystander(port, rounds):
    pcm, _ = load_speech(JFK)
    out = []
    c = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="bystander")
    for _ in range(rounds):
        await c.begin()
        await stream(c, pcm + silence(0.6))
        t = time.monotonic()
        res = await c.finish()
        out.append((time.monotonic() - t, " ".join(r.text for r in res)))
    await c.close()
    return out

async def noisy(port, seconds):
    rng = np.random.default_rng(1)
    pcm = (rng.uniform(-1, 1, int(16000 * seconds)) * 32767).astype("<i2").tobytes()
    c = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="noise")
    await c.begin()
    await stream(c, pcm)
    t = time.monotonic()
    res = await c.finish()
    await c.close()
    return time.monotonic() - t, [r.text for r in res]

async def holder(port, stop):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(MAGIC)
    while not stop.is_set():
        w.write(encode_packet(StatusRequest()))
        await asyncio.sleep(5)
    w.close()

async def probe(port):
    t = time.monotonic()
    c = await AsyncStreamingClient.connect("127.0.0.1", port)
    text = await c.status()
    await c.close()
    return time.monotonic() - t, text

async def main(port, with_attack):
    stop = asyncio.Event()
    holders = [asyncio.create_task(holder(port, stop)) for _ in range(16 if with_attack else 0)]
    await asyncio.sleep(0.5)
    tasks = [asyncio.create_task(bystander(port, 3))]
    if with_attack:
        tasks.append(asyncio.create_task(noisy(port, 30.0)))
    await asyncio.sleep(5)
    probe_s, status = await probe(port)
    got = await asyncio.gather(*tasks)
    stop.set()
    await asyncio.gather(*holders)
    return {"bystander_final_s": [round(x[0], 2) for x in got[0]], "bystander_text": got[0][0][1],
            "noise": None if not with_attack else {"finish_after_f_s": round(got[1][0], 2), "texts": got[1][1]},
            "probe_s": round(probe_s, 3), "status_sessions": [l for l in status.splitlines() if l.startswith(("sessions", "decoding"))]}

if __name__ == "__main__":
    with ServerProcess(config=ROOT / "config_vad.yaml") as server:
        base = asyncio.run(main(server.port, False))
        attack = asyncio.run(main(server.port, True))
    print(json.dumps({"machine": machine_info(), "baseline": base, "attack": attack}, indent=1))
