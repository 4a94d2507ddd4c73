"""The ``backend`` section: kinds, the Redis URL's scheme, timings that keep a live host from looking dead."""

from __future__ import annotations

import pytest

from whisper_streaming.app.wiring import backend_from_config, redis_options_from_config, worker_host_options_from_config
from whisper_streaming.backends.pool import ProcessPool
from whisper_streaming.backends.redis_backend import RedisBackend
from whisper_streaming.config.schema import parse_config
from whisper_streaming.errors import ConfigError


def test_defaults_are_the_local_pool():
    cfg = parse_config({})
    assert cfg.backend.kind == "local"
    assert isinstance(backend_from_config(cfg), ProcessPool)


def test_redis_kind_builds_the_redis_backend_with_the_sections_values():
    cfg = parse_config({"backend": {"kind": "redis", "redis_url": "rediss://:pw@db.example:6380/2", "max_attempts": 3,
                                    "max_in_flight": 7, "unavailable_grace_s": 9},
                        "server": {"max_queued_per_session": 5}})
    backend = backend_from_config(cfg)
    assert isinstance(backend, RedisBackend)
    o = backend.options
    assert (o.redis.url, o.redis.max_attempts, o.max_in_flight, o.unavailable_grace_s, o.max_queued_per_session) == (
        "rediss://:pw@db.example:6380/2", 3, 7, 9.0, 5)
    assert "pw" not in backend._safe_url()  # noqa: SLF001 - the form logged


def test_worker_host_options_take_the_model_and_drop_the_front_ends_throttle():
    cfg = parse_config({"model": {"channel": 3}, "backend": {"kind": "redis"}})
    options = worker_host_options_from_config(cfg)
    assert options.pool.workers == 3 and options.pool.throttle_worker_s_per_s is None and options.pool.partial_workers == 0
    assert worker_host_options_from_config(cfg, workers=1).pool.workers == 1
    assert options.redis == redis_options_from_config(cfg)


@pytest.mark.parametrize("section, message", [
    ({"kind": "celery"}, "backend.kind"),
    ({"redis_url": "http://localhost"}, "redis://"),
    ({"heartbeat_s": 3.0, "claim_after_s": 2.0}, "heartbeat_s must be below"),
    ({"max_attempts": 0}, "backend.max_attempts"),
    ({"prefix": "has space"}, "backend.prefix"),
])
def test_bad_values_are_config_errors(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"backend": section})


def test_the_redis_url_comes_from_the_option_then_the_environment_then_the_file(monkeypatch):
    from whisper_streaming.app.wiring import REDIS_URL_ENV, redis_url_override

    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    assert redis_url_override(None) == {}
    monkeypatch.setenv(REDIS_URL_ENV, "redis://:fromenv@h:1/0")
    assert redis_url_override(None) == {"backend.redis_url": "redis://:fromenv@h:1/0"}
    assert redis_url_override("redis://opt:2/0") == {"backend.redis_url": "redis://opt:2/0"}
