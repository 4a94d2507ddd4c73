"""The Redis backend (issue 16) against the local process pool: what dispatch through Redis costs per
utterance, and final latency and real-time streams with one front end and 1 or 2 worker hosts.

``dispatch``: the round trip of one utterance, submit to result, through each backend with the
same engine, one that answers at once (:mod:`bench.trivial_engine`), so what is measured is
the dispatch alone:

* path 1, **local**: :class:`~whisper_streaming.backends.pool.ProcessPool` with one worker
  process (this process's event loop, a pipe, the worker);
* path 2, **redis**: :class:`~whisper_streaming.backends.redis_backend.RedisBackend` in this
  process, our own ``redis-server`` on loopback (:class:`bench.redis_process.RedisProcess`) and
  one worker host (:class:`~whisper_streaming.backends.redis_worker.WorkerHost`) in a child
  process of its own, as deployed, whose engines are a ``ProcessPool`` of one worker with the
  same engine; then again with a second host.

Utterances of ``--sizes`` seconds (16 kHz s16le noise: 3 s is 96,000 bytes) go one at a time
(never two in flight, so nothing queues); ``--warmup`` round trips of each path first, not
counted, then ``--n``.  Both paths are measured in the same loop, alternating (A B, then B A,
...), so a slow spell of the machine falls on both: the **overhead** is reported as the
difference of their percentiles and as the median of the paired differences (redis round trip
minus the local one measured next to it).  The issue's bound: under 10 ms at p50 on loopback.

``streams``: the real model.  For each setup, Redis (when used), the worker hosts
(:class:`bench.worker_process.WorkerProcess`) and one front end
(:class:`bench.server_process.ServerProcess`) are started from a generated config
(``backend.kind: redis``, ``model.language: en``, ``model.channel: 1`` per host, everything
else default; the local setup: ``backend.kind: local``, ``model.channel: 2``), then
:func:`bench.stream_bench.bench_run` streams the audio files at each ``--streams`` level against
the front end's port.  Reported per setup and level: p50/p95 final latency, failed sessions,
WER, CPU seconds per audio second of the front end, the hosts and Redis, and max real-time
streams.  All processes share this machine's cores: a second host adds engines, not cores.

Usage (from the repository root: the engine processes import ``bench.trivial_engine``)::

    .venv/bin/python -m bench.redis_bench dispatch [--n 300] [--warmup 20] [--sizes 1,3,10]
    .venv/bin/python -m bench.redis_bench streams [--streams 1,4,8] [--hosts 1,2] [--no-local] [--dry-run | --fake-engine]

``--dry-run`` writes and validates the configs and starts nothing; ``--fake-engine`` runs the
Redis setups end to end with worker hosts whose engine answers at once (no model), to check the
harness: its numbers mean nothing.

Each writes JSON (machine included) to ``bench/results/`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.synchronize
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import DEFAULT_AUDIO_DIR, machine_info, percentile  # noqa: E402
from bench.redis_process import RedisProcess  # noqa: E402
from bench.trivial_engine import make_engine  # noqa: E402
from whisper_streaming.backends.base import AsrBackend, UtteranceJob  # noqa: E402
from whisper_streaming.backends.pool import PoolOptions, ProcessPool  # noqa: E402
from whisper_streaming.backends.redis_backend import RedisBackend, RedisBackendOptions  # noqa: E402
from whisper_streaming.backends.redis_protocol import RedisOptions  # noqa: E402
from whisper_streaming.backends.redis_worker import WorkerHost, WorkerHostOptions  # noqa: E402
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ  # noqa: E402
from whisper_streaming.engines.base import EngineOptions  # noqa: E402
from whisper_streaming.errors import WhisperStreamingError  # noqa: E402

__all__ = [
    "Distribution",
    "HostProcess",
    "dispatch_bench",
    "dispatch_markdown",
    "describe",
    "utterance_pcm",
    "write_config",
    "streams_bench",
    "streams_markdown",
    "main",
]

RESULTS_DIR = ROOT / "bench" / "results"
ROUND_TRIP_TIMEOUT_S = 30.0
"""One utterance's round trip longer than this fails the benchmark (something is broken)."""
HOST_START_TIMEOUT_S = 60.0
"""A worker host child that is not serving after this long fails the benchmark."""
ISSUE_BOUND_P50_MS = 10.0
"""Issue 16: dispatch through Redis adds under this much at p50 per utterance on loopback."""
DEFAULT_LATENCY_BOUND_S = 2.0
"""Max real-time streams: the largest level whose p95 final latency is within this, no errors (as bench/stream_bench.py)."""


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Distribution:
    """Round trips of one path, in milliseconds."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


def describe(samples_s: Sequence[float]) -> Distribution:
    """Percentiles (numpy's linear interpolation), mean, min and max of ``samples_s`` (seconds), in ms.

    Raises:
        ValueError: no samples.
    """
    if not samples_s:
        raise ValueError("no samples")
    ms = [1000.0 * s for s in samples_s]
    return Distribution(len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), statistics.fmean(ms),  # type: ignore[arg-type]
                        min(ms), max(ms))


def utterance_pcm(seconds: float, seed: int = 0) -> bytes:
    """``seconds`` of 16 kHz s16le mono noise (about -20 dBFS; the engine ignores it, but a pickle
    of random samples is as large as one of speech): ``2 * 16000 * seconds`` bytes."""
    n = round(seconds * ASR_SAMPLE_RATE_HZ)
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 3277.0, n), -32768, 32767).astype("<i2").tobytes()


# --------------------------------------------------------------------------- the engines


def local_pool_options(workers: int = 1) -> PoolOptions:
    """A pool of ``workers`` trivial engines, with the pool's defaults otherwise (as a server's)."""
    return PoolOptions(EngineOptions(engine="trivial", model="none"), workers=workers, engine_factory=make_engine)


def host_pool_options(workers: int = 1) -> PoolOptions:
    """A worker host's engines: as ``worker_host_options_from_config`` makes them (no throttle, no
    partial workers: the front end keeps fairness), with trivial engines."""
    return PoolOptions(EngineOptions(engine="trivial", model="none"), workers=workers, engine_factory=make_engine,
                       throttle_worker_s_per_s=None, partial_workers=0)


def _host_main(url: str, heartbeat_s: float, workers: int, ready: multiprocessing.synchronize.Event,
               stop: multiprocessing.synchronize.Event, answered: Any) -> None:
    """Child process: one :class:`WorkerHost` on ``url`` with ``workers`` trivial engines, until
    ``stop`` is set or the parent is gone; ``answered`` (a shared int) gets the jobs it answered."""
    import logging

    logging.basicConfig(level=logging.WARNING, format=f"host {os.getpid()} %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        redis = RedisOptions(url=url, heartbeat_s=heartbeat_s, worker_ttl_s=3 * heartbeat_s, claim_after_s=3 * heartbeat_s)
        host = WorkerHost(WorkerHostOptions(redis, host_pool_options(workers)))
        await host.start()
        ready.set()
        parent = multiprocessing.parent_process()
        try:
            while not stop.is_set() and (parent is None or parent.is_alive()):
                await asyncio.sleep(0.1)
        finally:
            await host.stop(timeout_s=10.0)
            answered.value = host.answered

    asyncio.run(run())


class HostProcess:
    """A worker host with trivial engines in a ``spawn``-ed child process (not a daemon: its
    engines are child processes of its own). Use as a context manager, or call :meth:`stop`."""

    def __init__(self, url: str, *, heartbeat_s: float = 1.0, workers: int = 1, start_timeout_s: float = HOST_START_TIMEOUT_S) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._answered = ctx.Value("i", -1)
        self.proc = ctx.Process(target=_host_main, args=(url, heartbeat_s, workers, self._ready, self._stop, self._answered),
                                name="redis-bench-host", daemon=False)
        self.proc.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._ready.wait(0.1):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                self.stop(timeout_s=5.0)
                raise WhisperStreamingError(f"worker host child did not start (exit code {self.proc.exitcode})")

    @property
    def answered(self) -> int:
        """Jobs the host answered (known once it stopped; -1 before)."""
        return int(self._answered.value)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the host to stop (it finishes what it holds), wait; kill after ``timeout_s``."""
        self._stop.set()
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- dispatch


