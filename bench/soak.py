#!/usr/bin/env python3
"""Soak: many sessions, bounded concurrency, faster than real time; checks leaks.

Defaults: 300 sessions, at most 16 at once, each streaming one real speech file from
``--audio-dir`` at ``--speed`` x real time (default 1.5).  Refusals by the overload policy
(``SERVER_TOO_BUSY``) are retried after 0.5 s, as a gateway would, and counted apart from
errors.  Reports errors, the server's open file descriptors
and asyncio tasks (from ``%C``) before and after, and its RSS (whole process tree, from /proc)
after the first 50 sessions and at the end.  Passes when there are no errors, no leaked fds
or tasks, and the final RSS is within 10 % of the RSS after 50 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, load_dir, machine_info  # noqa: E402
from bench.stream_bench import tree_rss_bytes  # noqa: E402
from whisper_streaming.client.streaming import AsyncStreamingClient  # noqa: E402
from whisper_streaming.client.cli import stream_file  # noqa: E402
from whisper_streaming.errors import ServerError, WhisperStreamingError  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402


async def status(host: str, port: int) -> str:
    client = await AsyncStreamingClient.connect(host, port)
    try:
        return await client.status()
    finally:
        await client.close()


def counter(text: str, name: str) -> int:
    return int(re.search(rf"^{name}: (\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def soak(args: argparse.Namespace, server: ServerProcess) -> dict[str, object]:
    files = [f for f in load_dir(args.audio_dir) if f.duration_s <= args.max_file_s]
    rng = random.Random(args.seed)
    host, port, pid = server.host, server.port, server.pid
    base_status = await status(host, port)
    report: dict[str, object] = {"fds_before": fds(pid), "tasks_before": counter(base_status, "tasks")}
    sem = asyncio.Semaphore(args.concurrency)
    errors: list[str] = []
    refusals = 0
    done = 0
    rss_after_50: list[int] = []

    async def one(i: int) -> None:
        nonlocal done
        f = rng.choice(files)
        nonlocal refusals
        async with sem:
            try:
                while True:  # a gateway retries an admission refusal (the overload policy) later
                    try:
                        client = await AsyncStreamingClient.connect(host, port, user_id=f"soak{i}", timeout_s=30)
                        break
                    except ServerError as exc:
                        if exc.reason != "SERVER_TOO_BUSY":
                            raise
                        refusals += 1
                        await asyncio.sleep(0.5)
                try:
                    await stream_file(client, f.pcm + b"\x00\x00" * 9600, speed=args.speed)
                finally:
                    await client.close()
            except (WhisperStreamingError, OSError, asyncio.TimeoutError) as exc:
                errors.append(f"session {i}: {type(exc).__name__}: {exc}")
        done += 1
        if done == 50:
            rss_after_50.append(tree_rss_bytes(pid))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.sessions)))
    report["wall_s"] = time.monotonic() - t0
    await asyncio.sleep(1.0)
    end_status = await status(host, port)
    report.update(
        sessions=args.sessions,
        concurrency=args.concurrency,
        errors=errors,
        admission_refusals_retried=refusals,
        fds_after=fds(pid),
        tasks_after=counter(end_status, "tasks"),
        rss_after_50_mb=rss_after_50[0] / 2**20 if rss_after_50 else None,
        rss_end_mb=tree_rss_bytes(pid) / 2**20,
        status_end=end_status,
    )
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--speed", type=float, default=1.5)
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--max-file-s", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    args = p.parse_args()
    # max_connections must admit the whole concurrency
    with ServerProcess(config=args.config, extra_args=()) as server:
        report = asyncio.run(soak(args, server))
    report["machine"] = machine_info()
    ok_rss = report["rss_after_50_mb"] is not None and report["rss_end_mb"] <= 1.10 * report["rss_after_50_mb"]  # type: ignore[operator]
    ok = not report["errors"] and report["fds_after"] <= report["fds_before"] + 2 and report["tasks_after"] <= report["tasks_before"] + 2 and ok_rss  # type: ignore[operator]
    report["passed"] = ok
    out = Path(__file__).resolve().parent / "results" / f"soak-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"sessions {report['sessions']} (max {report['concurrency']} at once) in {report['wall_s']:.0f} s; errors {len(report['errors'])}; "  # type: ignore[arg-type]
          f"admission refusals retried {report['admission_refusals_retried']}")
    print(f"fds {report['fds_before']} -> {report['fds_after']}; tasks {report['tasks_before']} -> {report['tasks_after']}")
    print(f"RSS after 50 sessions {report['rss_after_50_mb']:.0f} MB, at the end {report['rss_end_mb']:.0f} MB")
    print("PASS" if ok else "FAIL", f"(JSON: {out})")
    for e in report["errors"][:10]:  # type: ignore[index]
        print("  ", e)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
