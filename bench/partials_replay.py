#!/usr/bin/env python3
"""Partial hypotheses without the clock: replay one session through the real session and engine.

Builds the audio one ``bench/stream_bench.py`` session sends (``bench/vad_replay.py``
:func:`~bench.vad_replay.session_audio`: every file, 1.0 s of silence between files, 2.0 s
after the last), feeds it in 0.1 s chunks to a real
:class:`~whisper_streaming.pipeline.session.Session` (options from ``--config``, the stream
opted in with ``%o partials=1``) and carries out its actions with the real engine, on a
simulated clock in which sample ``s`` is sent at ``s / rate`` seconds:

* a :class:`~whisper_streaming.pipeline.session.DecodePartial` is decoded at once
  (``engine.transcribe(..., minimal=True)``, the greedy decode the workers run for partials)
  when the simulated pool has room (the server's rule: nothing queued, two idle workers;
  ``--workers``, default ``model.channel``), else refused (``partial_refused``).  Its result
  "arrives" at the audio time it was offered plus its measured decode time, and only then is
  ``partial_done`` called (with that decode time), so a partial overtaken by its utterance's
  endpoint is dropped as on the server;
* a :class:`~whisper_streaming.pipeline.session.Transcribe` is decoded normally on the first
  free simulated worker (a :class:`~whisper_streaming.pipeline.session.Speculate` that had room
  is decoded when offered and claimed like on the server) and answered at its simulated finish;
* everything the session delivers is recorded with its simulated time.

Measured (:func:`partial_metrics`, shared with ``bench/stream_bench.py --partials``): time to
first partial from the utterance's first voiced sample (p50/p95, over utterances whose final
spans more than 3 s and over all), normalized erasure (Arivazhagan et al. 2020, arXiv
2004.03643: display units deleted from the end of the shown text between consecutive updates,
summed, over the units of the finals; units are normalized words, characters for ja/zh) of the
whole display (each ``%P``'s stable+unstable, then the final) and of the stable part (between
``%P``s: 0 when the stable prefix only grows), the share of finals that do not start with their
utterance's last stable prefix, coverage (utterances with a final longer than ``first_after_s``
+ 0.5 s that showed a non-empty partial), and the WER of the finals.  ``--first-after-s``,
``--min-interval-s``, ``--cost-factor`` override the ``partials`` section for tuning.  Output:
a markdown table and a JSON file under ``bench/results/``.  Decode times are this process's
(one engine, ``model.cpu_threads`` threads), the cost of one worker on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, corpus_error_rate, display_units, erased_units, load_dir, machine_info, percentile  # noqa: E402
from bench.vad_replay import session_audio  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config, session_options_from_config  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.core.results import FinalResult, PartialHypothesis  # noqa: E402
from whisper_streaming.engines.base import AsrEngine, pcm16_to_float32  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.pipeline.commands import AudioChunk, BeginStream, FinishStream, Identify, OptionsSet, SetOptions  # noqa: E402
from whisper_streaming.pipeline.partials import PartialPolicy  # noqa: E402
from whisper_streaming.pipeline.session import (  # noqa: E402
    CancelSpeculation,
    DecodePartial,
    Deliver,
    Session,
    Speculate,
    Transcribe,
)

__all__ = ["UtteranceTrace", "partial_metrics", "partial_markdown", "replay_partials", "PARTIAL_TABLE_HEADER"]

CHUNK_S = 0.1
LONG_S = 3.0  # the done-when bound is about utterances longer than this


# ---------------------------------------------------------------------------- metrics (shared with stream_bench)


@dataclass
class UtteranceTrace:
    """What a client saw of one utterance: its partials (arrival time, stable, unstable) and its
    final (None: the utterance ended with no text), on one clock with ``voiced_at``, when the
    utterance's first voiced sample was sent."""

    start_s: float
    end_s: float | None = None  # of the final
    final: str | None = None
    final_at: float | None = None
    voiced_at: float | None = None
    partials: list[tuple[float, str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per-utterance numbers (the inputs of :func:`partial_metrics`)."""
        shown = [(t, s, u) for t, s, u in self.partials if s or u]
        first = shown[0][0] - self.voiced_at if shown and self.voiced_at is not None else None
        display = [display_units(f"{s} {u}") for _, s, u in self.partials]
        stable = [display_units(s) for _, s, _ in self.partials]
        final_units = display_units(self.final or "")
        # the display: each %P, then the %R that replaces the line (or nothing, for an empty utterance)
        erased_display = sum(erased_units(a, b) for a, b in zip(display, display[1:] + [final_units]))
        erased_stable = sum(erased_units(a, b) for a, b in zip(stable, stable[1:]))
        last_stable = stable[-1] if stable else []
        final_after = self.final_at - self.voiced_at if self.final_at is not None and self.voiced_at is not None else None
        first_text = first if first is not None else final_after  # a partial, else the final
        return {
            "start_s": self.start_s, "end_s": self.end_s, "final": self.final, "partials": len(self.partials),
            "first_partial_s": first, "shown": bool(shown),
            "first_text_s": first_text,
            "final_units": len(final_units), "erased_display": erased_display, "erased_stable": erased_stable,
            "erased_stable_into_final": erased_units(last_stable, final_units) if self.final is not None else len(last_stable),
            "last_stable": self.partials[-1][1] if self.partials else "",
            "final_starts_with_stable": final_units[: len(last_stable)] == last_stable if last_stable and self.final is not None else None,
        }


def partial_metrics(traces: list[UtteranceTrace], first_after_s: float) -> dict[str, Any]:
    """The partial-hypothesis numbers over ``traces`` (see the module docstring)."""
    rows = [t.summary() for t in traces]
    finals = [r for r in rows if r["final"] is not None]
    long = [r for r in finals if r["end_s"] - r["start_s"] > LONG_S]
    ttfp_long = [r["first_partial_s"] for r in long if r["first_partial_s"] is not None]
    ttfp_all = [r["first_partial_s"] for r in finals if r["first_partial_s"] is not None]
    units = sum(r["final_units"] for r in finals)
    with_stable = [r for r in finals if r["final_starts_with_stable"] is not None]
    eligible = [r for r in finals if r["end_s"] - r["start_s"] > first_after_s + 0.5]
    return {
        "utterances": len(finals),
        "utterances_without_final": len(rows) - len(finals),
        "long_utterances": len(long),
        "first_partial_p50_s_long": percentile(ttfp_long, 50),
        "first_partial_p95_s_long": percentile(ttfp_long, 95),
        "long_without_partial": len(long) - len(ttfp_long),
        "first_text_p50_s_long": percentile([r["first_text_s"] for r in long if r["first_text_s"] is not None], 50),
        "first_partial_p50_s_all": percentile(ttfp_all, 50),
        "first_partial_p95_s_all": percentile(ttfp_all, 95),
        "partials": sum(r["partials"] for r in rows),
        "final_units": units,
        "erasure_display": sum(r["erased_display"] for r in rows) / units if units else None,
        "erasure_stable": sum(r["erased_stable"] for r in rows) / units if units else None,
        "erasure_stable_into_final": sum(r["erased_stable_into_final"] for r in rows) / units if units else None,
        "finals_with_stable": len(with_stable),
        "finals_not_starting_with_stable": sum(1 for r in with_stable if not r["final_starts_with_stable"]),
        "share_not_starting_with_stable": (sum(1 for r in with_stable if not r["final_starts_with_stable"]) / len(with_stable)) if with_stable else None,
        "coverage_eligible": len(eligible),
        "coverage": sum(1 for r in eligible if r["shown"]) / len(eligible) if eligible else None,
    }


PARTIAL_TABLE_HEADER = (
    "| first partial p50 / p95 (s), finals > 3 s | > 3 s without a partial | first partial p50 / p95 (s), all | erasure: display | erasure: stable "
    "| stable into final | finals not starting with the stable prefix | coverage |"
)


def partial_markdown(m: dict[str, Any]) -> str:
    """The cells of :data:`PARTIAL_TABLE_HEADER` for metrics ``m``."""
    def f(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    return (f"| {f(m['first_partial_p50_s_long'], '.2f')} / {f(m['first_partial_p95_s_long'], '.2f')} | {m['long_without_partial']} of {m['long_utterances']} "
            f"| {f(m['first_partial_p50_s_all'], '.2f')} / {f(m['first_partial_p95_s_all'], '.2f')} | {f(m['erasure_display'], '.3f')} "
            f"| {f(m['erasure_stable'], '.3f')} | {f(m['erasure_stable_into_final'], '.3f')} "
            f"| {f(m['share_not_starting_with_stable'], '.1%')} ({m['finals_not_starting_with_stable']} of {m['finals_with_stable']}) "
            f"| {f(m['coverage'], '.1%')} ({m['coverage_eligible']}) |")


# ---------------------------------------------------------------------------- the replay


@dataclass
class ReplayStats:
    partials_offered: int = 0
    partials_decoded: int = 0
    partials_refused: int = 0  # no room in the simulated pool
    partial_decode_s: list[float] = field(default_factory=list)
    final_decode_s: float = 0.0
    speculations_offered: int = 0
    speculations_started: int = 0  # the others found no room (e.g. a partial decoding)
    final_latencies_s: list[float] = field(default_factory=list)  # %R time - the utterance's last sample (sim)


def replay_partials(samples: Any, rate: int, session: Session, engine: AsrEngine, *, workers: int = 2,
                    chunk_s: float = CHUNK_S, partials: bool = True) -> tuple[list[UtteranceTrace], list[str], ReplayStats]:
    """Stream ``samples`` (int16 at ``rate``) through ``session`` on a simulated clock (see the
    module docstring).  Returns the utterance traces, the finals' texts in order and counters.
    ``partials=False``: the stream does not ask for them (the baseline of the same replay)."""
    stats = ReplayStats()
    free = [0.0] * workers  # when each simulated worker is free
    events: list[tuple[float, int, Callable[[], list[Any]]]] = []
    seq = itertools.count()
    speculations: dict[int, tuple[Any, float]] = {}  # key -> (transcript, done time)
    traces: dict[str, UtteranceTrace] = {}
    order: list[UtteranceTrace] = []
    finals: list[str] = []
    utterance_end: dict[str, float] = {}  # start key -> end of the utterance's audio (s), for the final latency

    def key(start_s: float) -> str:
        return f"{start_s:.3f}"

    def trace(start_s: float) -> UtteranceTrace:
        k = key(start_s)
        if k not in traces:
            traces[k] = UtteranceTrace(start_s, voiced_at=start_s)  # sample s is sent at s / rate
            order.append(traces[k])
        return traces[k]

    def run_job(now: float, audio: Any, **kw: Any) -> tuple[Any, float, float]:
        """Decode on the first free worker: (transcript, decode s, done time)."""
        t0 = time.perf_counter()
        transcript = engine.transcribe(pcm16_to_float32(audio), **kw)
        d = time.perf_counter() - t0
        i = min(range(workers), key=lambda j: free[j])
        start = max(now, free[i])
        free[i] = start + d
        return transcript, d, start + d

    def at(t: float, fn: Callable[[], list[Any]]) -> None:
        heapq.heappush(events, (t, next(seq), fn))

    def carry_out(now: float, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Deliver):
                out = a.output
                if isinstance(out, PartialHypothesis):
                    trace(out.start_s).partials.append((now, out.stable, out.unstable))
                elif isinstance(out, FinalResult):
                    tr = trace(out.start_s)
                    tr.end_s, tr.final, tr.final_at = out.end_s, out.text, now
                    finals.append(out.text)
                    if key(out.start_s) in utterance_end:
                        stats.final_latencies_s.append(now - utterance_end[key(out.start_s)])
            elif isinstance(a, DecodePartial):
                stats.partials_offered += 1
                room = sum(1 for f in free if f <= now) >= 2  # nothing queued: every job starts at once here
                if not room:
                    stats.partials_refused += 1
                    carry_out(now, session.partial_refused(a.key))
                    continue
                transcript, d, done = run_job(now, a.asr_samples(), language=a.language, minimal=True)
                stats.partials_decoded += 1
                stats.partial_decode_s.append(d)
                at(done, lambda k=a.key, text=transcript.text, d=d: session.partial_done(k, text, d))
            elif isinstance(a, Speculate):
                stats.speculations_offered += 1
                if sum(1 for f in free if f <= now) >= 2:
                    stats.speculations_started += 1
                    transcript, d, done = run_job(now, a.asr_samples(), language=a.language)
                    stats.final_decode_s += d
                    speculations[a.key] = (transcript, done)
            elif isinstance(a, CancelSpeculation):
                speculations.pop(a.key, None)  # its worker stays busy until it is done
            elif isinstance(a, Transcribe):
                u = a.utterance
                utterance_end[key(u.start_s)] = (u.audio_start_sample + len(u.samples)) / u.sample_rate_hz
                claimed = speculations.pop(a.claims, None) if a.claims is not None else None
                if claimed is not None:
                    transcript, done = claimed
                    done = max(done, now)
                else:
                    transcript, d, done = run_job(now, a.asr_samples(), language=a.language)
                    stats.final_decode_s += d
                at(done, lambda t=a.ticket, tr=transcript: session.transcription_done(t, tr.text, None, tr.language, tr.language_probability,
                                                                                      transcript=tr))

    def run_events(until: float) -> None:
        while events and events[0][0] <= until:
            t, _, fn = heapq.heappop(events)
            carry_out(t, fn())

    carry_out(0.0, session.handle(Identify("partials-replay")))
    answer = session.handle(SetOptions((("partials", "1" if partials else "0"),)))
    if partials and not any(isinstance(a, Deliver) and isinstance(a.output, OptionsSet) and ("partials", "1") in a.output.pairs for a in answer):
        raise SystemExit(f"the session refused partials=1: {answer}")
    carry_out(0.0, session.handle(BeginStream()))
    step = max(1, int(rate * chunk_s))
    for pos in range(0, len(samples), step):
        chunk = samples[pos : pos + step]
        now = (pos + len(chunk)) / rate
        run_events(now)
        carry_out(now, session.handle(AudioChunk(chunk.astype("<i2").tobytes())))
    now = len(samples) / rate
    carry_out(now, session.handle(FinishStream()))
    run_events(float("inf"))
    return order, finals, stats


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--language", default="en", help="language of the references (WER, or CER for ko/ja/zh)")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--first-after-s", type=float, default=None, help="override partials.first_after_s")
    p.add_argument("--min-interval-s", type=float, default=None, help="override partials.min_interval_s")
    p.add_argument("--cost-factor", type=float, default=None, help="override partials.cost_factor")
    p.add_argument("--workers", type=int, default=None, help="simulated workers (default model.channel)")
    p.add_argument("--off", action="store_true", help="the same replay without partials (baseline of the simulated final latency)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--verbose", action="store_true", help="print every utterance's partials and final")
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir, limit=args.files) if f.reference]
    if not files:
        p.error(f"no audio files with references in {args.audio_dir}")
    config = load_config(args.config)
    overrides = {k: v for k, v in (("first_after_s", args.first_after_s), ("min_interval_s", args.min_interval_s), ("cost_factor", args.cost_factor)) if v is not None}
    partials = config.partials.model_copy(update=overrides)
    options = session_options_from_config(config)
    policy = PartialPolicy(partials.first_after_s, partials.min_interval_s, partials.cost_factor)
    options = dataclasses.replace(options, partial_policy=policy)
    engine = create_engine(engine_options_from_config(config))
    samples, _ = session_audio(files)
    rate = files[0].sample_rate_hz
    t0 = time.perf_counter()
    traces, finals, stats = replay_partials(samples, rate, Session(options), engine, workers=args.workers or config.model.channel,
                                           partials=not args.off)
    wall = time.perf_counter() - t0
    if args.verbose:
        for tr in traces:
            print(f"{tr.start_s:8.2f} {tr.end_s or 0:8.2f}")
            for t, s, u in tr.partials:
                print(f"    +{t - (tr.voiced_at or 0):5.2f} s  {s} | {u}")
            print(f"    +{(tr.final_at or 0) - (tr.voiced_at or 0):5.2f} s  = {tr.final}")
    metrics = partial_metrics(traces, policy.first_after_s)
    metric, rate_ = corpus_error_rate([(" ".join(f.reference or "" for f in files), " ".join(t for t in finals if t))], args.language)
    audio_s = len(samples) / rate
    row = {"first_after_s": policy.first_after_s, "min_interval_s": policy.min_interval_s, "cost_factor": policy.cost_factor, **metrics, metric: rate_,
           "partials_offered": stats.partials_offered, "partials_decoded": stats.partials_decoded, "partials_refused": stats.partials_refused,
           "partial_decode_p50_s": percentile(stats.partial_decode_s, 50), "partial_decode_p95_s": percentile(stats.partial_decode_s, 95),
           "partial_worker_s_per_audio_s": sum(stats.partial_decode_s) / audio_s, "final_worker_s_per_audio_s": stats.final_decode_s / audio_s,
           "final_latency_p50_s": percentile(stats.final_latencies_s, 50), "final_latency_p95_s": percentile(stats.final_latencies_s, 95),
           "speculations_offered": stats.speculations_offered, "speculations_started": stats.speculations_started, "partials_on": not args.off}
    report = {"machine": machine_info(), "config": config.model_dump(mode="json"), "policy": dataclasses.asdict(policy), "audio_dir": str(args.audio_dir),
              "files": [f.name for f in files], "audio_s": audio_s, "wall_s": wall, "result": row, "utterances": [t.summary() for t in traces]}
    out = args.out or Path(__file__).resolve().parent / "results" / f"partials_replay-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")

    def f(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    print(f"| first_after_s | min_interval_s | cost_factor {PARTIAL_TABLE_HEADER} partials decoded / refused | decode p50 (s) | partial worker-s / audio s "
          f"| {metric.upper()} | final latency p50 / p95 (s, sim) | speculations started / offered |")
    print("|---:" * (3 + PARTIAL_TABLE_HEADER.count("|") - 1 + 6) + "|")
    print(f"| {policy.first_after_s:g} | {policy.min_interval_s:g} | {policy.cost_factor:g} {partial_markdown(metrics)} {stats.partials_decoded} / {stats.partials_refused} "
          f"| {f(row['partial_decode_p50_s'], '.2f')} | {row['partial_worker_s_per_audio_s']:.3f} | {f(rate_, '.3f')} "
          f"| {f(row['final_latency_p50_s'], '.2f')} / {f(row['final_latency_p95_s'], '.2f')} | {stats.speculations_started} / {stats.speculations_offered} |")
    print(f"\n{len(files)} files, {audio_s:.1f} s of audio, replayed in {wall:.0f} s. JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
