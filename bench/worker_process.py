"""Run a worker host of the Redis backend (``python -m whisper_streaming.app.worker_main``) as a child
process and wait until it serves (tests, benchmarks).

The worker logs ``worker host ID ready: N engine(s)`` once its engines are loaded and it reads
jobs; :attr:`WorkerProcess.worker_id` is that ID (its consumer name and the key of its record).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque

from bench.server_process import REPO_ROOT
from bench.child_process import terminate
from whisper_streaming.errors import WhisperStreamingError

__all__ = ["WorkerProcess"]

_READY = re.compile(r"worker host (\S+) ready: (\d+) engine")


class WorkerProcess:
    """A running worker host. Use as a context manager, or call :meth:`stop` / :meth:`kill`."""

    def __init__(self, *, config: str | os.PathLike[str] | None = None, redis_url: str | None = None, workers: int | None = None,
                 start_timeout_s: float = 180.0, log_path: str | os.PathLike[str] | None = None) -> None:
        cmd = [sys.executable, "-m", "whisper_streaming.app.worker_main"]
        if config is not None:
            cmd += ["--config", str(config)]
        if redis_url is not None:
            cmd += ["--redis-url", redis_url]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self.log_lines: deque[str] = deque(maxlen=5000)
        self._log_file = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO_ROOT)
        self.worker_id: str | None = None
        self.engines = 0
        self._ready = threading.Event()
        self._pump = threading.Thread(target=self._read_log, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise WhisperStreamingError("worker host did not start:\n" + "\n".join(list(self.log_lines)[-30:]))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if self._log_file is not None:
                self._log_file.write(line)
                self._log_file.flush()
            if not self._ready.is_set() and (m := _READY.search(line)):
                self.worker_id, self.engines = m.group(1), int(m.group(2))
                self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return "\n".join(self.log_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Send ``sig`` and wait; kill if still running after ``timeout_s``. Returns the exit code."""
        terminate(self.proc, sig, timeout_s)
        self._pump.join(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL the host (its engine processes die with it: ``PR_SET_PDEATHSIG``)."""
        return self.stop(signal.SIGKILL, timeout_s=10.0)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
