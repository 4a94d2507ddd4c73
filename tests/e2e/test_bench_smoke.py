"""Smoke test of the streaming benchmark harness: one short file, one stream, real server.

Checks that the harness produces a transcript and sane fields; no timing assertion.
"""

from __future__ import annotations

import sys

import pytest

from whisper_streaming.config.schema import load_config
from bench.server_process import REPO_ROOT, ServerProcess
from whisper_streaming.app.wiring import vad_options_from_config

sys.path.insert(0, str(REPO_ROOT))
from bench.common import load_dir  # noqa: E402
from bench.stream_bench import bench_run, compare_table, markdown, partials_table  # noqa: E402

from speech import DATA, E2E_CONFIG  # noqa: E402

pytestmark = pytest.mark.e2e


def test_stream_bench_one_file_one_stream(server: ServerProcess, e2e_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.wav").write_bytes((DATA / "librispeech_test-clean_61-70968-0000.wav").read_bytes())
    (tmp_path / "a.txt").write_text((DATA / "librispeech_test-clean_61-70968-0000.txt").read_text())
    files = load_dir(tmp_path)
    vad = vad_options_from_config(load_config(e2e_config))
    row = bench_run(1, server.host, server.port, files, pid=server.pid, speed=2.0, vad=vad)
    assert row["streams"] == 1 and row["errors"] == {}
    assert row["utterances"] >= 1
    assert "wizard" in row["transcripts"]["a.wav"].lower()
    assert 0 <= row["wer"] <= 0.3
    assert 0 < row["latency_p50_s"] <= row["latency_p95_s"] <= row["latency_max_s"] < 30
    assert 0 < row["cpu_s_per_audio_s"] < 5
    assert row["peak_rss_mb"] > 50
    # the harness replays the server's VAD to find each utterance's endpoint: every %R matched one
    assert len(row["results"]) == row["utterances"]
    assert all(r["end_reason"] in ("silence", "max_length", "flush") and r["latency_s"] is not None for r in row["results"])
    assert row["latency_p50_s"] < row["speech_end_latency_p50_s"]  # the endpointing silence lies between
    assert row["audio_s"] == pytest.approx(files[0].duration_s + 2.0, abs=0.05)
    table = markdown([row], 2.0)
    assert table.splitlines()[2].startswith("| 1 | ") and "max real-time streams" in table


def test_stream_bench_partials_off_and_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--compare-partials`` on one 5 s file: a two-worker server, a run without partials, then
    one with them; the partial numbers are filled and the stable part is never retracted."""
    (tmp_path / "a.wav").write_bytes((DATA / "librispeech_test-clean_61-70968-0000.wav").read_bytes())
    (tmp_path / "a.txt").write_text((DATA / "librispeech_test-clean_61-70968-0000.txt").read_text())
    config = tmp_path / "two_workers.yaml"
    config.write_text(E2E_CONFIG.replace("channel: 1", "channel: 2"), encoding="utf-8")
    files = load_dir(tmp_path, limit=1)
    vad = vad_options_from_config(load_config(config))
    with ServerProcess(config=config, log_path=tmp_path / "server.log") as two:
        off = bench_run(1, two.host, two.port, files, pid=two.pid, vad=vad)
        on = bench_run(1, two.host, two.port, files, pid=two.pid, vad=vad, partials=True, first_after_s=1.0)
    assert "partials" not in off and "partials_on" not in off
    assert off["errors"] == {} and on["errors"] == {} and on["partials_on"] is True
    m = on["partials"]
    assert m["sessions_refused_partials"] == 0 and m["utterances"] == on["utterances"] >= 1
    assert m["partials"] >= 1 and m["status_decoded"] >= m["status_sent"] >= 1
    assert 0 < m["first_partial_p50_s_all"] < 5
    assert m["erasure_stable"] == 0 and m["erasure_display"] >= 0
    assert m["coverage"] == 1.0
    assert all("partials" in r for r in on["results"])
    assert "wizard" in on["transcripts"]["a.wav"].lower()
    assert partials_table([on]).splitlines()[2].startswith("| 1 | ")
    table = compare_table([off], [on], 2.0)
    assert table.splitlines()[2].startswith("| 1 | ") and "max real-time streams" in table
