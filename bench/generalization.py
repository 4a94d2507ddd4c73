#!/usr/bin/env python3
"""Generalization: streaming against offline WER on every variant of ``bench/variants.py``.

For each set (``en``, ``tel``) and each variant directory under ``--variants-dir``
(``<dir>/<set>/<variant>/*.wav`` with ``.txt`` references, as ``bench/variants.py`` writes):

- **streaming WER** by the ``bench/vad_replay.py`` method: one session's audio (every file,
  1.0 s of digital silence between files, 2.0 s after the last) at the set's native rate, cut
  by the server's :class:`~whisper_streaming.pipeline.vad.VadSegmenter` running at that rate (``tel``:
  8 kHz, as for a ``%o sample_rate=8000`` stream), each utterance resampled to 16 kHz exactly as
  the server does (``Transcribe.asr_samples``) and transcribed in order with the engine and
  decode options of ``--config`` (``model.language: null`` = detected once per stream and kept, as the
  server does).  Corpus WER of the joined transcript against the joined references;
- **offline WER**: each whole file at 16 kHz through the same model in one call, with the
  set's language given (``en`` for both sets): the offline baseline is "whole files, same
  model, language given".  Cached per file in ``--cache`` under (file path, file SHA-1, engine
  and decode options except ``cpu_threads``), so a rerun that only changes VAD settings skips it;
- ASR seconds per second of session audio (gaps included, as ``vad_replay.py``), utterances,
  and the ratio streaming / offline.

Prints a markdown table per set with a MEAN row (mean of the WERs and mean of the ratios over
the variants; ``mix`` is left out of the MEAN because it repeats the other variants' files) and
writes JSON (machine, config, options, and per variant the per-file references, streaming and
offline hypotheses and WERs, and every utterance with its times and text).  Utterances are
assigned to the file they overlap most, for the per-file view only: the headline WER is the
corpus one, so an utterance that straddles two files is not misassigned there.

One engine per process and decode configuration: the streaming engine (``--config`` as is) and,
when the config does not already give the set's language, a second one for the offline
baseline (built only if the cache misses).  ``--jobs 2`` runs the (set, variant) pairs in
2 worker processes, each with its own engines at ``cpu_threads`` 1 (with ``--jobs 1``, the
config's ``cpu_threads``).

    .venv/bin/python bench/variants.py            # build the variants first
    .venv/bin/python bench/generalization.py [--jobs 2] [--sets en,tel] [--variants orig,white10]
        [--files N] [--no-offline] [--config config_vad.yaml] [--variants-dir DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SpeechFile, corpus_error_rate, error_rate, load_dir, machine_info  # noqa: E402
from bench.offline_wer import transcribe_file  # noqa: E402
from bench.vad_replay import Replay, replay  # noqa: E402
from bench.variants import DEFAULT_OUT as DEFAULT_VARIANTS_DIR  # noqa: E402
from bench.variants import EXTRA_VARIANTS, MIX, SETS, VARIANTS  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config  # noqa: E402
from whisper_streaming.engines.base import AsrEngine, EngineOptions  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.core.language import LanguagePolicy, LanguageTracker  # noqa: E402
from whisper_streaming.app.wiring import language_policy_from_config, vad_options_from_config  # noqa: E402
from whisper_streaming.pipeline.vad import VadOptions  # noqa: E402

SET_LANGUAGE = {"en": "en", "tel": "en"}
"""Language of each set's references (the offline baseline is given it); other sets: ``en``."""
DEFAULT_CACHE = Path(__file__).resolve().parent / "results" / "generalization-offline-cache.json"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config_vad.yaml"
VARIANT_ORDER = (*VARIANTS, MIX, *EXTRA_VARIANTS)


@dataclass(frozen=True)
class Task:
    """One (set, variant) directory to measure; picklable, for the worker processes."""

    set_name: str
    variant: str
    directory: Path
    sample_rate_hz: int
    language: str
    files: int | None
    streaming_options: EngineOptions
    offline_options: EngineOptions | None  # None: --no-offline
    vad_options: VadOptions
    offline_cache: dict[str, dict[str, object]]
    stream_language: str | None = None  # model.language: None = detected once per stream, then kept
    language_policy: LanguagePolicy = LanguagePolicy()


