#!/usr/bin/env python3
"""Offline baseline: the same files through the same engine and config, as whole files.

No VAD, no streaming: each file is transcribed in one call inside this process, so every
streaming report (``bench/stream_bench.py``) can show streaming WER next to offline WER.
The error rate is computed the same way as the streaming one: all files of the directory
concatenated (corpus WER; CER for ko/ja/zh), plus per file. Prints a markdown table and
writes JSON.  :func:`transcribe_file` (one file, one engine call) is importable;
``bench/generalization.py`` uses it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, SpeechFile, corpus_error_rate, error_rate, load_dir, machine_info  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config  # noqa: E402
from whisper_streaming.engines.base import AsrEngine, pcm16_to_float32  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402


def transcribe_file(engine: AsrEngine, f: SpeechFile, language: str) -> dict[str, object]:
    """One whole file (16 kHz) in one engine call: ``{file, duration_s, seconds, wer|cer, text}``."""
    if f.sample_rate_hz != 16000:
        raise ValueError(f"{f.name}: the engine takes 16 kHz, got {f.sample_rate_hz} Hz")
    t0 = time.perf_counter()
    transcript = engine.transcribe(pcm16_to_float32(f.pcm))
    elapsed = time.perf_counter() - t0
    metric, rate = error_rate(f.reference or "", transcript.text, language)
    return {"file": f.name, "duration_s": f.duration_s, "seconds": elapsed, metric: rate, "text": transcript.text}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--language", default="en")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir, limit=args.files) if f.reference]
    config = load_config(args.config)
    engine = create_engine(engine_options_from_config(config))
    rows, t_all = [], 0.0
    for f in files:
        row = transcribe_file(engine, f, args.language)
        t_all += float(row["seconds"])  # type: ignore[arg-type]
        rows.append(row)
    metric, total = corpus_error_rate([(" ".join(f.reference or "" for f in files), " ".join(r["text"] for r in rows))], args.language)
    audio_s = sum(f.duration_s for f in files)
    report = {"machine": machine_info(), "config": config.model_dump(mode="json"), "audio_dir": str(args.audio_dir),
              metric: total, "rtf": t_all / audio_s, "audio_s": audio_s, "files": rows}
    out = args.out or Path(__file__).resolve().parent / "results" / f"offline_wer-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    m, c = report["machine"], config.model
    print(f"machine: {m['cpu']}, {m['cores']} cores; model {c.size} ({c.engine}, {c.device}, {c.compute_type}, beam {c.beam_size})")
    print(f"| files | audio (s) | offline {metric.upper()} | RTF (one process) |\n|---:|---:|---:|---:|\n| {len(files)} | {audio_s:.1f} | {total:.3f} | {t_all / audio_s:.3f} |")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
