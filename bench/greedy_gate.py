#!/usr/bin/env python3
"""A greedy first decode kept when confident: WER and cost over the generalization variants.

The question (issue 17, "a cheaper first decode"): decode each utterance greedily (beam 1) and
keep that text when the decode is confident, else decode it again with the configured beam.  For
each (set, variant) of ``bench/variants.py`` the session is cut by the server's VAD as in
``bench/generalization.py``, and every utterance is decoded **both** ways with the config's engine
options (greedy, then the configured beam size), in one process, with the stream's language kept as
the server keeps it (from the beam decode).  The gate is then applied per utterance for each
threshold, without decoding again: the greedy text is kept when its decode needed one attempt (no
temperature fallback, no wider-window retry), did not hit the time budget or loop, and its average
log-probability (segments weighted by words) is at least the threshold; else the beam text is used.

Cost is **modelled**: the greedy call, plus ``REDECODE_SHARE`` of the beam call when the gate
refuses (the refused decode would re-use the encoder output; the encoder is about 40 % of a call
in ``bench/latency_breakdown.py``), per second of session audio.

    .venv/bin/python bench/greedy_gate.py [--jobs 2] [--sets en,tel] [--variants orig,white10] [--out FILE.json]
    .venv/bin/python bench/greedy_gate.py --from-json FILE.json        # the table again, no decoding
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import corpus_error_rate, load_dir, machine_info  # noqa: E402
from bench.generalization import DEFAULT_CONFIG, DEFAULT_VARIANTS_DIR, SET_LANGUAGE, get_engine, sample_rate_of, variant_dirs  # noqa: E402
from bench.variants import MIX  # noqa: E402
from bench.vad_replay import session_audio  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config, language_policy_from_config, vad_options_from_config  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.core import audio_format  # noqa: E402
from whisper_streaming.core.language import LanguageTracker  # noqa: E402
from whisper_streaming.core.transcript import Transcript  # noqa: E402
from whisper_streaming.engines.base import pcm16_to_float32  # noqa: E402
from whisper_streaming.pipeline.vad import VadSegmenter  # noqa: E402

__all__ = ["UtteranceDecodes", "VariantDecodes", "GateRow", "greedy_kept", "gate_rows", "THRESHOLDS", "REDECODE_SHARE"]

REDECODE_SHARE = 0.6
"""Share of a beam call a refused gate pays on top of the greedy call (the encoder output re-used)."""
THRESHOLDS: tuple[float | None, ...] = (None, -0.3, -0.4, -0.5, float("-inf"))
"""None: never keep the greedy text (the beam decode alone); ``-inf``: always keep it (unless a guard fired)."""


@dataclass(frozen=True)
class UtteranceDecodes:
    """One utterance decoded both ways.  ``greedy_logprob``: the greedy decode's average
    log-probability (segments weighted by their words; None: no segment); ``greedy_clean``: one
    attempt, no loop, within the budget; ``*_s``: wall time of each call (s, one process)."""

    duration_s: float
    greedy_text: str
    greedy_logprob: float | None
    greedy_clean: bool
    greedy_s: float
    beam_text: str
    beam_s: float


@dataclass(frozen=True)
class VariantDecodes:
    """A (set, variant) session: its reference, language, session audio (s) and utterances."""

    set_name: str
    variant: str
    reference: str
    language: str
    audio_s: float
    utterances: list[UtteranceDecodes]


@dataclass(frozen=True)
class GateRow:
    """One threshold over the variants: WER per variant, mean WER per set, modelled ASR s per
    audio s per set, and the share of utterances whose greedy text was kept."""

    threshold: float | None
    wer: dict[str, float]
    mean_wer: dict[str, float]
    asr_per_audio_s: dict[str, float]
    kept_share: float


def _average_logprob(transcript: Transcript) -> float | None:
    weights = [max(len(s.text.split()), 1) for s in transcript.segments]
    if not weights:
        return None
    return sum(s.avg_logprob * w for s, w in zip(transcript.segments, weights)) / sum(weights)


def greedy_kept(u: UtteranceDecodes, threshold: float | None) -> bool:
    """Whether the gate at ``threshold`` keeps ``u``'s greedy text."""
    return threshold is not None and u.greedy_clean and u.greedy_logprob is not None and u.greedy_logprob >= threshold


