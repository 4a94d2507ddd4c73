#!/usr/bin/env python3
"""Streaming WER without the clock: replay a session through the VAD and the engine in-process.

Builds exactly the audio one ``bench/stream_bench.py`` session sends (every file of the
directory, 1.0 s of silence between files, 2.0 s after the last), cuts it with the server's
:class:`~whisper_streaming.vad.VadSegmenter` (same config), transcribes each utterance in
order with the same engine and decode options, and prints the corpus WER.  The server cuts
the same utterances from the same samples and decodes them the same way, so this is the
streaming WER of a one-stream benchmark run (identical transcripts), in seconds instead of
minutes: the tool for tuning endpointing and decoding options for accuracy.  Latency is not
measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, corpus_error_rate, load_dir, machine_info  # noqa: E402
from whisper_streaming.app import engine_options_from_config  # noqa: E402
from whisper_streaming.asr import create_engine, pcm16_to_float32  # noqa: E402
from whisper_streaming.config import load_config  # noqa: E402
from whisper_streaming.server import vad_options_from_config  # noqa: E402
from whisper_streaming.vad import VadSegmenter  # noqa: E402

GAP_S = 1.0
TAIL_S = 2.0
RATE = 16000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--language", default="en", help="language of the references (WER, or CER for ko/ja/zh)")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--verbose", action="store_true", help="print every utterance")
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir, limit=args.files, sample_rate_hz=RATE) if f.reference]
    config = load_config(args.config)
    engine = create_engine(engine_options_from_config(config))
    pcm = bytearray()
    for i, f in enumerate(files):
        pcm += f.pcm + b"\x00\x00" * int(RATE * (GAP_S if i < len(files) - 1 else TAIL_S))
    segmenter = VadSegmenter(vad_options_from_config(config))
    utterances = segmenter.feed(np.frombuffer(bytes(pcm), dtype="<i2")) + segmenter.flush()
    texts, t_asr = [], 0.0
    for u in utterances:
        t0 = time.perf_counter()
        transcript = engine.transcribe(pcm16_to_float32(u.samples))
        t_asr += time.perf_counter() - t0
        texts.append(transcript.text)
        if args.verbose:
            print(f"{u.start_s:7.2f} {u.end_s:7.2f} {u.end_reason.value:10s} {transcript.text}")
    metric, total = corpus_error_rate([(" ".join(f.reference or "" for f in files), " ".join(t for t in texts if t))], args.language)
    audio_s = len(pcm) / 2 / RATE
    report = {"machine": machine_info(), "config": config.model_dump(mode="json"), "audio_dir": str(args.audio_dir),
              metric: total, "utterances": len(utterances), "rtf": t_asr / audio_s, "texts": texts}
    out = args.out or Path(__file__).resolve().parent / "results" / f"vad_replay-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"| files | utterances | streaming {metric.upper()} (replay) | ASR RTF (one process) |\n|---:|---:|---:|---:|\n"
          f"| {len(files)} | {len(utterances)} | {total:.3f} | {t_asr / audio_s:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
