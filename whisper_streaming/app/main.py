"""The server: configuration -> model resolution -> worker pool (or Redis worker hosts) -> sinks -> runtime and its doors; the CLI.

``python tcp_server.py [--config config_vad.yaml] [--host H] [--port P]`` runs
:func:`server_main`.  SIGINT/SIGTERM stop gracefully: stop accepting, transcribe pending
audio, send ``%R`` and ``%F``, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

from whisper_streaming.app.wiring import (
    audiosocket_options_from_config,
    backend_from_config,
    batch_from_config,
    voice_store_from_config,
    engine_options_from_config,
    redis_url_override,
    runtime_options_from_config,
    tcp_options_from_config,
    web_options_from_config,
)
from whisper_streaming.config.schema import ServerConfig, load_config, with_overrides
from whisper_streaming.errors import ConfigError, ModelError, WhisperStreamingError
from whisper_streaming.runtime.runtime import Runtime, RuntimeOptions
from whisper_streaming.sinks.base import Sink
from whisper_streaming.sinks.jsonl import JsonlSink, ResultsLog
from whisper_streaming.sinks.pcm import PcmLimits, PcmRecorder, PcmSink
from whisper_streaming.sinks.webhook import WebhookSink
from whisper_streaming.transports.audiosocket import AudioSocketTransport
from whisper_streaming.transports.tcp import TcpTransport
from whisper_streaming.transports.web import WebTransport

__all__ = ["run_server", "server_main"]

log = logging.getLogger("whisper_streaming")


async def run_server(config: ServerConfig) -> None:
    """Start the pool, the sinks, the runtime and its doors; serve until SIGINT/SIGTERM, then stop gracefully."""
    if config.backend.kind == "local":
        engine = engine_options_from_config(config)
        log.info("model %s (%s, %s, %s), %d worker(s)", engine.model, engine.engine, engine.device, engine.compute_type, config.model.channel)
    else:
        log.info("backend: worker hosts through redis (prefix %s, group %s)", config.backend.prefix, config.backend.group)
    s = config.sentiment
    log.info("sentiment: engine %s%s, %s by default", s.engine, f" ({s.model})" if s.engine == "transformers" else "", "on" if s.enabled else "off")
    # before the workers start: these load the TLS certificate and the token file (a bad one fails at once)
    runtime_options = runtime_options_from_config(config)
    tcp_options = tcp_options_from_config(config)
    web_options = web_options_from_config(config) if config.http.enabled else None
    _log_security(config, runtime_options)
    sinks = _build_sinks(config)
    pool = backend_from_config(config)
    try:
        await pool.start()
    except BaseException:
        await _close_sinks(sinks)
        raise
    batch = batch_from_config(config, pool) if web_options is not None else None
    try:
        runtime = Runtime(runtime_options, pool, sinks=sinks, voices=voice_store_from_config(config))
        if config.audiosocket.enabled:
            runtime.add_transport(AudioSocketTransport(runtime, audiosocket_options_from_config(config)))
        if web_options is not None:
            jobs, batch_options = batch if batch is not None else (None, None)
            runtime.add_transport(WebTransport(runtime, web_options, jobs=jobs, batch_options=batch_options))  # "http listening on H:P"
        runtime.add_transport(TcpTransport(runtime, tcp_options))  # last: "listening on" is the ready line
        await runtime.start()
    except BaseException:
        if batch is not None:
            batch[0].transcriber.close()
        await pool.close()
        await _close_sinks(sinks)
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received; stopping gracefully")
    try:
        await runtime.shutdown()
    finally:
        if batch is not None:
            batch[0].transcriber.close()  # the analysis process (diarization, features)


def _log_security(config: ServerConfig, runtime_options: RuntimeOptions) -> None:
    """Log whether TLS and tokens are on (how many tokens; never a token)."""
    tls = config.tls
    log.info("tls: %s", f"on (certificate {tls.cert_file})" if tls.enabled else "off")
    tokens = runtime_options.session.tokens
    log.info("tokens: %s", f"required ({len(tokens.tokens)} valid)" if tokens is not None else "off")
    if tokens is not None and config.audiosocket.enabled:
        log.warning("tokens: AudioSocket calls are not asked for a token (Asterisk cannot send one): keep port %d private",
                    config.audiosocket.port)


def _build_sinks(config: ServerConfig) -> list[Sink]:
    """The results log, the webhook and PCM saving, as configured (in that order).

    Raises:
        ConfigError: the results log or the PCM directory cannot be opened.
    """
    sinks: list[Sink] = []
    r = config.results
    try:
        if r.jsonl_path is not None:
            try:
                sinks.append(JsonlSink(ResultsLog(r.jsonl_path)))
            except OSError as exc:
                raise ConfigError(f"results.jsonl_path: cannot open {r.jsonl_path!r} for appending: {exc}") from None
        if r.webhook_url is not None:
            sinks.append(WebhookSink(r.webhook_url, timeout_s=r.webhook_timeout_s, max_retries=r.webhook_max_retries))
        if config.pcm_save.enabled:
            try:
                ps = config.pcm_save
                limits = PcmLimits(max_file_bytes=ps.max_file_bytes, max_total_bytes=ps.max_total_bytes, max_files_per_session=ps.max_files_per_session)
                sinks.append(PcmSink(PcmRecorder(ps.dir), limits))
            except OSError as exc:
                raise ConfigError(f"pcm_save.dir: cannot create {config.pcm_save.dir!r}: {exc}") from None
    except BaseException:
        for sink in sinks:  # nothing was published yet: a plain close releases them
            if isinstance(sink, JsonlSink):
                sink.log_file.close()
        raise
    return sinks


async def _close_sinks(sinks: list[Sink]) -> None:
    """Close every sink (a failing one does not keep the others open)."""
    for sink in sinks:
        try:
            await sink.aclose(1.0)
        except Exception:  # noqa: BLE001
            log.exception("closing %s failed", type(sink).__name__)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tcp_server.py", description="Streaming Whisper speech-to-text server (WHISPER_STREAMING_V1.0 over TCP).")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults, same as config_vad.yaml)")
    p.add_argument("--host", default=None, help="listen address (overrides network.ip)")
    p.add_argument("--port", type=int, default=None, help="listen port (overrides network.port; 0 = any free port)")
    p.add_argument("--http-port", type=int, default=None, help="HTTP/WebSocket port (overrides http.port; 0 = any free port)")
    p.add_argument("--redis-url", default=None, help="Redis of backend.kind redis (overrides backend.redis_url and $WHISPER_STREAMING_REDIS_URL)")
    return p.parse_args(argv)


def server_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    args = _parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = {k: v for k, v in {"network.ip": args.host, "network.port": args.port, "http.port": args.http_port}.items() if v is not None}
        overrides |= redis_url_override(args.redis_url)
        if overrides:
            config = with_overrides(config, **overrides)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.server.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(run_server(config))
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        log.error("model error: %s", exc)
        return 3
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.network.ip, config.network.port, exc)
        return 4
    except WhisperStreamingError as exc:
        log.error("%s", exc)
        return 1
    return 0
