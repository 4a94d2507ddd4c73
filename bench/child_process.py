"""What the child-process harnesses share (:mod:`bench.server_process`, :mod:`bench.worker_process`,
:mod:`bench.redis_process`): stopping a child with a signal and a deadline."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["terminate"]


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
