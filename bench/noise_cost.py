#!/usr/bin/env python3
"""What non-speech costs a worker and what text it comes back as (issue 19).

Synthesizes 10 s signals a hostile or broken line sends (white noise at full scale and at
-20 dBFS, pink noise, a 300 Hz tone, 50 Hz mains hum, DTMF digits, synthetic hold music
(:mod:`bench.signals`), babble of the LibriSpeech files of ``tests/data``, JFK gated on and off
every 50 ms), cuts each with the
server's VAD (``--config``, default ``config_vad.yaml``) and transcribes every utterance with
the server's engine and decode options, in this process, one at a time.  Prints a markdown
table: the utterances the VAD gave the engine, the worker seconds they took, the decode
attempts, the utterances the speech screen kept from decoding, and the text.  ``--no-screen``
turns the VAD's steady-noise screen off (``vad.min_dynamic_range_db: null``) and
``--no-speech-screen`` the engine's Silero speech screen (``model.speech_screen_min_audio_s:
null``), for before/after comparisons.

    .venv/bin/python bench/noise_cost.py [--no-screen] [--no-speech-screen] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine_info  # noqa: E402
from bench.signals import dtmf, hold_music, pink_noise  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config, vad_options_from_config  # noqa: E402
from whisper_streaming.client.audio_files import load_pcm16  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.engines.base import pcm16_to_float32  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.pipeline.vad import VadSegmenter, dynamic_range_db  # noqa: E402

RATE = 16000
DATA = ROOT / "tests" / "data"


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (10.0 ** (dbfs / 20.0) / (np.sqrt(np.mean(x**2)) + 1e-12))


def signals(seconds: float = 10.0, seed: int = 3) -> dict[str, np.ndarray]:
    """Float signals in [-1, 1] at 16 kHz, by name."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out: dict[str, np.ndarray] = {"white, full scale": rng.uniform(-1, 1, n), "white, -20 dBFS": _level(rng.standard_normal(n), -20)}
    out["pink, -20 dBFS"] = _level(pink_noise(n, rng), -20)
    out["300 Hz tone"] = 0.3 * np.sin(2 * np.pi * 300 * t)
    out["50 Hz hum"] = _level(sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)), -20)
    out["DTMF, 12 digits"] = dtmf("159D" * 3)
    out["hold music (synthetic)"] = hold_music(seconds)
    talkers = sorted(DATA.glob("librispeech_*.wav"))
    babble = np.zeros(n)
    for path in talkers:
        x = load_pcm16(path).astype(np.float64) / 32768.0
        babble += _level(np.tile(x, -(-n // len(x)))[:n], -26)
    out[f"babble of {len(talkers)}"] = babble
    jfk = load_pcm16(DATA / "jfk.wav").astype(np.float64) / 32768.0
    out["JFK gated every 50 ms"] = jfk * ((np.arange(len(jfk)) // (RATE // 20)) % 2 == 0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "config_vad.yaml")
    p.add_argument("--no-screen", action="store_true", help="vad.min_dynamic_range_db: null (before the screen)")
    p.add_argument("--no-speech-screen", action="store_true", help="model.speech_screen_min_audio_s: null (every utterance decoded)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    config = load_config(args.config)
    vad = dataclasses.replace(vad_options_from_config(config), sample_rate_hz=RATE)
    if args.no_screen:
        vad = dataclasses.replace(vad, min_dynamic_range_db=None)
    options = engine_options_from_config(config)
    if args.no_speech_screen:
        options = dataclasses.replace(options, speech_screen=None)
    engine = create_engine(options)
    rows = []
    for name, x in signals().items():
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        segmenter = VadSegmenter(vad)
        utterances = segmenter.feed(pcm) + segmenter.flush()
        worker_s, attempts, texts, not_decoded = 0.0, 0, [], 0
        for u in utterances:
            t0 = time.perf_counter()
            transcript = engine.transcribe(pcm16_to_float32(u.samples))
            worker_s += time.perf_counter() - t0
            attempts += transcript.attempts
            not_decoded += transcript.no_speech_screened
            texts.append(transcript.text)
        rows.append({"signal": name, "audio_s": round(len(pcm) / RATE, 2), "span_db": round(dynamic_range_db(pcm, vad.frame_samples), 1),
                     "utterances": len(utterances), "screened": segmenter.steady_discarded, "speech_screened": not_decoded,
                     "worker_s": round(worker_s, 2),
                     "attempts": attempts, "texts": texts})
    print(f"screen: {'off' if args.no_screen else f'on ({vad.min_dynamic_range_db} dB)'}; "
          f"speech screen: {'off' if options.speech_screen is None else 'on'}\n")
    print("| signal | audio (s) | level span (dB) | utterances to the engine | screened | not decoded (speech screen) | worker s | attempts | text |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        text = " / ".join(t for t in r["texts"] if t)[:70] or "(none)"
        print(f"| {r['signal']} | {r['audio_s']} | {r['span_db']} | {r['utterances']} | {r['screened']} | {r['speech_screened']} | {r['worker_s']} "
              f"| {r['attempts']} | {text} |")
    out = args.out or ROOT / "bench" / "results" / f"noise_cost-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "screen": not args.no_screen,
                                "speech_screen": options.speech_screen is not None, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