_ENGINES: dict[EngineOptions, AsrEngine] = {}


def get_engine(options: EngineOptions) -> AsrEngine:
    """This process's engine for ``options``, loaded on first use."""
    if options not in _ENGINES:
        _ENGINES[options] = create_engine(options)
    return _ENGINES[options]


def options_key(options: EngineOptions) -> dict[str, object]:
    """What decides a transcript: the engine options without ``cpu_threads``."""
    d = dataclasses.asdict(options)
    d.pop("cpu_threads", None)
    return d


def offline_key(path: Path, options: EngineOptions) -> str:
    """Cache key of one file's offline transcript: path, content hash, engine/decode options."""
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    return json.dumps({"path": str(path.resolve()), "sha1": digest, "options": options_key(options)}, sort_keys=True)


def file_of_utterances(result: Replay) -> list[int]:
    """For each utterance, the index of the file its speech overlaps most (nearest if none)."""
    out = []
    for ru in result.utterances:
        u = ru.utterance
        s, e = u.speech_start_sample, u.speech_end_sample
        overlaps = [max(0, min(e, fe) - max(s, fs)) for fs, fe in result.file_spans]
        if overlaps and max(overlaps) > 0:
            out.append(int(np.argmax(overlaps)))
        else:
            out.append(int(np.argmin([min(abs(s - fe), abs(e - fs)) for fs, fe in result.file_spans])))
    return out


def measure_streaming(task: Task, files: list[SpeechFile]) -> dict[str, object]:
    """Streaming WER of ``files`` by the vad_replay method, with per-file and per-utterance detail."""
    tracker = LanguageTracker(task.stream_language, task.language_policy)
    result = replay(files, get_engine(task.streaming_options), task.vad_options, tracker)
    owner = file_of_utterances(result)
    per_file = []
    for i, f in enumerate(files):
        text = " ".join(ru.text for ru, k in zip(result.utterances, owner) if k == i and ru.text)
        metric, rate = error_rate(f.reference or "", text, task.language)
        per_file.append({"file": f.name, "duration_s": f.duration_s, "text": text, metric: rate})
    metric, total = corpus_error_rate([(" ".join(f.reference or "" for f in files), result.text)], task.language)
    return {
        "metric": metric, "error_rate": total, "utterances": len(result.utterances), "asr_s": result.asr_s,
        "session_s": result.audio_s, "asr_per_audio_s": result.asr_s / result.audio_s if result.audio_s else None,
        "files": per_file,
        "utterance_log": [{"start_s": ru.utterance.start_s, "end_s": ru.utterance.end_s, "end_reason": ru.utterance.end_reason.value,
                           "file": files[k].name, "asr_s": ru.asr_s, "text": ru.text} for ru, k in zip(result.utterances, owner)],
    }


def measure_offline(task: Task) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """Offline WER (whole files at 16 kHz, language given); returns the result and new cache entries."""
    assert task.offline_options is not None
    files = [f for f in load_dir(task.directory, limit=task.files, sample_rate_hz=16000) if f.reference]
    rows, new, hits = [], {}, 0
    for f in files:
        key = offline_key(task.directory / f.name, task.offline_options)
        if key in task.offline_cache:
            row, hits = dict(task.offline_cache[key]), hits + 1
        else:
            row = transcribe_file(get_engine(task.offline_options), f, task.language)
            new[key] = row
        rows.append(row)
    metric, total = corpus_error_rate([(" ".join(f.reference or "" for f in files), " ".join(str(r["text"]) for r in rows))], task.language)
    audio_s = sum(f.duration_s for f in files)
    asr_s = sum(float(r["seconds"]) for r in rows)  # type: ignore[arg-type]
    return {"metric": metric, "error_rate": total, "cached_files": hits, "asr_s": asr_s,
            "asr_per_audio_s": asr_s / audio_s if audio_s else None, "files": rows}, new


