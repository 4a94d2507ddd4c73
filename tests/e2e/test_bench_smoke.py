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
from bench.stream_bench import bench_run, markdown  # noqa: E402

from speech import DATA  # noqa: E402

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
