#!/usr/bin/env python3
"""Where the time goes after the end of speech: a per-utterance latency breakdown (issue 17).

Replays one ``bench/stream_bench.py`` session (every file of ``--audio-dir``, 1.0 s of digital
silence between files, 2.0 s after the last) through the server's default
:class:`~whisper_streaming.pipeline.vad.VadSegmenter` in 30 ms packets, as the server is fed,
polling :attr:`~whisper_streaming.pipeline.vad.VadSegmenter.tentative` after each packet.  That
gives, per utterance, its speech end (end of the last voiced frame), its trailing end (the end of
its audio, ``vad.trailing_ms`` later: when the server can offer it for speculative decoding),
its endpoint (when the VAD confirms it), and every tentative offer that speech withdrew again.

Every utterance (and every withdrawn offer, whose speculative job occupies an engine on the
server too) is then transcribed in this process by the real engine with the server's engine
options (``model.cpu_threads`` as each worker process uses it: 1 by default), the stream's
language state kept as a worker session keeps it.  Timed separately per call: the engine's
``_encode`` calls (log-mel, encoder pass on the trimmed or wider window, language detection;
the wrapper is put on this engine instance only), the decode attempts (total minus ``_encode``;
it includes faster-whisper's own log-mel and the encoder pass of any follow-on window), the
number of attempts and whether the wider-window retry ran (``full_window_retries``).

The latency of each utterance from the end of speech is then modelled for one stream on an idle
server with ``model.channel`` engines (2): a tentative utterance is decoded speculatively when
no job waits and ``server.speculation_idle_engines`` engines (1) are idle
(``Runtime.room_for_speculation``); its text is ready at
offer + engine time and goes out at ``max(endpoint, ready)``; otherwise the confirmed utterance
takes an engine at the endpoint (or waits for one).  Sending over loopback is not measured and
counted as :data:`SEND_S`.  The same per-utterance times give the what-if rows (computed, not
measured): an endpoint after 8 frames (240 ms) for utterances whose text ends a sentence, a
decode 30 % faster.

Each engine call is timed ``--repeats`` times (default 3; the median is kept) after
:data:`WARMUP_UTTERANCES` uncounted calls.

Usage (nothing else heavy running; about 0.6 s per utterance and repeat on one thread)::

    .venv/bin/python -m bench.latency_breakdown [--audio-dir DIR] [--live bench/results/stream_bench-X.json]

``--live``: a ``bench/stream_bench.py --streams 1`` JSON of the same files; its per-utterance
latencies from the end of speech are matched to the model's (by speech times) for a
model-against-live table.  Writes JSON (every utterance) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, load_dir, machine_info, percentile  # noqa: E402
from bench.vad_replay import session_audio, transcribe_utterance  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config, language_policy_from_config, vad_options_from_config  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.core.language import LanguageTracker  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.pipeline.session import ends_sentence  # noqa: E402
from whisper_streaming.pipeline.vad import EndReason, Utterance, VadSegmenter  # noqa: E402

__all__ = ["Offer", "VadTimeline", "EngineTiming", "UtteranceTiming", "Modelled", "vad_timeline", "TimedEngine", "simulate", "SEND_S"]

SEND_S = 0.001
"""Assumed time to send a result over loopback (s); not measured."""
PACKET_SAMPLES = 480
"""Samples per packet fed to the VAD (30 ms at 16 kHz, as ``bench/stream_bench.py`` sends)."""
WARMUP_UTTERANCES = 3


@dataclass(frozen=True)
class Offer:
    """A tentative utterance offered for speculation, and (if it was) withdrawn again.

    Attributes:
        utterance: the tentative utterance (its audio as offered).
        offered_sample: stream position (samples) after the packet that made it tentative.
        final_index: index of the utterance the endpoint emitted with this audio; -1 if withdrawn.
    """

    utterance: Utterance
    offered_sample: int
    final_index: int


@dataclass(frozen=True)
class VadTimeline:
    """The utterances of a session and every tentative offer, in stream order."""

    utterances: list[Utterance]
    offers: list[Offer]
    rate_hz: int


def _key(u: Utterance) -> tuple[int, int, int]:
    return (u.index, u.audio_start_sample, len(u.samples))


def vad_timeline(samples: np.ndarray, segmenter: VadSegmenter, packet_samples: int = PACKET_SAMPLES) -> VadTimeline:
    """Feed ``samples`` (int16, shape ``(n,)``) in packets and poll ``tentative`` after each one, as
    the server's session does (``Session._speculate``: a new offer whenever the tentative audio changes)."""
    utterances: list[Utterance] = []
    offers: list[tuple[Utterance, int]] = []
    current: tuple[int, int, int] | None = None
    for start in range(0, len(samples), packet_samples):
        utterances += segmenter.feed(samples[start : start + packet_samples])
        t = segmenter.tentative
        k = None if t is None else _key(t)
        if k is not None and k != current:
            offers.append((t, min(start + packet_samples, len(samples))))  # type: ignore[arg-type]
        current = k
    utterances += segmenter.flush()
    finals = {_key(u): u.index for u in utterances if u.end_reason is EndReason.SILENCE}
    return VadTimeline(utterances, [Offer(u, pos, finals.get(_key(u), -1)) for u, pos in offers], segmenter.options.sample_rate_hz)