def run_task(task: Task) -> dict[str, object]:
    """Measure one (set, variant): streaming, then offline unless disabled."""
    t0 = time.perf_counter()
    files = [f for f in load_dir(task.directory, limit=task.files, sample_rate_hz=task.sample_rate_hz) if f.reference]
    out: dict[str, object] = {"set": task.set_name, "variant": task.variant, "directory": str(task.directory),
                              "sample_rate_hz": task.sample_rate_hz, "language": task.language, "files": len(files),
                              "audio_s": sum(f.duration_s for f in files)}
    if not files:
        out.update(streaming=None, offline=None, ratio=None, new_cache={}, seconds=time.perf_counter() - t0)
        return out
    streaming = measure_streaming(task, files)
    for row, f in zip(streaming["files"], files):  # type: ignore[call-overload]
        row["reference"] = f.reference
    offline, new = measure_offline(task) if task.offline_options is not None else (None, {})
    out.update(streaming=streaming, offline=offline, ratio=ratio(streaming["error_rate"], offline["error_rate"] if offline else None),  # type: ignore[arg-type]
               new_cache=new, seconds=time.perf_counter() - t0)
    return out


def ratio(streaming: float, offline: float | None) -> float | None:
    """streaming / offline; 1.0 when both are 0, None when only offline is 0 (or missing)."""
    if offline is None:
        return None
    if offline == 0:
        return 1.0 if streaming == 0 else None
    return streaming / offline


def sample_rate_of(directory: Path, set_name: str) -> int:
    """The set's native rate: from ``bench/variants.py``'s table, else from its first WAV."""
    if set_name in SETS:
        return SETS[set_name][1]
    import soundfile

    first = next(iter(sorted(directory.rglob("*.wav"))), None)
    return int(soundfile.info(str(first)).samplerate) if first else 16000