async def _round_trip(backend: AsrBackend, job: UtteranceJob) -> float:
    """Seconds from ``submit`` to the result of one utterance (session ``bench``).

    Raises:
        WhisperStreamingError: the result is not the trivial engine's, or took over :data:`ROUND_TRIP_TIMEOUT_S`.
    """
    t0 = time.perf_counter()
    future = await backend.submit("bench", job)
    try:
        result = await asyncio.wait_for(future, ROUND_TRIP_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise WhisperStreamingError(f"{type(backend).__name__}: no result within {ROUND_TRIP_TIMEOUT_S:g} s") from None
    elapsed = time.perf_counter() - t0
    if not result.transcript.text:
        raise WhisperStreamingError(f"{type(backend).__name__}: empty transcript")
    return elapsed


async def _paired(local: AsrBackend, redis: RedisBackend, job: UtteranceJob, n: int, warmup: int) -> tuple[list[float], list[float]]:
    """``warmup`` then ``n`` round trips of each path, alternating which goes first; returns (local, redis) in seconds."""
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + n):
        if i % 2 == 0:
            ta, tb = await _round_trip(local, job), await _round_trip(redis, job)
        else:
            tb, ta = await _round_trip(redis, job), await _round_trip(local, job)
        if i >= warmup:
            a.append(ta)
            b.append(tb)
    return a, b