@dataclass(frozen=True)
class EngineTiming:
    """One engine call, timed (all in seconds of wall time, one process).

    Attributes:
        total_s: the whole call (resampling, float conversion and ``transcribe``).
        encode_s: the engine's ``_encode`` calls (log-mel + encoder pass + language detection), all windows.
        encoder_s: of which the encoder passes proper (``WhisperModel.encode`` not primed).
        encodes: number of ``_encode`` calls (2 when the wider-window retry encoded again).
        decode_s: ``total_s - encode_s``: the decode attempts (beam search, the encoder pass of a
            follow-on window; faster-whisper's own log-mel too, before the engine remembered it).
        attempts: decode attempts (1 = first decode kept).
        wider_retry: the wider-window retry ran (``full_window_retries`` went up).
        text: the chosen text.
    """

    total_s: float
    encode_s: float
    encoder_s: float
    encodes: int
    decode_s: float
    attempts: int
    wider_retry: bool
    text: str


class TimedEngine:
    """Wraps one engine instance's ``_encode`` (and its model's ``encode``) to time them; the engine module is untouched."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._encode_s = 0.0
        self._encoder_s = 0.0
        self._encodes = 0
        engine = getattr(engine, "inner", engine)  # behind the speech screen: patch the engine that encodes
        inner_encode: Callable[..., Any] = engine._encode
        model = engine._model
        inner_model_encode: Callable[..., Any] = model.encode

        def timed_encode(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner_encode(*args, **kwargs)
            finally:
                self._encode_s += time.perf_counter() - t0
                self._encodes += 1

        def timed_model_encode(features: Any) -> Any:
            primed = model._primed is not None
            t0 = time.perf_counter()
            try:
                return inner_model_encode(features)
            finally:
                if not primed:
                    self._encoder_s += time.perf_counter() - t0

        engine._encode = timed_encode
        model.encode = timed_model_encode

    def run(self, utterance: Utterance, language: LanguageTracker, *, observe: bool = True) -> EngineTiming:
        """Transcribe ``utterance`` as a worker does; ``observe``: update ``language`` from the result
        (False for a withdrawn speculation, whose result the server throws away)."""
        self._encode_s = self._encoder_s = 0.0
        self._encodes = 0
        retries0 = self.engine.full_window_retries
        t0 = time.perf_counter()
        if observe:
            transcript = transcribe_utterance(self.engine, utterance, language)
        else:
            transcript = transcribe_utterance(self.engine, utterance, _Frozen(language))  # type: ignore[arg-type]
        total = time.perf_counter() - t0
        return EngineTiming(total, self._encode_s, self._encoder_s, self._encodes, total - self._encode_s, transcript.attempts,
                            self.engine.full_window_retries > retries0, transcript.text)


class _Frozen:
    """A language tracker that answers ``request()`` and ignores ``observe()``."""

    def __init__(self, tracker: LanguageTracker) -> None:
        self._tracker = tracker

    def request(self) -> Any:
        return self._tracker.request()

    def observe(self, *args: Any) -> None:
        return None


@dataclass(frozen=True)
class UtteranceTiming:
    """One utterance of the session, its VAD times (s from the session start) and its engine timing."""

    index: int
    file: str
    end_reason: str
    duration_s: float
    speech_start_s: float
    speech_end_s: float
    trailing_end_s: float
    endpoint_s: float
    offered_s: float | None
    engine: EngineTiming


@dataclass(frozen=True)
class Modelled:
    """One utterance's modelled path (s; ``*_from_speech_end`` from its speech end)."""

    speculated: bool
    start_s: float
    queue_s: float
    ready_s: float
    sent_s: float
    latency_s: float
    no_spec_latency_s: float


