"""``whisper-streaming-worker``: configuration errors exit 2 before anything starts."""

from __future__ import annotations

from whisper_streaming.app.worker_main import worker_main


def test_a_bad_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend:\n  kind: celery\n", encoding="utf-8")
    assert worker_main(["--config", str(bad)]) == 2
    assert "backend.kind" in capsys.readouterr().err


def test_a_bad_redis_url_override_exits_2(capsys):
    assert worker_main(["--redis-url", "http://nope"]) == 2
    assert "redis://" in capsys.readouterr().err
