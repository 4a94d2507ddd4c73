"""bench/redis_bench.py does not rot: part A (dispatch) end to end with a few round trips (a real
``redis-server``, worker host children, trivial engines; no model, no timing assertion), and the
pieces of part B that need no model (configs, the ``%C`` parse, the table, ``--dry-run``)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from bench.redis_bench import (
    ROUND_TRIP_TIMEOUT_S,
    Setup,
    _hosts_live,
    describe,
    dispatch_bench,
    dispatch_markdown,
    main,
    setups,
    streams_markdown,
    utterance_pcm,
    write_config,
)
from whisper_streaming.config.schema import load_config

pytestmark = pytest.mark.timeout(90)


def test_dispatch_runs_both_paths_with_one_and_two_hosts() -> None:
    report = dispatch_bench(n=10, warmup=2, sizes_s=(1.0, 3.0))
    phases = report["phases"]
    assert [(p["size_s"], p["hosts"]) for p in phases] == [(1.0, 1), (3.0, 1), (1.0, 2), (3.0, 2)]
    assert [p["bytes"] for p in phases] == [32_000, 96_000, 32_000, 96_000]
    for p in phases:
        for path in ("local", "redis"):
            raw = p["raw_s"][path]
            d = p[path]
            assert len(raw) == d["n"] == 10
            assert all(0 < x < ROUND_TRIP_TIMEOUT_S for x in raw)
            assert d["min_ms"] <= d["p50_ms"] <= d["p95_ms"] <= d["p99_ms"] <= d["max_ms"]
        paired = 1000 * statistics.median(b - a for a, b in zip(p["raw_s"]["local"], p["raw_s"]["redis"]))
        assert p["overhead_ms"]["paired_median"] == pytest.approx(paired)
        assert p["overhead_ms"]["p50"] == pytest.approx(p["redis"]["p50_ms"] - p["local"]["p50_ms"])
    # every round trip of the two-host phase (warm-up included) was answered by one of the two hosts
    split = report["two_host_split"]
    assert split["first_host"] >= 0 and split["second_host"] >= 0
    assert split["first_host"] + split["second_host"] == 2 * (10 + 2)
    table = dispatch_markdown(report)
    assert table.startswith("machine: ") and "redis-server 7." in table
    assert sum(line.startswith("| 3 s (96,000 B) |") for line in table.splitlines()) == 4
    assert sum(line.startswith("| 1 s | ") for line in table.splitlines()) == 2


def test_describe_gives_milliseconds() -> None:
    d = describe([0.001, 0.002, 0.003, 0.010])
    assert d.n == 4 and d.p50_ms == pytest.approx(2.5) and d.mean_ms == pytest.approx(4.0)
    assert d.min_ms == pytest.approx(1.0) and d.max_ms == pytest.approx(10.0)
    with pytest.raises(ValueError):
        describe([])


def test_utterance_pcm_is_s16le_of_the_length_asked() -> None:
    assert len(utterance_pcm(3.0)) == 96_000
    assert len(utterance_pcm(0.5)) == 16_000
    assert utterance_pcm(1.0, seed=1) != utterance_pcm(1.0, seed=2)


def test_generated_configs_are_valid_and_say_what_each_setup_is(tmp_path: Path) -> None:
    redis_one, redis_two, local = setups([1, 2], local=True)
    assert (redis_one.hosts, redis_two.hosts, local.hosts) == (1, 2, 0)
    c = load_config(write_config(tmp_path / "r.yaml", redis_two, redis_url="redis://127.0.0.1:6399/0", unlimited_per_ip=False))
    assert (c.backend.kind, c.backend.redis_url, c.model.channel, c.model.language) == ("redis", "redis://127.0.0.1:6399/0", 1, "en")
    assert c.server.max_connections_per_ip is None
    c = load_config(write_config(tmp_path / "l.yaml", local, redis_url=None, unlimited_per_ip=True))
    assert (c.backend.kind, c.model.channel, c.server.max_connections_per_ip) == ("local", 2, 0)


def test_live_hosts_are_read_from_the_status_text() -> None:
    assert _hosts_live("sessions: 0\nredis: connected; worker hosts live 2 (engines 2, busy 0)\njobs in flight: 0") == 2
    assert _hosts_live("redis: UNREACHABLE; worker hosts live 1 (engines 1, busy 0)") is None
    assert _hosts_live("sessions: 0") is None and _hosts_live(None) is None


def test_streams_table_and_max_realtime_streams() -> None:
    def row(setup: str, n: int, p95: float, errors: dict[str, int]) -> dict[str, object]:
        return {"setup": setup, "streams": n, "utterances": 10 * n, "latency_p50_s": p95 / 2, "latency_p95_s": p95, "wer": 0.05,
                "failed_sessions": sum(errors.values()), "errors": errors, "cpu_s_per_audio_s": 0.02, "hosts_cpu_s_per_audio_s": 0.3,
                "redis_cpu_s_per_audio_s": 0.001}

    rows = [row("redis-1host", 1, 0.9, {}), row("redis-1host", 4, 2.5, {}), row("redis-2hosts", 1, 0.8, {}),
            row("redis-2hosts", 4, 1.5, {"%E SERVER_TOO_BUSY": 1})]
    table = streams_markdown(rows, 2.0)
    assert "| redis-2hosts | 4 | 40 | 0.75 | 1.50 | 1 | 0.050 | 0.020 / 0.300 / 0.001 |" in table
    assert "max real-time streams, redis-1host (p95 final latency <= 2.0 s, no errors): 1" in table
    assert "max real-time streams, redis-2hosts (p95 final latency <= 2.0 s, no errors): 1" in table


def test_streams_dry_run_starts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", "--dry-run", "--streams", "1,16", "--hosts", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "redis-1host: 1 worker host(s)" in out and "redis-2hosts: 2 worker host(s)" in out and "local-channel2" in out
    assert out.count("max_connections_per_ip: 0") == 3
    assert Setup("x", 0, 2).redis is False