def simulate(rows: list[UtteranceTiming], withdrawn: list[tuple[float, float]], engines: int = 2, *,
             idle_engines: int = 1, endpoint_of: Callable[[UtteranceTiming], float] | None = None,
             engine_of: Callable[[EngineTiming], float] | None = None) -> list[Modelled]:
    """Model one stream on a server with ``engines`` idle engines (FIFO, one job per engine).

    ``rows``: the utterances in stream order; ``withdrawn``: (offer time, engine time) of each
    withdrawn speculation (``main`` passes the whole call: an upper bound, as the server stops a
    job withdrawn before its encoder pass ends).  A speculation starts at its offer when at least
    ``idle_engines`` engines (``server.speculation_idle_engines``) are idle
    (``Runtime.room_for_speculation``; with one stream nothing else can be queued then); an
    offer that finds no room is not started later here (the server's driver keeps it and starts
    it when an engine frees up before the endpoint), so the model is pessimistic there.
    ``endpoint_of``/``engine_of``: what-if overrides of the endpoint time and the engine time.
    """
    endpoint_of = endpoint_of or (lambda r: r.endpoint_s)
    engine_of = engine_of or (lambda e: e.total_s)
    free = [0.0] * engines
    events: list[tuple[float, int, str, Any]] = []  # (time, order, kind, payload)
    for i, r in enumerate(rows):
        if r.offered_s is not None:
            events.append((r.offered_s, 0, "offer", i))
        events.append((endpoint_of(r), 1, "final", i))
    for t, cost in withdrawn:
        events.append((t, 0, "withdrawn", cost))
    events.sort(key=lambda e: (e[0], e[1]))
    spec: dict[int, tuple[float, float]] = {}  # row -> (start, ready)
    out: dict[int, Modelled] = {}
    for t, _, kind, payload in events:
        idle = sum(1 for f in free if f <= t)
        if kind in ("offer", "withdrawn"):
            if idle >= max(1, idle_engines):
                cost = engine_of(rows[payload].engine) if kind == "offer" else float(payload)
                j = free.index(min(free))
                free[j] = t + cost
                if kind == "offer":
                    spec[payload] = (t, t + cost)
            continue
        r = rows[payload]
        endpoint = endpoint_of(r)
        if payload in spec:
            start, ready = spec[payload]
            queue = 0.0
        else:
            j = free.index(min(free))
            start = max(endpoint, free[j])
            ready = start + engine_of(r.engine)
            free[j] = ready
            queue = start - endpoint
        sent = max(endpoint, ready) + SEND_S
        out[payload] = Modelled(payload in spec, start, queue, ready, sent, sent - r.speech_end_s,
                                endpoint + engine_of(r.engine) + SEND_S - r.speech_end_s)
    return [out[i] for i in range(len(rows))]


def _p(values: Iterable[float], q: float) -> float | None:
    return percentile(list(values), q)


def _fmt(v: float | None, scale: float = 1000.0, fmt: str = ".0f") -> str:
    return "-" if v is None else format(v * scale, fmt)


def components(rows: list[UtteranceTiming], model: list[Modelled]) -> list[tuple[str, list[float]]]:
    """Per-utterance values (s) of each component, for the table."""
    return [
        ("endpoint wait (endpoint - speech end)", [r.endpoint_s - r.speech_end_s for r in rows]),
        ("speculation start offset (start - speech end)", [m.start_s - r.speech_end_s for r, m in zip(rows, model)]),
        ("queue wait (start - offer or endpoint)", [m.queue_s for m in model]),
        ("engine total", [r.engine.total_s for r in rows]),
        ("encode (_encode: log-mel + encoder + language detection)", [r.engine.encode_s for r in rows]),
        ("  of which encoder passes", [r.engine.encoder_s for r in rows]),
        ("decode (engine - encode)", [r.engine.decode_s for r in rows]),
        ("text ready after the endpoint (max(0, ready - endpoint))", [max(0.0, m.ready_s - r.endpoint_s) for r, m in zip(rows, model)]),
        ("sending (assumed, loopback)", [SEND_S for _ in rows]),
        ("modelled latency from end of speech (speculation)", [m.latency_s for m in model]),
        ("modelled latency from end of speech, no speculation", [m.no_spec_latency_s for m in model]),
    ]


