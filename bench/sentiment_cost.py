#!/usr/bin/env python3
"""Sentiment cost: the latency each engine adds to every final result, and its load cost.

The sentiment runs in the ASR worker right after the transcription, in the same process and
thread, so what it adds to a result's latency is the engine's call time (plus pickling a small
dataclass).  Two measurements per engine:

* **engine**: in a fresh process with 1 thread (as a worker runs with ``model.cpu_threads: 1``):
  import + load time, RSS added, and the per-call time over the reference texts of the audio
  directory (each ``--repeats`` times, after one warm-up pass);
* **pool** (``--pool``): the real :class:`~whisper_streaming.backends.pool.ProcessPool` with the real ASR
  (the config's model, 1 worker) on the first ``--files`` files, sentiment asked for every
  utterance: the worker-measured sentiment time per result next to the utterance's whole
  submit-to-result time.

Engines: ``vader``; ``transformers`` on the tiny local DistilBERT of the tests (2 layers, 32
wide); ``transformers`` on a DistilBERT with the shape of
``distilbert-base-uncased-finetuned-sst-2-english`` (6 layers, 768 wide, 66 M parameters) but
random weights: the real model cannot be downloaded on this machine, and its speed does not
depend on the weights.  Prints a markdown table and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import DEFAULT_AUDIO_DIR, load_dir, machine_info, percentile  # noqa: E402
from whisper_streaming.analyzers.sentiment import SentimentOptions  # noqa: E402

ENGINES = ("vader", "transformers-tiny", "transformers-distilbert-base-shape")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure_engine(options: SentimentOptions, texts: list[str], repeats: int) -> dict[str, object]:
    """Runs in a fresh spawned process."""
    from whisper_streaming.analyzers.sentiment import analyze
    from whisper_streaming.analyzers.sentiment_registry import create_sentiment_engine

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    engine = create_sentiment_engine(options)
    load_s = time.perf_counter() - t0
    for text in texts:  # warm-up
        analyze(engine, text, "en")
    times = []
    for _ in range(repeats):
        for text in texts:
            t = time.perf_counter()
            analyze(engine, text, "en")
            times.append(time.perf_counter() - t)
    ms = [1000 * x for x in times]
    return {"load_s": load_s, "rss_added_mb": _rss_mb() - rss0, "calls": len(ms), "median_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95), "max_ms": max(ms), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


async def _measure_pool(options: SentimentOptions, pcms: list[bytes], config_path: Path) -> dict[str, object]:
    from whisper_streaming.app.wiring import engine_options_from_config, pool_options_from_config
    from whisper_streaming.config.schema import load_config, with_overrides
    from whisper_streaming.analyzers.sentiment_registry import sentiment_analyzer_spec
    from whisper_streaming.backends.base import UtteranceJob
    from whisper_streaming.backends.pool import ProcessPool

    config = with_overrides(load_config(config_path), **{"model.channel": 1, "model.language": "en"})
    pool_options = pool_options_from_config(config, engine_options_from_config(config))
    pool = ProcessPool(dataclasses.replace(pool_options, analyzers=(sentiment_analyzer_spec(options),)))
    await pool.start()
    try:
        rows = []
        for pcm in pcms:
            t0 = time.perf_counter()
            got = await (await pool.submit("bench", UtteranceJob(pcm, analyses=frozenset({"sentiment"}))))
            sentiment = got.annotations.get("sentiment")
            rows.append({"total_ms": 1000 * (time.perf_counter() - t0), "sentiment_ms": 1000 * got.analysis_s,
                         "label": sentiment.label if sentiment else None})
    finally:
        await pool.close()
    s_ms = [r["sentiment_ms"] for r in rows]
    total = [r["total_ms"] for r in rows]
    return {"utterances": len(rows), "sentiment_median_ms": percentile(s_ms, 50), "sentiment_p95_ms": percentile(s_ms, 95),
            "total_median_ms": percentile(total, 50), "share_of_total": sum(s_ms) / sum(total)}


def _options(name: str, workdir: Path, words: tuple[str, ...]) -> SentimentOptions:
    if name == "vader":
        return SentimentOptions(engine="vader", threads=1)
    from tiny_classifier import build_tiny_classifier

    dims = "tiny" if name == "transformers-tiny" else "base"
    path = build_tiny_classifier(workdir / name, dims=dims, extra_words=words)
    return SentimentOptions(engine="transformers", model=str(path), threads=1, languages=("en",))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--repeats", type=int, default=5, help="passes over the texts per engine (default 5)")
    p.add_argument("--pool", action="store_true", help="also measure through the real worker pool with the real ASR")
    p.add_argument("--files", type=int, default=10, help="files for --pool (default 10)")
    p.add_argument("--config", type=Path, default=ROOT / "config_vad.yaml")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir) if f.reference]
    texts = [f.reference or "" for f in files]
    words = tuple(sorted({w.strip(".,;:!?\"'()").lower() for t in texts for w in t.split()}))
    ctx = multiprocessing.get_context("spawn")
    report: dict[str, object] = {"machine": machine_info(), "audio_dir": str(args.audio_dir), "texts": len(texts),
                                 "mean_words": sum(len(t.split()) for t in texts) / max(1, len(texts)), "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.engines:
            options = _options(name, Path(tmp), words)
            with ctx.Pool(1) as pool:
                row = pool.apply(_measure_engine, (options, texts, args.repeats))
            if args.pool:
                row["pool"] = asyncio.run(_measure_pool(options, [f.pcm for f in files[: args.files]], args.config))
            report["engines"][name] = row  # type: ignore[index]
            print(f"{name}: {row}", file=sys.stderr, flush=True)
    out = args.out or ROOT / "bench" / "results" / f"sentiment_cost-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores; {len(texts)} texts, {report['mean_words']:.1f} words on average; 1 thread")  # type: ignore[index]
    print("\n| engine | load (s) | RSS added (MB) | per result, median (ms) | p95 (ms) | max (ms) |" + (" in the pool: median (ms) | share of the utterance's latency |" if args.pool else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.pool else ""))
    for name, row in report["engines"].items():  # type: ignore[union-attr]
        line = f"| {name} | {row['load_s']:.2f} | {row['rss_added_mb']:.0f} | {row['median_ms']:.3f} | {row['p95_ms']:.3f} | {row['max_ms']:.3f} |"
        if "pool" in row:
            line += f" {row['pool']['sentiment_median_ms']:.3f} | {100 * row['pool']['share_of_total']:.2f} % |"
        print(line)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
