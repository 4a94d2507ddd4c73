"""Run the server (``python -m whisper_streaming``) as a child process and wait until it listens (demo, tests, benchmarks).

The server logs ``listening on HOST:PORT`` once ready; with ``--port 0`` the kernel picks a
free port and that line tells which.  The HTTP/WebSocket door (config ``http``) starts just
before it and logs ``http listening on HOST:PORT``: the child gets ``--http-port 0`` unless told
otherwise (tests run several servers at once), and :attr:`ServerProcess.http_port` tells the
port it got (None when ``http.enabled`` is false).
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
from pathlib import Path

from bench.child_process import terminate
from whisper_streaming.errors import WhisperStreamingError

__all__ = ["ServerProcess", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"(?<!audiosocket )(?<!http )listening on (\S+):(\d+)")
_HTTP_LISTENING = re.compile(r"http listening on (\S+):(\d+)")
_AUDIOSOCKET_LISTENING = re.compile(r"audiosocket listening on (\S+):(\d+)")


class ServerProcess:
    """A running server child process. Use as a context manager, or call :meth:`stop`."""

    def __init__(self, *, config: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 start_timeout_s: float = 120.0, log_path: str | os.PathLike[str] | None = None, extra_args: tuple[str, ...] = (),
                 command: tuple[str, ...] | None = None, cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, http_port: int | None = 0) -> None:
        """``command``: how to start the server (default: this interpreter's ``-m whisper_streaming``);
        ``cwd`` (default: the repository) and ``env`` (default: inherited) of the child;
        ``http_port``: ``--http-port`` (None: the config's ``http.port``)."""
        cmd = [*(command or (sys.executable, "-m", "whisper_streaming")), "--host", host, "--port", str(port), *extra_args]
        if http_port is not None:
            cmd += ["--http-port", str(http_port)]
        if config is not None:
            cmd += ["--config", str(config)]
        self.log_lines: deque[str] = deque(maxlen=5000)
        self._log_file = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd or REPO_ROOT, env=env)
        self._ready = threading.Event()
        self.host, self.port = host, port
        self.audiosocket_port: int | None = None  # when the config enables AudioSocket (its listener starts right after)
        self.http_port: int | None = None  # when the config enables HTTP (its listener starts before the ready line)
        self._pump = threading.Thread(target=self._read_log, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise WhisperStreamingError("server did not start:\n" + "\n".join(list(self.log_lines)[-30:]))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            if self._log_file is not None:
                self._log_file.write(line)
                self._log_file.flush()
            if self.audiosocket_port is None and (m := _AUDIOSOCKET_LISTENING.search(line)):
                self.audiosocket_port = int(m.group(2))
            elif self.http_port is None and (m := _HTTP_LISTENING.search(line)):
                self.http_port = int(m.group(2))
            elif not self._ready.is_set() and (m := _LISTENING.search(line)):
                self.host, self.port = m.group(1), int(m.group(2))
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

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
