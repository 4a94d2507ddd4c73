"""Shared fixtures: the real server process on a free loopback port; a redis-server of our own (bench/redis_process.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from speech import E2E_CONFIG
from bench.redis_process import RedisProcess
from bench.server_process import ServerProcess


@pytest.fixture(scope="session")
def e2e_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "e2e.yaml"
    path.write_text(E2E_CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def server(e2e_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server process (bundled base model) shared by the end-to-end tests."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with ServerProcess(config=e2e_config, log_path=log) as proc:
        yield proc
    if os.environ.get("WS_SHOW_SERVER_LOG"):
        print(log.read_text())


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A fresh ``redis-server`` of our own on a free loopback port (persistence off), stopped after the test."""
    with RedisProcess() as proc:
        yield proc
