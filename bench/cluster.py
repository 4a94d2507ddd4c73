"""A Redis-backend cluster on this machine: our own ``redis-server``, ``--workers`` worker hosts and a
front end, all on loopback (``make cluster``); stops them all on Ctrl-C.

``python -m bench.cluster [--config FILE] [--workers 2] [--engines N] [--port 43007] [--http-port 8000]``: the
config's ``backend`` section is kept but for ``kind: redis`` and the URL of the Redis started
here.  Prints where the front end listens.  For a real deployment see ``docs/deployment.md``.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

import yaml

from bench.redis_process import RedisProcess
from bench.server_process import ServerProcess
from bench.worker_process import WorkerProcess

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="base YAML config (default: built-in defaults)")
    p.add_argument("--workers", type=int, default=2, help="worker hosts to start (one engine each unless the config says otherwise)")
    p.add_argument("--engines", type=int, default=None, help="engine processes per worker host (default: model.channel)")
    p.add_argument("--port", type=int, default=43007)
    p.add_argument("--http-port", type=int, default=8000)
    args = p.parse_args(argv)
    base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) if args.config else {}
    with tempfile.TemporaryDirectory(prefix="ws-cluster-") as tmp, RedisProcess() as redis:
        config = dict(base or {})
        config["backend"] = {**(config.get("backend") or {}), "kind": "redis", "redis_url": redis.url}
        path = Path(tmp) / "cluster.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        workers = [WorkerProcess(config=path, workers=args.engines) for _ in range(args.workers)]
        try:
            with ServerProcess(config=path, port=args.port, http_port=args.http_port) as front:
                print(f"redis {redis.url}; {len(workers)} worker host(s): {', '.join(w.worker_id or '?' for w in workers)}")
                print(f"front end: tcp {front.host}:{front.port}, http {front.http_port}; Ctrl-C stops everything", flush=True)
                stop = threading.Event()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, lambda *_: stop.set())
                stop.wait()
        finally:
            for w in workers:
                w.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
