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
import sys
from pathlib import Path

from bench.child_process import LoggedChild

__all__ = ["ServerProcess", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"(?<!audiosocket )(?<!http )listening on (\S+):(\d+)")
_HTTP_LISTENING = re.compile(r"http listening on (\S+):(\d+)")
_AUDIOSOCKET_LISTENING = re.compile(r"audiosocket listening on (\S+):(\d+)")


class ServerProcess(LoggedChild):
    """A running server child process. Use as a context manager, or call :meth:`stop`."""

    what = "server"

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
        self.host, self.port = host, port
        self.audiosocket_port: int | None = None  # when the config enables AudioSocket (its listener starts right after)
        self.http_port: int | None = None  # when the config enables HTTP (its listener starts before the ready line)
        super().__init__(cmd, start_timeout_s=start_timeout_s, log_path=log_path, cwd=cwd or REPO_ROOT, env=env)

    def _on_line(self, line: str) -> None:
        if self.audiosocket_port is None and (m := _AUDIOSOCKET_LISTENING.search(line)):
            self.audiosocket_port = int(m.group(2))
        elif self.http_port is None and (m := _HTTP_LISTENING.search(line)):
            self.http_port = int(m.group(2))
        elif not self.ready and (m := _LISTENING.search(line)):
            self.host, self.port = m.group(1), int(m.group(2))
            self._mark_ready()

    def __enter__(self) -> ServerProcess:
        return self
