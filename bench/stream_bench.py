#!/usr/bin/env python3
"""Streaming benchmark: N concurrent real-time sessions against a server.

Each session plays every audio file of ``--audio-dir`` one after another at real-time pace
in 30 ms ``%s`` packets, with 1.0 s of silence between files and 2.0 s after the last, then
``%f``.  Measured:

* per utterance, the **final latency**: wall time from sending the utterance's last sample
  (the last sample of the audio the server transcribes: ``vad.trailing_ms`` after the speech,
  or the cut point of an utterance cut at the 10 s cap) to receiving its ``%R``.  Also, from
  two other points: the **endpoint** (the sample at which the server's VAD decided the
  utterance was over: ``vad.silence_frames`` of silence after the speech, or where the cap was
  reached; the server cannot confirm the end earlier) and the **end of speech** (the end of
  the last voiced frame; this one includes the whole endpointing wait and is what a listener
  perceives).  The benchmark finds these samples exactly by running the same
  :class:`~whisper_streaming.pipeline.vad.VadSegmenter` (same ``--config``) over the audio it sends,
  and matches each ``%R`` to its utterance by its times;
* per file, the transcript (results assigned by their midpoint) and its WER against the
  reference ``.txt`` (jiwer with Whisper's English normalizer; CER for ko/ja/zh);
* per run, the server's CPU seconds per audio second (utime+stime from /proc of the whole
  process tree: server plus workers), its peak RSS (sum over the tree), errors and ``%E``.

``--streams 1,2,4,8`` sweeps concurrency and reports **max real-time streams**: the largest N
whose p95 final latency is under ``--latency-bound-s`` (default 2.0) with no errors.

By default the benchmark starts its own server (``--config``, free loopback port); give
``--port`` (and ``--server-pid`` for CPU/RSS) to measure a server that is already running.
Output: a JSON file and a markdown table on stdout.

``--partials``: every stream opts in to partial hypotheses (``%o partials=1``) and each ``%P``
is recorded with its arrival time; a second table gives the partial numbers of
:func:`bench.partials_replay.partial_metrics` (time to first partial from the send time of the
utterance's first voiced sample, normalized erasure of the whole display and of the stable
part, finals that do not start with the last stable prefix, coverage under load) and the
server's ``%C`` partial counters over the run.  ``--compare-partials``: at each ``--streams``
level one run with partials off, then one with them on, against the same server, and a table
of the two side by side (final latency, WER, CPU, max real-time streams, with ratios).
Without either option the output is what it always was.

``--door websocket`` streams through the web door's ``/v1/stream`` instead of TCP (same pacing,
same latency accounting; :mod:`bench.ws_client`); ``--door both`` runs TCP then WebSocket at each
level against the same server, for the "WebSocket within 50 ms of TCP" comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.partials_replay import PARTIAL_TABLE_HEADER, UtteranceTrace, partial_markdown, partial_metrics  # noqa: E402
from bench.common import DEFAULT_AUDIO_DIR, SpeechFile, corpus_error_rate, error_rate, load_dir, machine_info, percentile  # noqa: E402
from whisper_streaming.client.streaming import AsyncStreamingClient  # noqa: E402
from bench.ws_client import WsStreamingClient  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.errors import ConnectionClosedError, ServerError  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402
from whisper_streaming.core import audio_format  # noqa: E402
from whisper_streaming.client import Partial, Result  # noqa: E402
from whisper_streaming.wire.protocol import Finished  # noqa: E402
from whisper_streaming.app.wiring import vad_options_from_config  # noqa: E402
from whisper_streaming.pipeline.vad import Utterance, VadOptions, VadSegmenter  # noqa: E402

PACKET_SAMPLES = 480
RATE = 16000
EXTRA_OPTIONS: dict[str, str] = {}
"""``--option KEY=VALUE``: sent with every stream's ``%o``."""
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------- /proc sampling


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


def tree_cpu_s(pid: int, *, children: bool = True) -> float:
    """CPU seconds (user + system) of ``pid`` and, with ``children``, all its descendants."""
    total = 0
    for p in process_tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (man 5 proc, fields 14/15)
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError):
            pass
    return total