def variant_dirs(set_dir: Path, wanted: list[str] | None) -> list[str]:
    """Variant names to run: ``wanted`` (in that order), or every subdirectory, known ones first."""
    present = sorted(p.name for p in set_dir.iterdir() if p.is_dir()) if set_dir.is_dir() else []
    if wanted:
        return wanted
    order = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return sorted(present, key=lambda v: (order.get(v, len(order)), v))


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def print_table(set_name: str, rows: list[dict[str, object]], header: str) -> dict[str, object]:
    """One markdown table for a set; returns its MEAN row."""
    metric = next((r["streaming"]["metric"] for r in rows if r["streaming"]), "wer")  # type: ignore[index]
    m = str(metric).upper()
    print(f"\n### {set_name}: {header}\n")
    print(f"| variant | files | audio (s) | utterances | streaming {m} | offline {m} | streaming / offline | ASR s / audio s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s, o = r["streaming"], r["offline"]
        print(f"| {r['variant']} | {r['files']} | {r['audio_s']:.1f} | {s['utterances'] if s else '–'} | "  # type: ignore[index]
              f"{fmt(s['error_rate'] if s else None)} | {fmt(o['error_rate'] if o else None)} | {fmt(r['ratio'], 2)} | "  # type: ignore[index]
              f"{fmt(s['asr_per_audio_s'] if s else None)} |")  # type: ignore[index]
    counted = [r for r in rows if r["variant"] != MIX and r["streaming"]]
    s_mean = float(np.mean([r["streaming"]["error_rate"] for r in counted])) if counted else None  # type: ignore[index]
    off = [r["offline"]["error_rate"] for r in counted if r["offline"]]  # type: ignore[index]
    ratios = [r["ratio"] for r in counted if r["ratio"] is not None]
    mean = {"variants": [r["variant"] for r in counted], "streaming": s_mean, "offline": float(np.mean(off)) if off else None,
            "ratio": float(np.mean(ratios)) if ratios else None, "ratios_counted": len(ratios)}
    partial = f" ({len(ratios)} of {len(counted)}: offline 0)" if len(ratios) < len(counted) and off else ""
    print(f"| **MEAN** ({len(counted)} variants{', mix excluded' if any(r['variant'] == MIX for r in rows) else ''}) | | | | "
          f"**{fmt(mean['streaming'])}** | **{fmt(mean['offline'])}** | **{fmt(mean['ratio'], 2)}**{partial} | |")
    return mean


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants-dir", type=Path, default=DEFAULT_VARIANTS_DIR, help="bench/variants.py's --out")
    p.add_argument("--sets", default="en,tel")
    p.add_argument("--variants", default=None, help="comma-separated subset (default: every variant directory found)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--files", type=int, default=None, help="only the first N files of each variant (quick checks)")
    p.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True, help="offline baseline (default on)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="offline transcript cache (JSON)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each loads its own engine, cpu_threads 1)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    config = load_config(args.config)
    base = engine_options_from_config(config)
    if args.jobs > 1:
        base = dataclasses.replace(base, cpu_threads=1)
    vad = vad_options_from_config(config)
    cache: dict[str, dict[str, object]] = {}
    if args.offline and args.cache.exists():
        cache = json.loads(args.cache.read_text(encoding="utf-8"))
    tasks: list[Task] = []
    wanted = [v for v in args.variants.split(",") if v] if args.variants else None
    for set_name in [s for s in args.sets.split(",") if s]:
        set_dir = args.variants_dir / set_name
        language = SET_LANGUAGE.get(set_name, "en")
        offline = dataclasses.replace(base, decode=dataclasses.replace(base.decode, language=language)) if args.offline else None
        for variant in variant_dirs(set_dir, wanted):
            directory = set_dir / variant
            if not directory.is_dir():
                print(f"skip {set_name}/{variant}: no directory {directory} (run bench/variants.py)", file=sys.stderr)
                continue
            tasks.append(Task(set_name, variant, directory, sample_rate_of(set_dir, set_name), language, args.files,
                              base, offline, vad, cache, config.model.language, language_policy_from_config(config)))
    if not tasks:
        print(f"nothing to do: no variant directories under {args.variants_dir} (run bench/variants.py first)", file=sys.stderr)
        return 1
    t_start = time.perf_counter()
    results: list[dict[str, object]] = []

    def done(r: dict[str, object]) -> None:
        results.append(r)
        s, o = r["streaming"], r["offline"]
        print(f"  {r['set']}/{r['variant']}: {r['files']} files, streaming {fmt(s['error_rate'] if s else None)}, "  # type: ignore[index]
              f"offline {fmt(o['error_rate'] if o else None)} ({r['seconds']:.1f} s)", file=sys.stderr)

    if args.jobs == 1:
        for t in tasks:
            done(run_task(t))
    else:
        # spawn: each worker imports this script afresh and loads its own engines
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_task, t) for t in sorted(tasks, key=lambda t: -len(list(t.directory.glob("*.wav"))))]
            for fut in as_completed(futures):
                done(fut.result())
    wall_s = time.perf_counter() - t_start
    new_entries = {k: v for r in results for k, v in r.pop("new_cache").items()}  # type: ignore[attr-defined]
    if args.offline and new_entries:
        cache.update(new_entries)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_text(json.dumps(cache, indent=1, ensure_ascii=False), encoding="utf-8")
    order = {(t.set_name, t.variant): i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: order[(r["set"], r["variant"])])  # type: ignore[index]
    m, c = machine_info(), config.model
    print(f"machine: {m['cpu']}, {m['cores']} cores; model {c.size} ({c.engine}, {c.device}, {c.compute_type}, beam {c.beam_size}, "
          f"encoder_window_pad_s {c.encoder_window_pad_s}); streaming language {c.language or 'detected'}, offline language given; "
          f"{args.jobs} job(s), {wall_s:.0f} s")
    means = {}
    for set_name in dict.fromkeys(t.set_name for t in tasks):
        rows = [r for r in results if r["set"] == set_name]
        header = f"{rows[0]['sample_rate_hz']} Hz, {args.variants_dir / set_name}" + (f", first {args.files} files" if args.files else "")
        means[set_name] = print_table(set_name, rows, header)
    report = {"machine": m, "config": config.model_dump(mode="json"), "engine_options": dataclasses.asdict(base),
              "vad_options": dataclasses.asdict(vad), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "wall_s": wall_s, "mean": means, "results": results}
    out = args.out or Path(__file__).resolve().parent / "results" / f"generalization-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nJSON: {out}" + (f"; offline cache: {args.cache} (+{len(new_entries)} files)" if args.offline else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
