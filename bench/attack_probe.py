"""Attack probe (issue 19): a bystander streams JFK at real time (3 rounds) while another client
streams 30 s of full-scale white noise at real time and 16 others hold connections that send only
``%c`` (every 5 s, never ``%u``); measured: the bystander's time from its last audio packet to
``%F`` (its final latency from the end of audio), the noise client's ``%f`` -> ``%F``, a fresh
``%c`` probe's answer time, and the server's session counters.  First without the attack, then
with it, on one server (``config_vad.yaml``, default settings).

``--noise pink`` streams pink noise at -20 dBFS instead (it passes the VAD's steady-noise screen
and costs the decoder most), ``--noise-speed 4`` sends it 4 times faster than real time (a
session costing far more than real time: the throttle's case), ``--no-throttle`` turns
``server.throttle_worker_s_per_s`` off for the comparison.

    .venv/bin/python bench/attack_probe.py [--noise white|pink] [--noise-speed X] [--no-throttle]
"""
import argparse
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

async def stream(client, pcm, realtime=True, speed=1.0):
    t0 = time.monotonic()
    for i in range(0, len(pcm), PACKET):
        await client.send_audio(pcm[i:i+PACKET])
        if realtime:
            await asyncio.sleep(max(0.0, t0 + (i + PACKET) / 32000 / speed - time.monotonic()))

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

def noise_pcm(kind, seconds):
    rng = np.random.default_rng(1)
    n = int(16000 * seconds)
    if kind == "white":
        return (rng.uniform(-1, 1, n) * 32767).astype("<i2").tobytes()
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    x = np.fft.irfft(spectrum, n)
    return np.clip(x / np.sqrt(np.mean(x**2)) * 0.1 * 32768, -32768, 32767).astype("<i2").tobytes()

async def noisy(port, seconds, kind="white", speed=1.0):
    pcm = noise_pcm(kind, seconds)
    c = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="noise")
    await c.begin()
    await stream(c, pcm, speed=speed)
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

async def main(port, with_attack, kind="white", speed=1.0):
    stop = asyncio.Event()
    holders = [asyncio.create_task(holder(port, stop)) for _ in range(16 if with_attack else 0)]
    await asyncio.sleep(0.5)
    tasks = [asyncio.create_task(bystander(port, 3))]
    if with_attack:
        tasks.append(asyncio.create_task(noisy(port, 30.0 * speed, kind, speed)))
    await asyncio.sleep(5)
    probe_s, status = await probe(port)
    got = await asyncio.gather(*tasks)
    stop.set()
    await asyncio.gather(*holders)
    return {"bystander_final_s": [round(x[0], 2) for x in got[0]], "bystander_text": got[0][0][1],
            "noise": None if not with_attack else {"finish_after_f_s": round(got[1][0], 2), "texts": got[1][1]},
            "probe_s": round(probe_s, 3), "status_sessions": [l for l in status.splitlines() if l.startswith(("sessions", "decoding"))]}

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--noise", choices=("white", "pink"), default="white")
    p.add_argument("--noise-speed", type=float, default=1.0, help="times real time (the noise lasts 30 s of wall clock)")
    p.add_argument("--no-throttle", action="store_true")
    args = p.parse_args()
    config = ROOT / "config_vad.yaml"
    if args.no_throttle:
        import tempfile
        config = Path(tempfile.mkdtemp()) / "c.yaml"
        config.write_text("server:\n  throttle_worker_s_per_s: null\n", encoding="utf-8")
    with ServerProcess(config=config) as server:
        base = asyncio.run(main(server.port, False))
        attack = asyncio.run(main(server.port, True, args.noise, args.noise_speed))
    print(json.dumps({"machine": machine_info(), "noise": args.noise, "noise_speed": args.noise_speed, "throttle": not args.no_throttle,
                      "baseline": base, "attack": attack}, indent=1))