class RssSampler:
    def __init__(self, pid: int | None, interval_s: float = 0.25) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid:
                self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- one session


@dataclass
class SessionResult:
    latencies_s: list[float] = field(default_factory=list)
    results_log: list[dict[str, object]] = field(default_factory=list)  # per result: times, latency, text
    endpoint_latencies_s: list[float] = field(default_factory=list)  # from the VAD's endpoint decision
    speech_end_latencies_s: list[float] = field(default_factory=list)  # from the last voiced frame
    transcripts: dict[str, str] = field(default_factory=dict)
    results: int = 0
    error: str | None = None
    audio_s: float = 0.0
    partial_traces: list[UtteranceTrace] = field(default_factory=list)  # with partials on: per utterance, in order
    partials_refused: bool = False  # asked for partials, answered partials=0


def endpoints(samples: np.ndarray, vad: VadOptions) -> list[Utterance]:
    """The utterances the server's VAD cuts from ``samples`` (same options), with their endpoint samples."""
    segmenter = VadSegmenter(vad)
    return segmenter.feed(samples) + segmenter.flush()


def endpoint_of(result: Result, utterances: list[Utterance], used: set[int]) -> Utterance | None:
    """The first unused utterance whose speech times print as the result's (``%R`` has 0.1 s resolution)."""
    for u in utterances:
        if u.index not in used and f"{u.start_s:.1f} {u.end_s:.1f}" == f"{result.start_s:.1f} {result.end_s:.1f}":
            used.add(u.index)
            return u
    return None