async def _wait_slots(front: RedisBackend, slots: int, timeout_s: float) -> None:
    """Until the front end counts ``slots`` live engines."""
    deadline = time.monotonic() + timeout_s
    while not (front.capacity().available and front.capacity().slots == slots):
        if time.monotonic() > deadline:
            raise WhisperStreamingError(f"the front end did not see {slots} live engine(s) within {timeout_s:g} s")
        await asyncio.sleep(0.02)


def _phase(size_s: float, hosts: int, a: list[float], b: list[float]) -> dict[str, Any]:
    diffs = [y - x for x, y in zip(a, b)]
    da, db = describe(a), describe(b)
    return {"size_s": size_s, "bytes": round(size_s * ASR_SAMPLE_RATE_HZ) * 2, "hosts": hosts, "local": asdict(da), "redis": asdict(db),
            "overhead_ms": {"p50": db.p50_ms - da.p50_ms, "p95": db.p95_ms - da.p95_ms, "p99": db.p99_ms - da.p99_ms,
                            "mean": db.mean_ms - da.mean_ms, "paired_median": 1000.0 * statistics.median(diffs)},
            "raw_s": {"local": a, "redis": b}}


def _redis_server_version(server: RedisProcess) -> str:
    with server.client() as client:
        return str(client.info("server").get("redis_version"))


