"""``make demo``: start the server, stream a bundled real speech sample through ``tcp_client.py``,
print the transcript, stop the server.

The sample is the public-domain JFK inaugural excerpt (``tests/data/jfk.wav``).
"""

from __future__ import annotations

import subprocess
import sys

from bench.server_process import REPO_ROOT, ServerProcess

__all__ = ["main"]


def main() -> int:
    sample = REPO_ROOT / "tests" / "data" / "jfk.wav"
    print("starting the server (config_vad.yaml, bundled Whisper base model) ...", flush=True)
    with ServerProcess(config=REPO_ROOT / "config_vad.yaml") as server:
        print(f"server listening on {server.host}:{server.port}; streaming {sample.name} at real-time pace:\n", flush=True)
        rc = subprocess.call(
            [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", server.host, "--port", str(server.port), "--ifn", str(sample), "--user", "demo"],
            cwd=REPO_ROOT,
        )
        code = server.stop()
    print(f"\nclient exit code {rc}; server stopped (exit code {code})")
    return rc or code


if __name__ == "__main__":
    sys.exit(main())