def component_table(rows: list[UtteranceTiming], model: list[Modelled]) -> str:
    lines = ["| component (ms) | p50 | p95 | mean |", "|---|---:|---:|---:|"]
    for name, vals in components(rows, model):
        lines.append(f"| {name} | {_fmt(_p(vals, 50))} | {_fmt(_p(vals, 95))} | {_fmt(float(np.mean(vals)) if vals else None)} |")
    n = len(rows)
    multi = sum(1 for r in rows if r.engine.attempts > 1)
    wider = sum(1 for r in rows if r.engine.wider_retry)
    spec = sum(1 for m in model if m.speculated)
    lines.append(f"| decode attempts > 1 (utterances) | {multi} / {n} ({multi / n:.0%}) | | |")
    lines.append(f"| wider-window retry ran (utterances) | {wider} / {n} ({wider / n:.0%}) | | |")
    lines.append(f"| speculated (offered with enough engines idle) | {spec} / {n} ({spec / n:.0%}) | | |")
    return "\n".join(lines)


def length_table(rows: list[UtteranceTiming], model: list[Modelled]) -> str:
    bands = (("short (< 2 s)", 0.0, 2.0), ("medium (2-5 s)", 2.0, 5.0), ("long (> 5 s)", 5.0, float("inf")))
    lines = ["| utterance audio | n | endpoint wait p50 | engine p50 / p95 | encode p50 | decode p50 / p95 | ready after endpoint p50 / p95 "
             "| modelled latency p50 / p95 | no speculation p50 / p95 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, lo, hi in bands:
        sel = [(r, m) for r, m in zip(rows, model) if lo <= r.duration_s < hi]
        if not sel:
            lines.append(f"| {name} | 0 | | | | | | | |")
            continue
        rs, ms = [r for r, _ in sel], [m for _, m in sel]
        eng = [r.engine.total_s for r in rs]
        dec = [r.engine.decode_s for r in rs]
        after = [max(0.0, m.ready_s - r.endpoint_s) for r, m in sel]
        lat = [m.latency_s for m in ms]
        nsp = [m.no_spec_latency_s for m in ms]
        lines.append(f"| {name} | {len(sel)} | {_fmt(_p([r.endpoint_s - r.speech_end_s for r in rs], 50))} | {_fmt(_p(eng, 50))} / {_fmt(_p(eng, 95))} "
                     f"| {_fmt(_p([r.engine.encode_s for r in rs], 50))} | {_fmt(_p(dec, 50))} / {_fmt(_p(dec, 95))} "
                     f"| {_fmt(_p(after, 50))} / {_fmt(_p(after, 95))} | {_fmt(_p(lat, 50))} / {_fmt(_p(lat, 95))} | {_fmt(_p(nsp, 50))} / {_fmt(_p(nsp, 95))} |")
    return "\n".join(lines)


def what_ifs(rows: list[UtteranceTiming], withdrawn: list[tuple[float, float]], engines: int,
             idle_engines: int = 1) -> list[tuple[str, list[Modelled]]]:
    """Computed (not measured) variants of the model from the same per-utterance times."""

    def early(r: UtteranceTiming) -> float:
        if r.end_reason == EndReason.SILENCE.value and ends_sentence(r.engine.text):
            return min(r.endpoint_s, r.speech_end_s + 0.240)
        return r.endpoint_s

    faster = lambda e: e.encode_s + 0.7 * e.decode_s  # noqa: E731
    return [
        ("as measured (default: 480 ms endpoint)", simulate(rows, withdrawn, engines, idle_engines=idle_engines)),
        ("endpoint 240 ms when the text ends with . ? !", simulate(rows, withdrawn, engines, idle_engines=idle_engines, endpoint_of=early)),
        ("decode 30 % faster (encode unchanged)", simulate(rows, withdrawn, engines, idle_engines=idle_engines, engine_of=faster)),
        ("both", simulate(rows, withdrawn, engines, idle_engines=idle_engines, endpoint_of=early, engine_of=faster)),
        ("engine 2x faster (whole call)", simulate(rows, withdrawn, engines, idle_engines=idle_engines, engine_of=lambda e: e.total_s / 2)),
        ("engine 2x faster + endpoint 240 ms on . ? !", simulate(rows, withdrawn, engines, idle_engines=idle_engines, endpoint_of=early, engine_of=lambda e: e.total_s / 2)),
    ]


def what_if_table(variants: list[tuple[str, list[Modelled]]]) -> str:
    lines = ["| variant (computed from the measured times) | p50 (ms) | p95 (ms) | share <= 0.5 s | share <= 0.9 s |", "|---|---:|---:|---:|---:|"]
    for name, model in variants:
        lat = [m.latency_s for m in model]
        lines.append(f"| {name} | {_fmt(_p(lat, 50))} | {_fmt(_p(lat, 95))} | {sum(x <= 0.5 for x in lat) / len(lat):.0%} | {sum(x <= 0.9 for x in lat) / len(lat):.0%} |")
    return "\n".join(lines)


def live_compare(rows: list[UtteranceTiming], model: list[Modelled], live_path: Path) -> tuple[str, list[dict[str, object]]]:
    """Match the first session's results of a ``stream_bench`` JSON (1 stream) to the modelled utterances."""
    report = json.loads(live_path.read_text(encoding="utf-8"))
    run = report["runs"][0]
    results = run.get("results", [])
    pairs: list[dict[str, object]] = []
    used: set[int] = set()
    for res in results:
        for i, r in enumerate(rows):
            if i in used:
                continue
            # matched by the speech times as %R prints them (0.1 s), as stream_bench.endpoint_of does
            if f"{r.speech_start_s:.1f} {r.speech_end_s:.1f}" == f"{float(res['start_s']):.1f} {float(res['end_s']):.1f}":
                used.add(i)
                pairs.append({"index": r.index, "duration_s": r.duration_s, "live_s": res.get("speech_end_latency_s"), "model_s": model[i].latency_s,
                              "speculated": model[i].speculated})
                break
    matched = [p for p in pairs if isinstance(p["live_s"], (int, float))]
    live = [float(p["live_s"]) for p in matched]  # type: ignore[arg-type]
    mod = [float(p["model_s"]) for p in matched]  # type: ignore[arg-type]
    diff = [a - b for a, b in zip(live, mod)]
    lines = ["| from end of speech (ms), 1 stream | p50 | p95 | mean |", "|---|---:|---:|---:|",
             f"| live (`stream_bench --streams 1`, all its utterances) | {_fmt(run.get('speech_end_latency_p50_s'))} | {_fmt(run.get('speech_end_latency_p95_s'))} | |",
             f"| live, the {len(matched)} matched utterances | {_fmt(_p(live, 50))} | {_fmt(_p(live, 95))} | {_fmt(float(np.mean(live)) if live else None)} |",
             f"| model, the same utterances | {_fmt(_p(mod, 50))} | {_fmt(_p(mod, 95))} | {_fmt(float(np.mean(mod)) if mod else None)} |",
             f"| live - model, per utterance | {_fmt(_p(diff, 50))} | {_fmt(_p(diff, 95))} | {_fmt(float(np.mean(diff)) if diff else None)} |"]
    spec = run.get("speculations_started"), run.get("speculations_used")
    lines.append("")
    lines.append(f"live speculations started / used: {spec[0]} / {spec[1]}; model: {sum(1 for m in model if m.speculated)} used "
                 f"of {len(model)} utterances; live results {len(results)}, matched {len(matched)}")
    return "\n".join(lines), pairs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None, help="use only the first N files")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--live", type=Path, default=None, help="a stream_bench --streams 1 JSON of the same files, to compare")
    p.add_argument("--from-json", type=Path, default=None, help="re-model a previous run of this script (no engine run)")
    p.add_argument("--repeats", type=int, default=3, help="time each engine call this many times; keep the median (default 3)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    config = load_config(args.config)
    engines = config.model.channel
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        rows = [UtteranceTiming(**{**u, "engine": EngineTiming(**u["engine"])}) for u in saved["utterances"]]
        withdrawn = [(float(a), float(b)) for a, b in saved["withdrawn"]]
        machine, audio_dir, threads = saved["machine"], saved["audio_dir"], saved["cpu_threads"]
    else:
        files = load_dir(args.audio_dir, limit=args.files)
        if not files:
            p.error(f"no audio files in {args.audio_dir}")
        samples, spans = session_audio(files)
        vad = vad_options_from_config(config)
        rate = files[0].sample_rate_hz
        vad = dataclasses.replace(vad, sample_rate_hz=rate)
        timeline = vad_timeline(samples, VadSegmenter(vad))
        options = engine_options_from_config(config)
        threads = options.cpu_threads
        t_load = time.perf_counter()
        timed = TimedEngine(create_engine(options))
        print(f"model loaded in {time.perf_counter() - t_load:.1f} s (cpu_threads {threads}); {len(timeline.utterances)} utterances, "
              f"{sum(1 for o in timeline.offers if o.final_index < 0)} withdrawn offers", file=sys.stderr)
        warm = LanguageTracker(config.model.language, language_policy_from_config(config))
        for u in timeline.utterances[:WARMUP_UTTERANCES]:
            timed.run(u, warm)
        tracker = LanguageTracker(config.model.language, language_policy_from_config(config))
        offered = {o.final_index: o.offered_sample for o in timeline.offers if o.final_index >= 0}
        withdrawn_offers = [o for o in timeline.offers if o.final_index < 0]
        rows, withdrawn = [], []
        w = 0

        def measure(u: Utterance, observe: bool) -> EngineTiming:
            """The call with the median total time of ``--repeats`` calls; the last one updates the language state."""
            runs = [timed.run(u, tracker, observe=False) for _ in range(max(args.repeats, 1) - 1)]
            runs.append(timed.run(u, tracker, observe=observe))
            return sorted(runs, key=lambda e: e.total_s)[len(runs) // 2]

        for u in timeline.utterances:
            end = u.audio_start_sample + len(u.samples)
            while w < len(withdrawn_offers) and withdrawn_offers[w].offered_sample <= u.endpoint_sample:
                o = withdrawn_offers[w]
                withdrawn.append((o.offered_sample / rate, measure(o.utterance, False).total_s))
                w += 1
            timing = measure(u, True)
            mid = (u.speech_start_sample + u.speech_end_sample) // 2
            name = next((f.name for f, (a, b) in zip(files, spans) if a <= mid < b), "-")
            rows.append(UtteranceTiming(u.index, name, u.end_reason.value, u.duration_s, u.speech_start_sample / rate, u.speech_end_sample / rate, end / rate,
                                        u.endpoint_sample / rate, offered[u.index] / rate if u.index in offered else None, timing))
            print(f"{u.index:3d} {u.duration_s:5.2f}s engine {timing.total_s * 1000:5.0f} ms (encode {timing.encode_s * 1000:4.0f}) "
                  f"att {timing.attempts} {'W' if timing.wider_retry else ' '} {timing.text[:60]}", file=sys.stderr, flush=True)
        machine, audio_dir = machine_info(), str(args.audio_dir)
    idle_engines = config.server.speculation_idle_engines
    model = simulate(rows, withdrawn, engines, idle_engines=idle_engines)
    variants = what_ifs(rows, withdrawn, engines, idle_engines)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores; model {config.model.size} ({config.model.engine}, {config.model.compute_type}, "
          f"beam {config.model.beam_size}), cpu_threads {threads} (as each worker), {engines} engines modelled")
    print(f"audio: {audio_dir}; {len(rows)} utterances; {len(withdrawn)} withdrawn speculations\n")
    print(component_table(rows, model) + "\n")
    print(length_table(rows, model) + "\n")
    print(what_if_table(variants))
    pairs: list[dict[str, object]] = []
    if args.live is not None:
        table, pairs = live_compare(rows, model, args.live)
        print("\n" + table)
    report = {"machine": machine, "audio_dir": audio_dir, "cpu_threads": threads, "engines": engines, "send_s_assumed": SEND_S,
              "utterances": [dataclasses.asdict(r) for r in rows], "withdrawn": withdrawn,
              "modelled": [dataclasses.asdict(m) for m in model],
              "what_ifs": {name: [m.latency_s for m in ms] for name, ms in variants}, "live_pairs": pairs}
    out = args.out or Path(__file__).resolve().parent / "results" / f"latency_breakdown-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