async def run_session(host: str, port: int, files: list[SpeechFile], *, speed: float, vad: VadOptions, gap_s: float, tail_s: float, user: str,
                      encoding: str = "pcm_s16le", partials: bool = False, ws_port: int | None = None) -> SessionResult:
    """One stream of ``files`` (with gaps) at ``speed``; over the WebSocket door at ``ws_port``
    when given (:class:`bench.ws_client.WsStreamingClient`), else the TCP door at ``port``."""
    rate = files[0].sample_rate_hz if files else RATE
    packet_samples = rate * 30 // 1000
    gap = b"\x00\x00" * int(rate * gap_s)
    pcm = bytearray()
    spans: list[tuple[str, float, float]] = []
    for i, f in enumerate(files):
        start = len(pcm) / 2 / rate
        pcm += f.pcm
        spans.append((f.name, start, len(pcm) / 2 / rate))
        pcm += gap if i < len(files) - 1 else b"\x00\x00" * int(rate * tail_s)
    total_samples = len(pcm) // 2
    wire = audio_format.encode(np.frombuffer(bytes(pcm), dtype="<i2"), encoding)
    bytes_per_sample = len(wire) // total_samples
    n_packets = math.ceil(total_samples / packet_samples)
    sent_at = [0.0] * n_packets
    received: list[tuple[float, Result]] = []
    partials_received: list[tuple[float, Partial]] = []
    out = SessionResult(audio_s=total_samples / rate)
    client = None
    try:
        if ws_port is not None:
            client = await WsStreamingClient.connect(host, ws_port, user_id=user, timeout_s=30)  # type: ignore[assignment]
        else:
            client = await AsyncStreamingClient.connect(host, port, user_id=user, timeout_s=30)
        options = {"sample_rate": rate, "encoding": encoding} if rate != RATE or encoding != "pcm_s16le" else {}
        options.update(EXTRA_OPTIONS)
        if options or partials:
            accepted = await client.set_options(partials=True if partials else None, **options)
            out.partials_refused = partials and not accepted.get("partials")
        await client.begin()

        async def receiver() -> None:
            while True:
                event = await client.receive()
                if isinstance(event, Finished):
                    return
                if isinstance(event, Result):
                    received.append((time.monotonic(), event))
                elif isinstance(event, Partial):
                    partials_received.append((time.monotonic(), event))

        rx = asyncio.create_task(receiver())
        step = packet_samples * bytes_per_sample
        t0 = time.monotonic()
        for i in range(n_packets):
            if speed > 0:
                delay = t0 + i * packet_samples / rate / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await client.send_audio(wire[i * step : (i + 1) * step])
            sent_at[i] = time.monotonic()
            if rx.done():
                break
        if not rx.done():
            client.send_finish()
        await rx
    except ServerError as exc:
        out.error = f"%E {exc.reason}"
    except (ConnectionClosedError, OSError, asyncio.TimeoutError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            await client.close()
    texts: dict[str, list[str]] = {name: [] for name, _, _ in spans}
    server_samples = audio_format.decode(wire, encoding) if encoding != "pcm_s16le" else np.frombuffer(bytes(pcm), dtype="<i2")
    utterances = endpoints(server_samples.astype(np.int16), replace(vad, sample_rate_hz=rate))
    used: set[int] = set()

    def sent(sample: int) -> float | None:
        """When the packet holding ``sample - 1`` (the last one before position ``sample``) was sent."""
        packet = min(max(math.ceil(min(sample, total_samples) / packet_samples) - 1, 0), n_packets - 1)
        return sent_at[packet] or None

    groups: dict[str, list[tuple[float, str, str]]] = {}  # an utterance's partials, by its start as printed
    for recv_t, p in partials_received:
        groups.setdefault(f"{p.start_s:.1f}", []).append((recv_t, p.stable, p.unstable))

    for recv_t, r in received:
        u = endpoint_of(r, utterances, used)
        entry: dict[str, object] = {"start_s": r.start_s, "end_s": r.end_s, "text": r.text, "end_reason": None}
        if u is None:  # another VAD config than --config: assume a silence endpoint with the whole silence
            t_audio = t_endpoint = sent(round((r.end_s + vad.silence_frames * vad.frame_ms / 1000) * rate))
            t_speech = sent(round(r.end_s * rate))
        else:
            t_audio, t_endpoint, t_speech = sent(u.audio_start_sample + len(u.samples)), sent(u.endpoint_sample), sent(u.speech_end_sample)
            entry["end_reason"] = u.end_reason.value
        if partials:
            # the send clock of the utterance's first voiced sample
            voiced = sent((u.speech_start_sample if u is not None else round(r.start_s * rate)) + 1)
            shown = groups.pop(f"{r.start_s:.1f}", [])
            out.partial_traces.append(UtteranceTrace(r.start_s, r.end_s, r.text, recv_t, voiced, shown))
            entry["partials"] = [[round(t - voiced, 3) if voiced else None, st, un] for t, st, un in shown]
        for key, t, into in (("latency_s", t_audio, out.latencies_s), ("endpoint_latency_s", t_endpoint, out.endpoint_latencies_s),
                             ("speech_end_latency_s", t_speech, out.speech_end_latencies_s)):
            entry[key] = recv_t - t if t else None
            if t:
                into.append(recv_t - t)
        out.results_log.append(entry)
        mid = (r.start_s + r.end_s) / 2
        name = min(spans, key=lambda s: 0 if s[1] <= mid <= s[2] else min(abs(mid - s[1]), abs(mid - s[2])))[0]
        texts[name].append(r.text)
    for start, shown in groups.items():  # utterances that ended with no text (their last %P is empty)
        out.partial_traces.append(UtteranceTrace(float(start), voiced_at=sent(round(float(start) * rate) + 1), partials=shown))
    out.results = len(received)
    out.transcripts = {k: " ".join(v) for k, v in texts.items()}
    return out


# ---------------------------------------------------------------------------- one run


async def run_streams(n: int, host: str, port: int, files: list[SpeechFile], *, speed: float, stagger_s: float, vad: VadOptions,
                      encoding: str = "pcm_s16le", partials: bool = False, ws_port: int | None = None) -> list[SessionResult]:
    async def one(i: int) -> SessionResult:
        # Session i starts i/n of the way through the file list: independent calls do not
        # speak the same sentence at the same moment (that would synchronise every endpoint).
        k = i * len(files) // n
        await asyncio.sleep(i * stagger_s)
        return await run_session(host, port, files[k:] + files[:k], speed=speed, vad=vad, gap_s=1.0, tail_s=2.0, user=f"bench{i}", encoding=encoding,
                                 partials=partials, ws_port=ws_port)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def server_status(host: str, port: int) -> str | None:
    """The server's ``%C`` text (None if it cannot be had)."""
    try:
        client = await AsyncStreamingClient.connect(host, port, user_id="bench-status", timeout_s=10)
    except (ConnectionClosedError, ServerError, OSError, asyncio.TimeoutError):
        return None
    try:
        return await asyncio.wait_for(client.status(), 10)
    except (ConnectionClosedError, ServerError, OSError, asyncio.TimeoutError):
        return None
    finally:
        await client.close()


def speculation_counts(status: str | None) -> tuple[int, int] | None:
    """(started, used) from the ``speculative transcriptions`` line of ``%C``."""
    for line in (status or "").splitlines():
        if line.startswith("speculative transcriptions: started "):
            started, used = line.split("started ", 1)[1].split(", used ")
            return int(started), int(used)
    return None


def stopped_count(status: str | None) -> int | None:
    """Withdrawn jobs a worker gave up early, from the ``withdrawn jobs stopped early`` line of ``%C``."""
    for line in (status or "").splitlines():
        if line.startswith("withdrawn jobs stopped early: "):
            return int(line.split(": ", 1)[1].split()[0])
    return None


def partial_counts(status: str | None) -> tuple[int, int, int] | None:
    """(decoded, sent, dropped under load) from the ``partials:`` line of ``%C``."""
    for line in (status or "").splitlines():
        if line.startswith("partials: decoded "):
            decoded, rest = line.split("decoded ", 1)[1].split(", sent ")
            sent, dropped = rest.split(", dropped under load ")
            return int(decoded), int(sent), int(dropped)
    return None


def bench_run(n: int, host: str, port: int, files: list[SpeechFile], *, pid: int | None, speed: float = 1.0, stagger_s: float = 0.37,
              vad: VadOptions | None = None, language: str = "en", encoding: str = "pcm_s16le", partials: bool = False,
              first_after_s: float = 1.0, ws_port: int | None = None) -> dict[str, object]:
    """One run of ``n`` concurrent sessions; returns the summary row (see :func:`summarize`).

    ``partials``: every stream asks for partial hypotheses; the row gets ``partials_on`` and a
    ``partials`` entry (:func:`bench.partials_replay.partial_metrics`, with ``first_after_s``
    for the coverage, plus the ``%C`` counters over the run)."""
    status0 = asyncio.run(server_status(host, port))
    spec0 = speculation_counts(status0)
    cpu0 = tree_cpu_s(pid) if pid else None
    main0 = tree_cpu_s(pid, children=False) if pid else None
    t0 = time.monotonic()
    with RssSampler(pid) as rss:
        sessions = asyncio.run(run_streams(n, host, port, files, speed=speed, stagger_s=stagger_s, vad=vad or VadOptions(), encoding=encoding,
                                           partials=partials, ws_port=ws_port))
    wall = time.monotonic() - t0
    cpu = tree_cpu_s(pid) - cpu0 if pid and cpu0 is not None else None
    main_cpu = tree_cpu_s(pid, children=False) - main0 if pid and main0 is not None else None
    status1 = asyncio.run(server_status(host, port))
    spec1 = speculation_counts(status1)
    row = summarize(n, sessions, files, language, cpu, wall, rss.peak)
    row["door"] = "websocket" if ws_port is not None else "tcp"
    audio_s = row["audio_s"]
    row["main_cpu_s_per_audio_s"] = main_cpu / audio_s if main_cpu is not None and audio_s else None
    if spec0 is not None and spec1 is not None:
        row["speculations_started"], row["speculations_used"] = spec1[0] - spec0[0], spec1[1] - spec0[1]
    stopped0, stopped1 = stopped_count(status0), stopped_count(status1)
    if stopped0 is not None and stopped1 is not None:
        row["jobs_stopped"] = stopped1 - stopped0
    if partials:
        row["partials_on"] = True
        m = partial_metrics([t for s in sessions for t in s.partial_traces], first_after_s)
        m["sessions_refused_partials"] = sum(1 for s in sessions if s.partials_refused)
        c0, c1 = partial_counts(status0), partial_counts(status1)
        if c0 is not None and c1 is not None:
            m["status_decoded"], m["status_sent"], m["status_dropped_under_load"] = (b - a for a, b in zip(c0, c1))
        row["partials"] = m
    return row


def summarize(n: int, sessions: list[SessionResult], files: list[SpeechFile], language: str, cpu_s: float | None, wall_s: float, peak_rss: int) -> dict[str, object]:
    lat = [x for s in sessions for x in s.latencies_s]
    lat_endpoint = [x for s in sessions for x in s.endpoint_latencies_s]
    lat_speech = [x for s in sessions for x in s.speech_end_latencies_s]
    refs = {f.name: f.reference for f in files if f.reference}
    # The headline error rate compares each session's whole transcript with the concatenated
    # references: a result that straddles two files (VAD bridged the gap) is not misassigned.
    pairs = [
        (" ".join(refs[name] for name in s.transcripts if name in refs), " ".join(t for name, t in s.transcripts.items() if name in refs))
        for s in sessions
        if not s.error
    ]
    metric, rate = corpus_error_rate(pairs, language) if pairs else ("wer", None)
    per_file = {name: error_rate(refs[name], text, language)[1] for name, text in (sessions[0].transcripts.items() if sessions else []) if name in refs}
    audio_s = sum(s.audio_s for s in sessions)
    errors = Counter(s.error for s in sessions if s.error)
    return {
        "streams": n,
        "utterances": sum(s.results for s in sessions),
        "latency_p50_s": percentile(lat, 50),
        "latency_p95_s": percentile(lat, 95),
        "latency_max_s": max(lat) if lat else None,
        "endpoint_latency_p50_s": percentile(lat_endpoint, 50),
        "endpoint_latency_p95_s": percentile(lat_endpoint, 95),
        "speech_end_latency_p50_s": percentile(lat_speech, 50),
        "speech_end_latency_p95_s": percentile(lat_speech, 95),
        metric: rate,
        "errors": dict(errors),
        "audio_s": audio_s,
        "wall_s": wall_s,
        "cpu_s_per_audio_s": cpu_s / audio_s if cpu_s is not None and audio_s else None,
        "peak_rss_mb": peak_rss / 2**20 if peak_rss else None,
        "per_file_" + metric: per_file,
        "transcripts": sessions[0].transcripts if sessions else {},
        "results": sessions[0].results_log if sessions else [],  # the first session's results, in order
    }


def markdown(rows: list[dict[str, object]], bound_s: float) -> str:
    def f(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    metric = "cer" if rows and "cer" in rows[0] else "wer"
    lines = [
        f"| streams | utterances | p50 latency (s) | p95 latency (s) | max (s) | p50 / p95 from endpoint (s) | p50 / p95 from end of speech (s) "
        f"| {metric.upper()} | CPU s / audio s (of which main process) | peak RSS (MB) | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['streams']} | {r['utterances']} | {f(r['latency_p50_s'], '.2f')} | {f(r['latency_p95_s'], '.2f')} | {f(r['latency_max_s'], '.2f')} | "
            f"{f(r.get('endpoint_latency_p50_s'), '.2f')} / {f(r.get('endpoint_latency_p95_s'), '.2f')} | "
            f"{f(r.get('speech_end_latency_p50_s'), '.2f')} / {f(r.get('speech_end_latency_p95_s'), '.2f')} | "
            f"{f(r.get(metric), '.3f')} | {f(r['cpu_s_per_audio_s'], '.3f')} ({f(r.get('main_cpu_s_per_audio_s'), '.3f')}) | "
            f"{f(r['peak_rss_mb'], '.0f')} | {r['errors'] or 0} |"
        )
    ok = [r["streams"] for r in rows if not r["errors"] and r["latency_p95_s"] is not None and r["latency_p95_s"] <= bound_s]
    lines.append("")
    lines.append(f"max real-time streams (p95 final latency <= {bound_s} s, no errors): {max(ok) if ok else 0}")  # type: ignore[type-var]
    return "\n".join(lines)


def partials_table(rows: list[dict[str, object]]) -> str:
    """The partial numbers of the runs with partials on (one line per run)."""
    lines = [f"| streams {PARTIAL_TABLE_HEADER} %C partials decoded / sent / dropped under load |",
             "|---:" * (PARTIAL_TABLE_HEADER.count("|") + 1) + "|"]
    for r in rows:
        m = r.get("partials")
        if isinstance(m, dict):
            lines.append(f"| {r['streams']} {partial_markdown(m)} {m.get('status_decoded', '-')} / {m.get('status_sent', '-')} / "
                         f"{m.get('status_dropped_under_load', '-')} |")
    return "\n".join(lines)


def max_realtime_streams(rows: list[dict[str, object]], bound_s: float) -> int:
    """The largest stream count whose p95 final latency is within ``bound_s`` with no errors (as :func:`markdown`)."""
    ok = [int(r["streams"]) for r in rows if not r["errors"] and r["latency_p95_s"] is not None and r["latency_p95_s"] <= bound_s]  # type: ignore[call-overload, operator]
    return max(ok) if ok else 0


def compare_table(off: list[dict[str, object]], on: list[dict[str, object]], bound_s: float) -> str:
    """Partials off against on, per stream count: final latency p50/p95, WER, CPU, with on/off ratios."""
    def f(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    def ratio(a: object, b: object) -> str:
        return f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"

    metric = "cer" if off and "cer" in off[0] else "wer"
    lines = [f"| streams | p50 latency off / on (s) | ratio | p95 latency off / on (s) | ratio | from end of speech p50 / p95, off (s) "
             f"| from end of speech p50 / p95, on (s) | {metric.upper()} off / on | CPU s / audio s off / on | ratio | speculations used off / on | errors off / on |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for a, b in zip(off, on):
        lines.append(
            f"| {a['streams']} | {f(a['latency_p50_s'], '.2f')} / {f(b['latency_p50_s'], '.2f')} | {ratio(a['latency_p50_s'], b['latency_p50_s'])} "
            f"| {f(a['latency_p95_s'], '.2f')} / {f(b['latency_p95_s'], '.2f')} | {ratio(a['latency_p95_s'], b['latency_p95_s'])} "
            f"| {f(a.get('speech_end_latency_p50_s'), '.2f')} / {f(a.get('speech_end_latency_p95_s'), '.2f')} "
            f"| {f(b.get('speech_end_latency_p50_s'), '.2f')} / {f(b.get('speech_end_latency_p95_s'), '.2f')} "
            f"| {f(a.get(metric), '.3f')} / {f(b.get(metric), '.3f')} | {f(a['cpu_s_per_audio_s'], '.3f')} / {f(b['cpu_s_per_audio_s'], '.3f')} "
            f"| {ratio(a['cpu_s_per_audio_s'], b['cpu_s_per_audio_s'])} | {a.get('speculations_used', '-')} / {b.get('speculations_used', '-')} "
            f"| {a['errors'] or 0} / {b['errors'] or 0} |")
    lines.append("")
    lines.append(f"max real-time streams (p95 final latency <= {bound_s} s, no errors): off {max_realtime_streams(off, bound_s)}, "
                 f"on {max_realtime_streams(on, bound_s)}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None, help="use only the first N files")
    p.add_argument("--language", default="en", help="reference language: en -> WER, ko/ja/zh -> CER")
    p.add_argument("--streams", default="1", help="comma-separated concurrency levels, e.g. 1,2,4,8")
    p.add_argument("--latency-bound-s", type=float, default=2.0)
    p.add_argument("--speed", type=float, default=1.0, help="pace (1 = real time)")
    p.add_argument("--stagger-s", type=float, default=0.37, help="start session i after i*stagger seconds")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="measure a running server instead of starting one")
    p.add_argument("--server-pid", type=int, default=None, help="with --port: the server's pid, for CPU and RSS")
    p.add_argument("--sample-rate", type=int, default=16000, choices=(8000, 16000), help="stream at this rate (negotiated with %%o)")
    p.add_argument("--encoding", default="pcm_s16le", choices=("pcm_s16le", "mulaw", "alaw"), help="stream in this encoding (negotiated with %%o)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="one more %%o option for every stream, e.g. speakers=auto (repeatable)")
    p.add_argument("--partials", action="store_true", help="every stream asks for partial hypotheses (%%o partials=1); adds the partial table")
    p.add_argument("--compare-partials", action="store_true", help="at each --streams level, a run with partials off, then one with them on")
    p.add_argument("--door", default="tcp", choices=("tcp", "websocket", "both"),
                   help="stream over the TCP door, the WebSocket door (/v1/stream), or both (TCP first) at each level")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/stream_bench-<time>.json)")
    args = p.parse_args()
    for item in args.option:
        key, _, value = item.partition("=")
        EXTRA_OPTIONS[key] = value

    files = load_dir(args.audio_dir, limit=args.files, sample_rate_hz=args.sample_rate)
    if not files:
        p.error(f"no audio files in {args.audio_dir}")
    config = load_config(args.config)
    vad = vad_options_from_config(config)
    levels = [int(x) for x in args.streams.split(",")]
    server = None
    if args.port is None:
        server = ServerProcess(config=args.config, host=args.host, port=0)
        host, port, pid = server.host, server.port, server.pid
        http_port = server.http_port
    else:
        host, port, pid = args.host, args.port, args.server_pid
        http_port = None
    doors = ["tcp", "websocket"] if args.door == "both" else [args.door]
    if "websocket" in doors and http_port is None:
        p.error("--door websocket needs a server started here with http.enabled")
    modes = [False, True] if args.compare_partials else [args.partials]
    rows = []
    try:
        for n in levels:
            for door in doors:
                for on in modes:
                    row = bench_run(n, host, port, files, pid=pid, speed=args.speed, stagger_s=args.stagger_s, vad=vad, language=args.language,
                                    encoding=args.encoding, partials=on, first_after_s=config.partials.first_after_s,
                                    ws_port=http_port if door == "websocket" else None)
                    rows.append(row)
                    print(markdown([row], args.latency_bound_s).splitlines()[2] + (" (partials on)" if on else "") + f" ({door})", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    report = {
        "machine": machine_info(),
        "config": config.model_dump(mode="json"),
        "audio_dir": str(args.audio_dir),
        "files": [f.name for f in files],
        "speed": args.speed,
        "sample_rate_hz": args.sample_rate,
        "encoding": args.encoding,
        "latency_bound_s": args.latency_bound_s,
        "runs": rows,
    }
    if args.partials or args.compare_partials:
        report["partials_config"] = config.partials.model_dump(mode="json")
    out = args.out or Path(__file__).resolve().parent / "results" / f"stream_bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    m = report["machine"]
    c = config.model
    print(f"machine: {m['cpu']}, {m['cores']} cores; model {c.size} ({c.engine}, {c.device}, {c.compute_type}, beam {c.beam_size}, channel {c.channel}, cpu_threads {c.cpu_threads})")
    print(f"files: {len(files)} from {args.audio_dir}, {sum(f.duration_s for f in files):.1f} s of speech per stream\n")
    if args.compare_partials:
        off, on = [r for r in rows if not r.get("partials_on")], [r for r in rows if r.get("partials_on")]
        print("partials off:\n" + markdown(off, args.latency_bound_s) + "\n\npartials on:\n" + markdown(on, args.latency_bound_s))
        print("\npartials off against on (same server, off first at each level):\n" + compare_table(off, on, args.latency_bound_s))
    elif len(doors) > 1:
        for door in doors:
            print(f"{door}:\n" + markdown([r for r in rows if r["door"] == door], args.latency_bound_s) + "\n")
    else:
        print(markdown(rows, args.latency_bound_s))
    if args.partials or args.compare_partials:
        p_ = config.partials
        print(f"\npartial hypotheses (first_after_s {p_.first_after_s}, min_interval_s {p_.min_interval_s}, cost_factor {p_.cost_factor}):")
        print(partials_table(rows))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
