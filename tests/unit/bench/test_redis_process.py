"""bench/redis_process.py: our own redis-server on a free loopback port (the Redis backend's tests use it).

A real ``redis-server`` (Debian's, ``make system-deps``): PING, the password, persistence off
across kill/stop and restart on the same port, a lost race for the picked port, TLS.
"""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import bench.redis_process as redis_process
from bench.redis_process import RedisProcess
from tls_certs import make_server_files
from whisper_streaming.errors import UsageError, WhisperStreamingError

# redis-py retries connection errors, AuthenticationError included (about 4 s): the refusals fail at once.
NO_RETRY = Retry(NoBackoff(), 0)


def _connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def test_fixture_answers_ping_with_persistence_off(redis_server: RedisProcess) -> None:
    assert redis_server.running
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.port != 6379  # never a system redis
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert Path(client.config_get("dir")["dir"]).resolve() == redis_server.dir.resolve()
    assert "Ready to accept connections" in redis_server.log_text()


def test_password_refuses_unauthenticated_and_accepts_url(tmp_path: Path) -> None:
    password = "p@ss:w/rd%"  # characters the URL must quote
    log = tmp_path / "redis.log"
    with RedisProcess(password=password, log_path=log) as proc:
        assert proc.url.startswith("redis://:p%40ss%3Aw%2Frd%25@127.0.0.1:")
        with redis.Redis(host="127.0.0.1", port=proc.port, retry=NO_RETRY) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with redis.Redis(host="127.0.0.1", port=proc.port, password="wrong", retry=NO_RETRY) as wrong, pytest.raises(redis.AuthenticationError):
            wrong.ping()
        with redis.Redis.from_url(proc.url) as client:
            assert client.ping() is True
            assert client.set("k", "v") is True
            assert client.get("k") == b"v"
    assert "Ready to accept connections" in log.read_text()


def test_kill_then_restart_same_port_data_gone(redis_server: RedisProcess) -> None:
    port, pid = redis_server.port, redis_server.pid
    with redis_server.client() as client:
        client.set("key", "before")
        assert client.get("key") == b"before"
    assert redis_server.kill() == -signal.SIGKILL
    assert not redis_server.running
    assert _connection_refused(port)
    redis_server.restart()
    assert redis_server.running
    assert (redis_server.port, redis_server.url) == (port, f"redis://127.0.0.1:{port}/0")
    assert redis_server.pid != pid
    with redis_server.client() as client:
        assert client.get("key") is None


def test_sigterm_stop_saves_nothing_and_restart_is_empty(redis_server: RedisProcess) -> None:
    port = redis_server.port
    with redis_server.client() as client:
        client.set("key", "before")
    assert redis_server.stop() == 0  # SIGTERM: redis-server's own shutdown (it would save here if saving were on)
    assert _connection_refused(port)
    assert list(redis_server.dir.iterdir()) == []  # no dump.rdb, no appendonly files
    redis_server.restart()
    assert redis_server.port == port
    with redis_server.client() as client:
        assert client.get("key") is None
        assert client.dbsize() == 0


def test_restart_while_running_stops_first(redis_server: RedisProcess) -> None:
    pid = redis_server.pid
    with redis_server.client() as client:
        client.set("key", "before")
    redis_server.restart()
    assert redis_server.pid != pid
    with redis_server.client() as client:
        assert client.get("key") is None


def test_restart_waits_for_a_busy_port(redis_server: RedisProcess) -> None:
    port = redis_server.port
    redis_server.kill()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    release = threading.Timer(1.0, squatter.close)
    release.start()
    try:
        redis_server.restart()
    finally:
        release.cancel()
        squatter.close()
    assert redis_server.port == port
    assert "still busy; retrying" in redis_server.log_text()
    with redis_server.client() as client:
        assert client.ping() is True


def test_lost_race_for_the_picked_port_takes_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = redis_process.free_port
        monkeypatch.setattr(redis_process, "free_port", lambda host="127.0.0.1": next(ports, None) or real_free_port(host))
        with RedisProcess() as proc:
            assert proc.port != taken
            assert f"port {taken} taken (attempt 1)" in proc.log_text()
            with proc.client() as client:
                assert client.ping() is True


def test_tls(tmp_path: Path) -> None:
    files = make_server_files(tmp_path / "certs")
    with RedisProcess(tls_cert=files.cert_file, tls_key=files.key_file, tls_ca=files.ca_file, password="secret") as proc:
        assert proc.url == f"rediss://:secret@127.0.0.1:{proc.port}/0"
        with redis.Redis.from_url(proc.url, ssl_ca_certs=str(files.ca_file)) as client:
            assert client.ping() is True
        with proc.client() as client:
            assert client.set("k", "v") is True
        with redis.Redis(host="127.0.0.1", port=proc.port, password="secret", socket_timeout=2.0, retry=NO_RETRY) as plain, \
                pytest.raises(redis.ConnectionError):
            plain.ping()  # the port speaks TLS only
        with redis.Redis.from_url(proc.url, ssl_ca_certs=None, ssl_cert_reqs="required", retry=NO_RETRY) as untrusting, \
                pytest.raises(redis.ConnectionError):
            untrusting.ping()  # our private CA is not in the default trust store


def test_tls_needs_all_three_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="together"):
        RedisProcess(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")


def test_missing_redis_server_says_make_system_deps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WhisperStreamingError, match="make system-deps"):
        RedisProcess()


def test_bad_option_fails_with_the_log() -> None:
    with pytest.raises(WhisperStreamingError, match="did not start(.|\n)*no-such-option"):
        RedisProcess(extra_args=("--no-such-option", "1"), start_timeout_s=5.0)
