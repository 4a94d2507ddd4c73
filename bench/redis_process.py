"""Run Debian's ``redis-server`` as a child process on a free loopback port (tests, benchmarks).

The Redis backend (issue 16: worker hosts on Redis Streams) is tested against a real server,
never a system one: each :class:`RedisProcess` is its own ``redis-server`` on ``127.0.0.1``, on a
port picked by binding a socket to port 0, with persistence off (``--save ""``,
``--appendonly no``) and its working directory in a fresh temporary directory.  It is ready
once it answers ``PING`` (redis-py's sync client).  :meth:`RedisProcess.kill` and
:meth:`RedisProcess.restart` bring it down and back up on the same port, empty, to test what
the backend does when Redis goes away.

Optional ``password`` (``requirepass``) and TLS (``tls_cert``, ``tls_key``, ``tls_ca``: PEM
files; the server then listens with TLS only, ``rediss://``, and does not ask clients for a
certificate).  Debian's ``redis-server`` 7.0 is built with TLS.

``redis-server`` comes from Debian's package of that name: ``make system-deps`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.child_process import terminate
from whisper_streaming.errors import UsageError, WhisperStreamingError

__all__ = ["RedisProcess", "free_port"]

_HOST = "127.0.0.1"
_BIND_FAILED = "Address already in use"
_NEW_PORT_ATTEMPTS = 5  # first start on a port we picked: a new port after a lost race for it


def free_port(host: str = _HOST) -> int:
    """A TCP port free on ``host`` right now (bind to port 0, read it, close): a race is possible."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A running ``redis-server`` child process. Use as a context manager, or call :meth:`close`.

    Starts in the constructor and returns once the server answers ``PING``.
    """

    def __init__(self, *, port: int = 0, password: str | None = None, tls_cert: str | os.PathLike[str] | None = None,
                 tls_key: str | os.PathLike[str] | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 start_timeout_s: float = 20.0, log_path: str | os.PathLike[str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        """``port``: 0 picks a free one (retried on a lost race), else that port; ``password``:
        ``requirepass``; ``tls_cert``/``tls_key``/``tls_ca``: all three or none (PEM paths);
        ``start_timeout_s``: seconds to wait for ``PING``; ``log_path``: the server's log also
        goes there (it is always kept in :attr:`log_lines`); ``extra_args``: more ``--option value``."""
        executable = shutil.which("redis-server")
        if executable is None:
            raise WhisperStreamingError("redis-server not found on PATH: run `make system-deps` (installs Debian's redis-server)")
        tls = (tls_cert, tls_key, tls_ca)
        if any(t is not None for t in tls) and not all(t is not None for t in tls):
            raise UsageError("RedisProcess: give tls_cert, tls_key and tls_ca together")
        self._executable = executable
        self.password = password
        self.tls_cert, self.tls_key, self.tls_ca = (None if t is None else Path(t) for t in tls)
        self.start_timeout_s = start_timeout_s
        self._extra_args = tuple(extra_args)
        self._log_path = log_path
        self._log_file = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.log_lines: deque[str] = deque(maxlen=5000)
        self._tmp = tempfile.TemporaryDirectory(prefix="ws-redis-")
        self.dir = Path(self._tmp.name)  # redis-server's --dir: the same across restarts
        self.host = _HOST
        self.proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None
        self._start_lines: list[str] = []  # this start's log lines (bind failure detection)
        self._port = port
        try:
            if port:
                self._start(retry_bind=True)
            else:
                self._start_on_new_port()
        except BaseException:
            self.close()
            raise

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (the TLS port when TLS is on)."""
        return self._port

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0`` (``rediss://`` with TLS; the password URL-quoted)."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self._port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return "\n".join(self.log_lines)

    def client(self, **kwargs: object) -> redis.Redis:
        """A redis-py sync client on :attr:`url` (trusting ``tls_ca`` with TLS); ``kwargs`` go to ``Redis.from_url``."""
        if self.tls:
            kwargs.setdefault("ssl_ca_certs", str(self.tls_ca))
        return redis.Redis.from_url(self.url, **kwargs)  # type: ignore[arg-type]

    # -- starting -----------------------------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [self._executable, "--bind", self.host, "--save", "", "--appendonly", "no", "--dir", str(self.dir),
               "--daemonize", "no", "--logfile", ""]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self._port), "--tls-cert-file", str(self.tls_cert),
                    "--tls-key-file", str(self.tls_key), "--tls-ca-cert-file", str(self.tls_ca), "--tls-auth-clients", "no"]
        else:
            cmd += ["--port", str(self._port)]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        return [*cmd, *self._extra_args]

    def _start_on_new_port(self) -> None:
        for attempt in range(_NEW_PORT_ATTEMPTS):
            self._port = free_port(self.host)
            if self._start(retry_bind=False):
                return
            self._note(f"[RedisProcess] port {self._port} taken (attempt {attempt + 1}); trying another")
        raise WhisperStreamingError(f"redis-server could not bind a free port in {_NEW_PORT_ATTEMPTS} attempts:\n" + self._tail())

    def _start(self, *, retry_bind: bool) -> bool:
        """Start on ``self._port`` and wait for PING. Returns False on a bind failure when not
        ``retry_bind`` (else retries until the deadline); raises on any other failure."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            self._spawn()
            outcome = self._wait_ready(deadline)
            if outcome == "ready":
                return True
            self._reap()
            if outcome == "bind" and not retry_bind:
                return False
            if outcome == "bind" and time.monotonic() < deadline:
                self._note(f"[RedisProcess] port {self._port} still busy; retrying")
                time.sleep(0.2)
                continue
            raise WhisperStreamingError(f"redis-server did not start on {self.host}:{self._port}:\n" + self._tail())

    def _spawn(self) -> None:
        self._start_lines = []
        if self._log_file is None and self._log_path:
            self._log_file = open(self._log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=self.dir)
        self._pump = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._pump.start()

    def _wait_ready(self, deadline: float) -> str:
        """``"ready"`` once it answers PING, ``"bind"`` when it exited on a taken port, ``"failed"``
        when it exited otherwise or the deadline passed."""
        assert self.proc is not None
        client = redis.Redis(host=self.host, port=self._port, password=self.password, socket_timeout=1.0,
                             socket_connect_timeout=1.0, ssl=self.tls,
                             ssl_ca_certs=str(self.tls_ca) if self.tls else None,
                             retry=Retry(NoBackoff(), 0))  # this loop retries, checking the child between tries
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    assert self._pump is not None
                    self._pump.join(timeout=5)  # all of its log, for the bind check
                    return "bind" if any(_BIND_FAILED in line for line in self._start_lines) else "failed"
                try:
                    if client.ping():
                        return "ready"
                except redis.RedisError:
                    pass
                time.sleep(0.05)
            return "failed"
        finally:
            client.close()

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._note(line.rstrip("\n"))

    def _note(self, line: str) -> None:
        self.log_lines.append(line)
        self._start_lines.append(line)
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()

    def _tail(self) -> str:
        return "\n".join(list(self.log_lines)[-30:])

    # -- stopping -----------------------------------------------------------------------------

    def _reap(self) -> None:
        """Make sure the child is gone and its log read."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        if self._pump is not None:
            self._pump.join(timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL if still running after ``timeout_s`` seconds. Returns the
        exit code (None if never started). :meth:`restart` starts it again."""
        if self.proc is None:
            return None
        terminate(self.proc, sig, timeout_s)
        self._reap()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL (no shutdown of its own) and wait. Returns the exit code."""
        return self.stop(signal.SIGKILL)

    def restart(self) -> None:
        """Start again on the same port (stopping it first if it runs), same ``--dir``; wait for PING.
        A port still busy (TIME_WAIT, a slow exit) is retried until ``start_timeout_s``."""
        if self.running:
            self.stop()
        self._start(retry_bind=True)

    def close(self) -> None:
        """Stop and remove the temporary ``--dir``."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
