"""What the child-process harnesses share (:mod:`bench.server_process`, :mod:`bench.worker_process`,
:mod:`bench.redis_process`): stopping a child with a signal and a deadline, and a child whose
stderr is pumped into a log until a ready line appears."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence

from whisper_streaming.errors import WhisperStreamingError

__all__ = ["terminate", "LoggedChild"]


def terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:  # type: ignore[type-arg]
    """Send ``sig`` to ``proc`` if it runs and wait for it; SIGKILL it if it still runs after
    ``timeout_s`` seconds.  Returns its exit code (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class LoggedChild:
    """A child process whose stderr lines are kept (the last 5000, and in ``log_path``) and passed
    to :meth:`_on_line`, which calls :meth:`_mark_ready` once the child serves.  The constructor
    returns then; a child that exits first, or is not ready within ``start_timeout_s``, is
    stopped and :class:`WhisperStreamingError` raised with the end of its log.  Subclasses set
    the attributes :meth:`_on_line` fills before calling ``super().__init__``."""

    what = "child process"

    def __init__(self, cmd: Sequence[str], *, start_timeout_s: float, log_path: str | os.PathLike[str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.log_lines: deque[str] = deque(maxlen=5000)
        self._log_file = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(list(cmd), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd, env=env)
        self._ready = threading.Event()
        self._pump = threading.Thread(target=self._read_log, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise WhisperStreamingError(f"{self.what} did not start:\n" + "\n".join(list(self.log_lines)[-30:]))

    def _on_line(self, line: str) -> None:
        """One line of the child's stderr (subclasses: parse it, call :meth:`_mark_ready`)."""

    def _mark_ready(self) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if self._log_file is not None:
                self._log_file.write(line)
                self._log_file.flush()
            self._on_line(line)

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

    def __enter__(self) -> LoggedChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
