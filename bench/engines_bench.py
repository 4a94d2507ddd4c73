#!/usr/bin/env python3
"""Engines side by side: faster-whisper vs openai-whisper on the same weights and files.

The same bundled Whisper base weights for every engine: faster-whisper loads the CTranslate2
directory (``compute_type`` float32, and int8, the server's default); openai-whisper loads the
same model converted to a ``.pt`` (``python -m whisper_streaming.models convert``), on CPU in
fp32.  Every engine encodes Whisper's full 30 s window, as openai-whisper always does; one more
row shows faster-whisper with the server's trimmed window (``encoder_window_pad_s``), which
openai-whisper cannot do.  Every file of the directory with a reference is transcribed whole,
in this process, one engine after the other, with the same thread count and the server's
default decoding options (beam 5, temperature fallback, hallucination guards, language given).  Reports the real-time factor (transcription
seconds / audio seconds, after one warm-up call), the corpus WER (Whisper's English
normalizer), and for each engine the speed ratio to openai-whisper.  One run; prints a
markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, corpus_error_rate, error_rate, load_dir, machine_info  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.engines.base import pcm16_to_float32  # noqa: E402
from whisper_streaming.config.schema import parse_config  # noqa: E402
from whisper_streaming.models.resolve import assemble_bundled_base, converted_bundled_base  # noqa: E402

ENGINES = ("openai-whisper:float32", "faster-whisper:float32", "faster-whisper:int8", "faster-whisper:int8:3")
REFERENCE = "openai-whisper:float32"


def run_engine(spec: str, files: list, language: str, threads: int) -> dict:
    """``spec`` is ENGINE:COMPUTE_TYPE[:ENCODER_WINDOW_PAD_S] (no pad: the full 30 s window)."""
    engine_name, compute_type, *pad = spec.split(":")
    config = {"language": language, "cpu_threads": threads, "encoder_window_pad_s": float(pad[0]) if pad else None}
    base = engine_options_from_config(parse_config({"model": config}))
    model = str(converted_bundled_base()) if engine_name == "openai-whisper" else str(assemble_bundled_base())
    options = dataclasses.replace(base, engine=engine_name, model=model, compute_type=compute_type)
    t0 = time.perf_counter()
    engine = create_engine(options)
    load_s = time.perf_counter() - t0
    engine.transcribe(pcm16_to_float32(files[0].pcm[: 2 * 16000 * 3]))  # warm-up: first 3 s
    rows, total_s = [], 0.0
    for f in files:
        t0 = time.perf_counter()
        transcript = engine.transcribe(pcm16_to_float32(f.pcm))
        elapsed = time.perf_counter() - t0
        total_s += elapsed
        metric, rate = error_rate(f.reference or "", transcript.text, language)
        rows.append({"file": f.name, "duration_s": f.duration_s, "seconds": elapsed, metric: rate, "text": transcript.text})
        print(f"  {spec} {f.name}: {elapsed:.2f} s, {metric} {rate:.3f}", file=sys.stderr)
    metric, total = corpus_error_rate([(f.reference or "", r["text"]) for f, r in zip(files, rows)], language)
    audio_s = sum(f.duration_s for f in files)
    return {"engine": engine_name, "compute_type": compute_type, "window": f"utterance + {pad[0]} s" if pad else "30 s",
            "options": dataclasses.asdict(options), "load_s": load_s,
            "seconds": total_s, "audio_s": audio_s, "rtf": total_s / audio_s, metric: total, "metric": metric, "files": rows}


def table(results: list[dict]) -> str:
    ref = next((r for r in results if f"{r['engine']}:{r['compute_type']}" == REFERENCE), results[0])
    metric = ref["metric"]
    lines = [
        f"| engine | weights | compute | encoder window | RTF | speed vs openai-whisper | {metric.upper()} | {metric.upper()} − openai-whisper | load (s) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        weights = "base .pt (converted)" if r["engine"] == "openai-whisper" else "base CTranslate2 (float16 on disk)"
        lines.append(
            f"| {r['engine']} | {weights} | {r['compute_type']} | {r['window']} | {r['rtf']:.3f} | {ref['rtf'] / r['rtf']:.2f}× | "
            f"{r[metric]:.3f} | {r[metric] - ref[metric]:+.3f} | {r['load_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None, help="first N files only")
    p.add_argument("--language", default="en")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cpu_threads for every engine (default: all cores)")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), help="ENGINE:COMPUTE_TYPE[:PAD_S], default: %(default)s")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir, limit=args.files) if f.reference]
    if not files:
        print(f"no audio files with references in {args.audio_dir}", file=sys.stderr)
        return 1
    results = [run_engine(spec, files, args.language, args.threads) for spec in args.engines]
    report = {"machine": machine_info(), "audio_dir": str(args.audio_dir), "n_files": len(files), "threads": args.threads, "results": results}
    out = args.out or Path(__file__).resolve().parent / "results" / f"engines-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {len(files)} files, "
          f"{results[0]['audio_s']:.1f} s of audio ({args.audio_dir.name}), {args.threads} threads, beam 5, language {args.language}")
    print(table(results))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