async def _dispatch(n: int, warmup: int, sizes_s: Sequence[float], two_hosts: bool, heartbeat_s: float) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    split: dict[str, int] = {}
    jobs = {s: UtteranceJob(utterance_pcm(s, seed=i)) for i, s in enumerate(sizes_s)}
    pool = ProcessPool(local_pool_options())
    await pool.start()
    try:
        with RedisProcess() as server:
            version = _redis_server_version(server)
            redis = RedisOptions(url=server.url, heartbeat_s=heartbeat_s, worker_ttl_s=3 * heartbeat_s, claim_after_s=3 * heartbeat_s)
            front = RedisBackend(RedisBackendOptions(redis))
            await front.start()
            first = HostProcess(server.url, heartbeat_s=heartbeat_s)
            second: HostProcess | None = None
            try:
                await _wait_slots(front, 1, 10 * heartbeat_s + 5)
                for s in sizes_s:
                    phases.append(_phase(s, 1, *await _paired(pool, front, jobs[s], n, warmup)))
                if two_hosts:
                    before = front.status().utterances_done
                    second = HostProcess(server.url, heartbeat_s=heartbeat_s)
                    await _wait_slots(front, 2, 10 * heartbeat_s + 5)
                    for s in sizes_s:
                        phases.append(_phase(s, 2, *await _paired(pool, front, jobs[s], n, warmup)))
                    second.stop()
                    phase2_jobs = front.status().utterances_done - before
                    split = {"second_host": second.answered, "first_host": phase2_jobs - second.answered}
            finally:
                if second is not None:
                    second.stop()
                first.stop()
                await front.close()
    finally:
        await pool.close()
    import redis as redis_py

    return {"bench": "redis_bench dispatch", "machine": machine_info(), "redis_server": version, "redis_py": redis_py.__version__,
            "n": n, "warmup": warmup, "heartbeat_s": heartbeat_s, "issue_bound_p50_ms": ISSUE_BOUND_P50_MS,
            "phases": phases, "two_host_split": split}


def dispatch_bench(n: int = 300, warmup: int = 20, sizes_s: Sequence[float] = (1.0, 3.0, 10.0), *, two_hosts: bool = True,
                   heartbeat_s: float = 1.0) -> dict[str, Any]:
    """Part A (see the module docstring): returns the report (``phases``: one per size and host
    count, each with both distributions in ms, the overhead and the raw round trips in s).

    ``heartbeat_s``: of the hosts and the front end (only how soon a new host is seen; the
    default is the config's).

    Raises:
        WhisperStreamingError: a round trip failed or a process did not start.
    """
    return asyncio.run(_dispatch(n, warmup, tuple(sizes_s), two_hosts, heartbeat_s))


