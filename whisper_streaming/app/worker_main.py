"""``whisper-streaming-worker``: a worker host of the Redis backend (``backend.kind: redis``).

``whisper-streaming-worker --config config_vad.yaml [--redis-url URL] [--workers N]`` starts
``model.channel`` (or ``N``) engine processes with the config's model and analyzers, registers
with the Redis of ``backend.redis_url`` and transcribes utterances for every front end that
uses it (:class:`~whisper_streaming.backends.redis_worker.WorkerHost`).  It logs
``worker host ID ready: N engine(s)`` once it serves.  SIGINT/SIGTERM stop it gracefully: no new
job, the jobs in hand finished and answered (within ``server.shutdown_timeout_s``), then exit 0.
Exit codes: 2 configuration error, 3 model error.  See ``docs/deployment.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

from whisper_streaming.app.wiring import redis_url_override, worker_host_options_from_config
from whisper_streaming.backends.redis_worker import WorkerHost
from whisper_streaming.config.schema import ServerConfig, load_config, with_overrides
from whisper_streaming.errors import ConfigError, ModelError, WhisperStreamingError

__all__ = ["run_worker", "worker_main"]

log = logging.getLogger("whisper_streaming")


async def run_worker(config: ServerConfig, workers: int | None = None) -> None:
    """Run one worker host until SIGINT/SIGTERM, then stop it gracefully.

    Raises:
        ModelError: the model cannot be resolved or the engines cannot start.
    """
    options = worker_host_options_from_config(config, workers=workers)
    engine = options.pool.engine
    log.info("model %s (%s, %s, %s), %d engine(s)", engine.model, engine.engine, engine.device, engine.compute_type, options.pool.workers)
    host = WorkerHost(options)
    await host.start()
    log.info("worker host %s ready: %d engine(s)", host.worker_id, host.slots)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received; finishing the jobs in hand")
    await host.stop(config.server.shutdown_timeout_s)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="whisper-streaming-worker",
                                description="A worker host of the Redis backend: transcribes utterances for the front ends of backend.redis_url.")
    p.add_argument("--config", default=None, help="YAML config (the front ends' file: model, analyzers and the backend section)")
    p.add_argument("--redis-url", default=None, help="overrides backend.redis_url and $WHISPER_STREAMING_REDIS_URL")
    p.add_argument("--workers", type=int, default=None, help="engine processes (overrides model.channel)")
    return p.parse_args(argv)


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    args = _parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = {k: v for k, v in {"model.channel": args.workers}.items() if v is not None} | redis_url_override(args.redis_url)
        if overrides:
            config = with_overrides(config, **overrides)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.server.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(run_worker(config))
    except ModelError as exc:
        log.error("model error: %s", exc)
        return 3
    except WhisperStreamingError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
