"""Wiring: configuration -> model resolution -> worker pool -> TCP server, and the server CLI.

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

from .audiosocket_server import AudioSocketServer
from .asr import DecodeOptions, EngineOptions
from .config import ServerConfig, load_config, with_overrides
from .decoding import DecodeLimits
from .errors import ConfigError, ModelError, WhisperStreamingError
from .models import resolve_model
from .pool import PoolOptions, ProcessPool
from .results_log import ResultsLog
from .sentiment import SentimentOptions
from .server import StreamingServer, language_policy_from_config
from .webhook import WebhookSink

__all__ = ["engine_options_from_config", "sentiment_options_from_config", "pool_options_from_config", "run_server", "server_main"]

log = logging.getLogger("whisper_streaming")


def engine_options_from_config(config: ServerConfig) -> EngineOptions:
    """Resolve ``model.size`` for ``model.engine`` (bundled base, local path or name) and build engine options.

    Raises:
        ModelError: the model cannot be resolved (bad path, checksum mismatch ...).
    """
    m = config.model
    decode = DecodeOptions(
        language=m.language,
        beam_size=m.beam_size,
        temperatures=tuple(m.temperatures),
        no_speech_threshold=m.no_speech_threshold,
        log_prob_threshold=m.log_prob_threshold,
        compression_ratio_threshold=m.compression_ratio_threshold,
        condition_on_previous_text=m.condition_on_previous_text,
        initial_prompt=m.initial_prompt,
    )
    return EngineOptions(
        engine=m.engine,
        model=resolve_model(m.size, engine=m.engine),
        device=m.device,
        compute_type=m.compute_type,
        cpu_threads=m.cpu_threads,
        encoder_window_pad_s=m.encoder_window_pad_s,
        retry_window_pad_s=m.retry_window_pad_s,
        decode=decode,
        limits=DecodeLimits(
            tokens_per_s=m.max_tokens_per_s,
            base_tokens=m.max_tokens_base,
            budget_base_s=m.decode_budget_s,
            budget_per_audio_s=m.decode_budget_per_audio_s,
            short_utterance_s=m.short_utterance_s,
        ),
        language_policy=language_policy_from_config(config),
    )


def sentiment_options_from_config(config: ServerConfig) -> SentimentOptions | None:
    """The workers' sentiment engine, or None for ``sentiment.engine: none``."""
    s = config.sentiment
    if s.engine == "none":
        return None
    return SentimentOptions(
        engine=s.engine,
        model=s.model,
        languages=None if s.languages is None else tuple(s.languages),
        neutral_threshold=s.neutral_threshold,
        threads=config.model.cpu_threads,
        device="cuda" if config.model.device == "cuda" else "cpu",
    )


def pool_options_from_config(config: ServerConfig, engine: EngineOptions) -> PoolOptions:
    return PoolOptions(
        engine=engine,
        workers=config.model.channel,
        max_queued=config.server.max_queued_utterances,
        max_queued_per_session=config.server.max_queued_per_session,
        transcribe_timeout_s=config.model.transcribe_timeout_s,
        sentiment=sentiment_options_from_config(config),
    )


async def run_server(config: ServerConfig) -> None:
    """Start the pool and the server, serve until SIGINT/SIGTERM, then stop gracefully."""
    engine = engine_options_from_config(config)
    log.info("model %s (%s, %s, %s), %d worker(s)", engine.model, engine.engine, engine.device, engine.compute_type, config.model.channel)
    s = config.sentiment
    log.info("sentiment: engine %s%s, %s by default", s.engine, f" ({s.model})" if s.engine == "transformers" else "", "on" if s.enabled else "off")
    results_log = None
    if config.results.jsonl_path is not None:
        try:
            results_log = ResultsLog(config.results.jsonl_path)
        except OSError as exc:
            raise ConfigError(f"results.jsonl_path: cannot open {config.results.jsonl_path!r} for appending: {exc}") from None
    pool = ProcessPool(pool_options_from_config(config, engine))
    try:
        await pool.start()
    except BaseException:
        if results_log is not None:
            results_log.close()
        raise
    server = StreamingServer(config, pool, results_log=results_log)
    webhook = None
    if config.audiosocket.enabled:
        r = config.results
        if r.webhook_url is not None:
            webhook = WebhookSink(r.webhook_url, timeout_s=r.webhook_timeout_s, max_retries=r.webhook_max_retries)
        server.transports.append(AudioSocketServer(server, webhook=webhook))
    try:  # other transports first: "listening on" (the main port) is the last line before ready
        for transport in server.transports:
            await transport.start()
        await server.start()
    except OSError:
        for transport in server.transports:
            transport.close_listener()
        if webhook is not None:
            await webhook.aclose(1.0)
        await pool.close()
        if results_log is not None:
            results_log.close()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received; stopping gracefully")
    await server.shutdown()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tcp_server.py", description="Streaming Whisper speech-to-text server (WHISPER_STREAMING_V1.0 over TCP).")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults, same as config_vad.yaml)")
    p.add_argument("--host", default=None, help="listen address (overrides network.ip)")
    p.add_argument("--port", type=int, default=None, help="listen port (overrides network.port; 0 = any free port)")
    return p.parse_args(argv)


def server_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    args = _parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = {k: v for k, v in {"network.ip": args.host, "network.port": args.port}.items() if v is not None}
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
