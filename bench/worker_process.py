"""Run a worker host of the Redis backend (``python -m whisper_streaming.app.worker_main``) as a child
process and wait until it serves (tests, benchmarks).

The worker logs ``worker host ID ready: N engine(s)`` once its engines are loaded and it reads
jobs; :attr:`WorkerProcess.worker_id` is that ID (its consumer name and the key of its record).
"""

from __future__ import annotations

import os
import re
import signal
import sys

from bench.server_process import REPO_ROOT
from bench.child_process import LoggedChild

__all__ = ["WorkerProcess"]

_READY = re.compile(r"worker host (\S+) ready: (\d+) engine")


class WorkerProcess(LoggedChild):
    """A running worker host. Use as a context manager, or call :meth:`stop` / :meth:`kill`."""

    what = "worker host"

    def __init__(self, *, config: str | os.PathLike[str] | None = None, redis_url: str | None = None, workers: int | None = None,
                 start_timeout_s: float = 180.0, log_path: str | os.PathLike[str] | None = None) -> None:
        cmd = [sys.executable, "-m", "whisper_streaming.app.worker_main"]
        if config is not None:
            cmd += ["--config", str(config)]
        if redis_url is not None:
            cmd += ["--redis-url", redis_url]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self.worker_id: str | None = None
        self.engines = 0
        super().__init__(cmd, start_timeout_s=start_timeout_s, log_path=log_path, cwd=REPO_ROOT)

    def _on_line(self, line: str) -> None:
        if not self.ready and (m := _READY.search(line)):
            self.worker_id, self.engines = m.group(1), int(m.group(2))
            self._mark_ready()

    def kill(self) -> int:
        """SIGKILL the host (its engine processes die with it: ``PR_SET_PDEATHSIG``)."""
        return self.stop(signal.SIGKILL, timeout_s=10.0)

    def __enter__(self) -> WorkerProcess:
        return self