def dispatch_markdown(report: dict[str, Any]) -> str:
    """Two tables: the round trips of each path, and the overhead of Redis over the local pool."""
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; redis-server {report['redis_server']}, "
             f"redis-py {report['redis_py']}; n = {report['n']} per path and size after {report['warmup']} warm-up, sequential",
             "",
             "| utterance | path | p50 (ms) | p95 (ms) | p99 (ms) | mean (ms) | min / max (ms) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for ph in report["phases"]:
        for name, label in (("local", "local pool, 1 worker"), ("redis", f"redis, {ph['hosts']} host{'s' if ph['hosts'] > 1 else ''}")):
            if name == "local" and ph["hosts"] > 1:
                label += f" (beside {ph['hosts']} hosts)"
            d = ph[name]
            lines.append(f"| {ph['size_s']:g} s ({ph['bytes']:,} B) | {label} | {d['p50_ms']:.2f} | {d['p95_ms']:.2f} | {d['p99_ms']:.2f} | "
                         f"{d['mean_ms']:.2f} | {d['min_ms']:.2f} / {d['max_ms']:.2f} |")
    lines += ["",
              "| utterance | hosts | overhead p50 (ms) | p95 (ms) | p99 (ms) | mean (ms) | median of paired differences (ms) "
              f"| p50 under {report['issue_bound_p50_ms']:g} ms |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for ph in report["phases"]:
        o = ph["overhead_ms"]
        ok = "yes" if o["p50"] < report["issue_bound_p50_ms"] and o["paired_median"] < report["issue_bound_p50_ms"] else "**no**"
        lines.append(f"| {ph['size_s']:g} s | {ph['hosts']} | {o['p50']:.2f} | {o['p95']:.2f} | {o['p99']:.2f} | {o['mean']:.2f} | "
                     f"{o['paired_median']:.2f} | {ok} |")
    split = report.get("two_host_split")
    if split:
        lines += ["", f"with 2 hosts, jobs answered: first host {split['first_host']}, second host {split['second_host']}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class Setup:
    """One configuration of part B: ``hosts`` worker hosts of ``channel`` engines (0 hosts: the local backend)."""

    name: str
    hosts: int
    channel: int

    @property
    def redis(self) -> bool:
        return self.hosts > 0


def write_config(path: Path, setup: Setup, *, redis_url: str | None, unlimited_per_ip: bool) -> Path:
    """The generated config of ``setup`` (everything not named here is the default).

    ``unlimited_per_ip``: ``server.max_connections_per_ip: 0`` (every stream comes from 127.0.0.1;
    the default limit is three quarters of ``server.max_connections``)."""
    text = f"model:\n  language: en\n  channel: {setup.channel}\n"
    if setup.redis:
        text += f"backend:\n  kind: redis\n  redis_url: {redis_url or 'redis://127.0.0.1:6379/0'}\n"
    else:
        text += "backend:\n  kind: local\n"
    if unlimited_per_ip:
        text += "server:\n  max_connections_per_ip: 0\n"
    path.write_text(text, encoding="utf-8")
    return path


def _hosts_live(status: str | None) -> int | None:
    """Live worker hosts from the ``redis: connected; worker hosts live N`` line of ``%C``."""
    for line in (status or "").splitlines():
        if "worker hosts live " in line and "connected" in line and "UNREACHABLE" not in line:
            return int(line.split("worker hosts live ", 1)[1].split()[0])
    return None


def _wait_hosts_live(host: str, port: int, hosts: int, timeout_s: float = 30.0) -> None:
    from bench.stream_bench import server_status

    deadline = time.monotonic() + timeout_s
    while (_hosts_live(asyncio.run(server_status(host, port))) or 0) < hosts:
        if time.monotonic() > deadline:
            raise WhisperStreamingError(f"the front end did not see {hosts} live worker host(s) within {timeout_s:g} s")
        time.sleep(0.5)


def _cpu_s(pids: Sequence[int]) -> float:
    from bench.stream_bench import tree_cpu_s

    return sum(tree_cpu_s(p) for p in pids)


def _run_setup(setup: Setup, levels: Sequence[int], files: list[Any], workdir: Path, unlimited_per_ip: bool, *, speed: float = 1.0,
               fake_engine: bool = False) -> list[dict[str, Any]]:
    """Start the processes of ``setup``, run every level against its front end, stop them.

    ``fake_engine``: the worker hosts are :class:`HostProcess` children with trivial engines (no
    model; only for a Redis setup): the harness end to end, its latencies and WER meaningless."""
    from bench.server_process import ServerProcess
    from bench.stream_bench import bench_run
    from bench.worker_process import WorkerProcess
    from whisper_streaming.app.wiring import vad_options_from_config
    from whisper_streaming.config.schema import load_config

    rows = []
    logs = workdir / setup.name
    logs.mkdir(parents=True, exist_ok=True)
    server: RedisProcess | None = RedisProcess(log_path=logs / "redis.log") if setup.redis else None
    workers: list[WorkerProcess | HostProcess] = []
    front: ServerProcess | None = None
    if fake_engine and not setup.redis:
        raise ValueError("fake_engine: the local backend needs the model")
    try:
        config = write_config(logs / "config.yaml", setup, redis_url=server.url if server else None, unlimited_per_ip=unlimited_per_ip)
        vad = vad_options_from_config(load_config(config))
        for i in range(setup.hosts):  # one after another: each loads the model
            assert server is not None
            workers.append(HostProcess(server.url) if fake_engine else WorkerProcess(config=config, log_path=logs / f"host{i + 1}.log"))
        front = ServerProcess(config=config, log_path=logs / "frontend.log")
        if setup.redis:
            _wait_hosts_live(front.host, front.port, setup.hosts)
        for n in levels:
            host_pids = [w.proc.pid for w in workers]
            h0 = _cpu_s(host_pids)
            r0 = _cpu_s([server.pid]) if server else 0.0
            row = bench_run(n, front.host, front.port, files, pid=front.pid, speed=speed, vad=vad, language="en")
            audio_s = float(row["audio_s"]) or 1.0  # type: ignore[arg-type]
            row["setup"] = setup.name
            row["hosts"] = setup.hosts
            row["hosts_cpu_s_per_audio_s"] = (_cpu_s(host_pids) - h0) / audio_s if workers else None
            row["redis_cpu_s_per_audio_s"] = (_cpu_s([server.pid]) - r0) / audio_s if server else None
            row["failed_sessions"] = sum(row["errors"].values())  # type: ignore[attr-defined]
            rows.append(row)
            print(f"{setup.name}: {streams_markdown(rows[-1:], DEFAULT_LATENCY_BOUND_S).splitlines()[2]}", file=sys.stderr, flush=True)
    finally:
        if front is not None:
            front.stop()
        for w in workers:
            w.stop()
        if server is not None:
            server.close()
    return rows


def setups(hosts: Sequence[int], local: bool, local_channel: int = 2) -> list[Setup]:
    """The setups of part B: ``redis-<k>host`` for each ``k`` of ``hosts`` (1 engine each), then the local backend."""
    out = [Setup(f"redis-{k}host{'s' if k > 1 else ''}", k, 1) for k in hosts]
    if local:
        out.append(Setup(f"local-channel{local_channel}", 0, local_channel))
    return out


def streams_bench(levels: Sequence[int], hosts: Sequence[int] = (1, 2), *, local: bool = True, audio_dir: Path = DEFAULT_AUDIO_DIR,
                  files_limit: int | None = None, workdir: Path | None = None, speed: float = 1.0,
                  fake_engine: bool = False) -> dict[str, Any]:
    """Part B (see the module docstring): every setup at every level; returns the report.

    ``speed``: pace of the streams (1: real time); ``fake_engine``: hosts with trivial engines,
    no local setup (see :func:`_run_setup`).

    Raises:
        WhisperStreamingError: a process did not start; UsageError: no audio files.
    """
    from bench.common import load_dir
    from whisper_streaming.errors import UsageError

    files = load_dir(audio_dir, limit=files_limit)
    if not files:
        raise UsageError(f"no audio files in {audio_dir}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="redis_bench-streams-", dir=RESULTS_DIR))
    unlimited = max(levels) > 12
    rows: list[dict[str, Any]] = []
    for setup in setups(hosts, local and not fake_engine):
        rows += _run_setup(setup, levels, files, workdir, unlimited, speed=speed, fake_engine=fake_engine)
    return {"bench": "redis_bench streams", "machine": machine_info(), "audio_dir": str(audio_dir), "files": [f.name for f in files],
            "levels": list(levels), "speed": speed, "fake_engine": fake_engine, "logs": str(workdir), "max_connections_per_ip_0": unlimited,
            "runs": rows}


def streams_markdown(rows: list[dict[str, Any]], bound_s: float) -> str:
    """One line per setup and level, then max real-time streams per setup."""
    def f(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    lines = ["| setup | streams | utterances | p50 final latency (s) | p95 (s) | failed sessions | WER "
             "| CPU s / audio s: front end (process tree) / hosts / redis | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['streams']} | {r['utterances']} | {f(r['latency_p50_s'], '.2f')} | {f(r['latency_p95_s'], '.2f')} | "
                     f"{r['failed_sessions']} | {f(r.get('wer'), '.3f')} | {f(r.get('cpu_s_per_audio_s'), '.3f')} / "
                     f"{f(r.get('hosts_cpu_s_per_audio_s'), '.3f')} / {f(r.get('redis_cpu_s_per_audio_s'), '.3f')} | {r['errors'] or 0} |")
    lines.append("")
    for name in dict.fromkeys(r["setup"] for r in rows):
        ok = [int(r["streams"]) for r in rows if r["setup"] == name and not r["errors"] and r["latency_p95_s"] is not None
              and r["latency_p95_s"] <= bound_s]
        lines.append(f"max real-time streams, {name} (p95 final latency <= {bound_s} s, no errors): {max(ok) if ok else 0}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _out_path(given: Path | None, kind: str) -> Path:
    out = given or RESULTS_DIR / f"redis_bench-{kind}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _sizes(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.redis_bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    d = sub.add_parser("dispatch", help="dispatch overhead per utterance: Redis + worker host against the local pool (trivial engine)")
    d.add_argument("--n", type=int, default=300, help="round trips per path and size (after the warm-up)")
    d.add_argument("--warmup", type=int, default=20, help="round trips per path and size not counted")
    d.add_argument("--sizes", type=_sizes, default=[1.0, 3.0, 10.0], help="utterance lengths in seconds, comma-separated")
    d.add_argument("--one-host", action="store_true", help="skip the run with a second worker host")
    d.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/redis_bench-dispatch-<time>.json)")
    s = sub.add_parser("streams", help="final latency and real-time streams: 1 front end and 1 or 2 worker hosts (real model), and the local backend")
    s.add_argument("--streams", type=_ints, default=[1, 4, 8], help="concurrency levels, comma-separated")
    s.add_argument("--hosts", type=_ints, default=[1, 2], help="worker host counts, comma-separated (1 engine each)")
    s.add_argument("--no-local", action="store_true", help="skip the local backend (model.channel 2) for comparison")
    s.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    s.add_argument("--files", type=int, default=None, help="use only the first N files")
    s.add_argument("--latency-bound-s", type=float, default=DEFAULT_LATENCY_BOUND_S)
    s.add_argument("--speed", type=float, default=1.0, help="pace of the streams (1 = real time)")
    s.add_argument("--dry-run", action="store_true", help="write and validate the configs, print the plan; start nothing")
    s.add_argument("--fake-engine", action="store_true",
                   help="worker hosts with an engine that answers at once (no model), no local setup: checks the harness "
                        "end to end; its latencies and WER mean nothing")
    s.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/redis_bench-streams-<time>.json)")
    args = p.parse_args(argv)

    if args.part == "dispatch":
        report = dispatch_bench(args.n, args.warmup, args.sizes, two_hosts=not args.one_host)
        out = _out_path(args.out, "dispatch")
        out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(dispatch_markdown(report))
        exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
        print(f"\ncommand: {' '.join([exe, '-m', 'bench.redis_bench', *(argv if argv is not None else sys.argv[1:])])}")
        print(f"JSON: {out}")
        return 0

    plan = setups(args.hosts, not args.no_local)
    if args.dry_run:
        from whisper_streaming.config.schema import load_config

        with tempfile.TemporaryDirectory() as tmp:
            for setup in plan:
                path = write_config(Path(tmp) / f"{setup.name}.yaml", setup, redis_url="redis://127.0.0.1:1/0",
                                    unlimited_per_ip=max(args.streams) > 12)
                c = load_config(path)
                print(f"{setup.name}: {setup.hosts} worker host(s) x {setup.channel} engine(s)" if setup.redis
                      else f"{setup.name}: local backend, {setup.channel} worker(s)")
                print("  config (valid): backend.kind " + c.backend.kind + f", model.channel {c.model.channel}, model.language {c.model.language}")
                print("  " + path.read_text(encoding="utf-8").replace("\n", "\n  ").rstrip())
        print(f"levels: {args.streams}; audio: {args.audio_dir}" + (f" (first {args.files} files)" if args.files else ""))
        print(f"note: the front end, Redis and every worker host share this machine's {os.cpu_count()} cores")
        return 0
    report = streams_bench(args.streams, args.hosts, local=not args.no_local, audio_dir=args.audio_dir, files_limit=args.files,
                           speed=args.speed, fake_engine=args.fake_engine)
    out = _out_path(args.out, "streams")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}")
    print(f"note: the front end, Redis and every worker host share these {m['cores']} cores: a second host adds engines, not CPU")
    print(f"files: {len(report['files'])} from {report['audio_dir']}, speed {report['speed']:g}\n")
    if report["fake_engine"]:
        print("FAKE ENGINE (--fake-engine): the hosts answer a fixed text at once; latency and WER below measure nothing\n")
    print(streams_markdown(report["runs"], args.latency_bound_s))
    print(f"\nlogs and configs: {report['logs']}\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