def gate_rows(variants: list[VariantDecodes], thresholds: tuple[float | None, ...] = THRESHOLDS) -> list[GateRow]:
    """The gate applied at each threshold (no decoding: from the recorded decodes)."""
    rows = []
    for threshold in thresholds:
        wer: dict[str, float] = {}
        per_set: dict[str, list[float]] = {}
        cost: dict[str, list[float]] = {}
        kept = total = 0
        for v in variants:
            texts, spent = [], 0.0
            for u in v.utterances:
                if greedy_kept(u, threshold):
                    texts.append(u.greedy_text)
                    spent += u.greedy_s
                    kept += 1
                elif threshold is None:
                    texts.append(u.beam_text)
                    spent += u.beam_s
                else:
                    texts.append(u.beam_text)
                    spent += u.greedy_s + REDECODE_SHARE * u.beam_s
                total += 1
            _, rate = corpus_error_rate([(v.reference, " ".join(t for t in texts if t))], v.language)
            wer[f"{v.set_name}/{v.variant}"] = rate
            per_set.setdefault(v.set_name, []).append(rate)
            c = cost.setdefault(v.set_name, [0.0, 0.0])
            c[0] += spent
            c[1] += v.audio_s
        rows.append(GateRow(threshold, wer, {s: sum(r) / len(r) for s, r in per_set.items()},
                            {s: c[0] / c[1] for s, c in cost.items() if c[1] > 0}, kept / total if total else 0.0))
    return rows


def measure(set_name: str, variant: str, directory: Path, config_path: Path) -> VariantDecodes:
    """Cut the variant's session with the server's VAD and decode every utterance greedily and with the beam."""
    config = load_config(config_path)
    beam = dataclasses.replace(engine_options_from_config(config), cpu_threads=1)
    greedy = dataclasses.replace(beam, decode=dataclasses.replace(beam.decode, beam_size=1))
    rate = sample_rate_of(directory.parent, set_name)
    files = [f for f in load_dir(directory, sample_rate_hz=rate) if f.reference]
    samples, _ = session_audio(files)
    segmenter = VadSegmenter(dataclasses.replace(vad_options_from_config(config), sample_rate_hz=rate))
    tracker = LanguageTracker(config.model.language, language_policy_from_config(config))
    greedy_engine, beam_engine = get_engine(greedy), get_engine(beam)
    out = []
    for u in segmenter.feed(samples) + segmenter.flush():
        audio = pcm16_to_float32(audio_format.resample(u.samples, u.sample_rate_hz, audio_format.ASR_SAMPLE_RATE_HZ))
        request = tracker.request()
        t0 = time.perf_counter()
        g = greedy_engine.transcribe(audio, language=request)
        t1 = time.perf_counter()
        b = beam_engine.transcribe(audio, language=request)
        t2 = time.perf_counter()
        tracker.observe(b.language, b.language_probability, u.duration_s)
        clean = g.attempts == 1 and not g.loops_seen and not g.timed_out
        out.append(UtteranceDecodes(u.duration_s, g.text, _average_logprob(g), clean, t1 - t0, b.text, t2 - t1))
    return VariantDecodes(set_name, variant, " ".join(f.reference or "" for f in files), SET_LANGUAGE.get(set_name, "en"),
                          len(samples) / rate, out)


def _label(threshold: float | None) -> str:
    if threshold is None:
        return "never (beam only)"
    return "always" if threshold == float("-inf") else f"{threshold:g}"


def print_table(rows: list[GateRow]) -> None:
    sets = sorted({s for r in rows for s in r.mean_wer})
    print("| gate (greedy average log-probability at least) | " + " | ".join(f"{s} mean WER" for s in sets)
          + " | " + " | ".join(f"{s} ASR s / audio s (modelled)" for s in sets) + " | greedy kept |")
    print("|---|" + "---:|" * (2 * len(sets) + 1))
    for r in rows:
        print(f"| {_label(r.threshold)} | " + " | ".join(f"{r.mean_wer[s]:.4f}" for s in sets) + " | "
              + " | ".join(f"{r.asr_per_audio_s[s]:.3f}" for s in sets) + f" | {r.kept_share:.0%} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants-dir", type=Path, default=DEFAULT_VARIANTS_DIR)
    p.add_argument("--sets", default="en,tel")
    p.add_argument("--variants", default=None, help="comma-separated subset (default: every variant but the mix)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each loads two engines, cpu_threads 1)")
    p.add_argument("--from-json", type=Path, default=None, help="print the table of a previous run (no decoding)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        variants = [VariantDecodes(**{**v, "utterances": [UtteranceDecodes(**u) for u in v["utterances"]]}) for v in saved["variants"]]
        print_table(gate_rows(variants))
        return 0
    wanted = [v for v in args.variants.split(",") if v] if args.variants else None
    tasks = [(s, v, args.variants_dir / s / v, args.config) for s in args.sets.split(",") if s
             for v in variant_dirs(args.variants_dir / s, wanted) if v != MIX and (args.variants_dir / s / v).is_dir()]
    if not tasks:
        print(f"nothing to do: no variant directories under {args.variants_dir} (run bench/variants.py first)", file=sys.stderr)
        return 1
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        variants = list(pool.map(measure, *zip(*tasks)))
    print_table(gate_rows(variants))
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine_info(), "config": str(args.config), "redecode_share": REDECODE_SHARE,
                                        "variants": [dataclasses.asdict(v) for v in variants]}, indent=1), encoding="utf-8")
        print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
