"""Wiring from configuration: the option values each layer takes, built from one :class:`ServerConfig`.

Only the app layer reads the configuration; every lower layer takes its own frozen options
(:class:`~whisper_streaming.pipeline.vad.VadOptions`,
:class:`~whisper_streaming.pipeline.session.SessionOptions`,
:class:`~whisper_streaming.runtime.runtime.RuntimeOptions`, the doors' options,
:class:`~whisper_streaming.engines.base.EngineOptions`,
:class:`~whisper_streaming.backends.pool.PoolOptions`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from whisper_streaming.analyzers.base import AnalyzerSpec
from whisper_streaming.analyzers.sentiment import SentimentOptions
from whisper_streaming.analyzers.sentiment_registry import sentiment_analyzer_spec
from whisper_streaming.analyzers.speaker_id import SpeakerAnalyzerOptions, speaker_analyzer_spec
from whisper_streaming.app.security import build_ssl_context, token_set_from_config
from whisper_streaming.backends.base import AsrBackend
from whisper_streaming.backends.pool import PoolOptions, ProcessPool
from whisper_streaming.backends.redis_backend import RedisBackend, RedisBackendOptions
from whisper_streaming.backends.redis_protocol import RedisOptions
from whisper_streaming.backends.redis_worker import WorkerHostOptions
from whisper_streaming.batch.jobs import JobStore
from whisper_streaming.batch.service import BatchTranscriber
from whisper_streaming.config.schema import ServerConfig
from whisper_streaming.core.language import LanguagePolicy
from whisper_streaming.core.options import SPEAKERS_OFF, StreamOptions
from whisper_streaming.core.speakers import SpeakerPolicy
from whisper_streaming.engines.base import DecodeOptions, EngineOptions, SpeechScreenOptions
from whisper_streaming.engines.decoding import DecodeLimits
from whisper_streaming.models.resolve import resolve_model
from whisper_streaming.pipeline.session import SessionOptions
from whisper_streaming.pipeline.partials import PartialPolicy
from whisper_streaming.pipeline.vad import VadOptions
from whisper_streaming.runtime.runtime import RuntimeOptions
from whisper_streaming.transports.audiosocket import AudioSocketOptions
from whisper_streaming.transports.tcp import TcpOptions
from whisper_streaming.sinks.voices import VoiceStore
from whisper_streaming.transports.web import WebOptions
from whisper_streaming.transports.web.batch_api import BatchApiOptions, job_json

__all__ = [
    "batch_from_config",
    "speaker_policy_from_config",
    "voice_store_from_config",
    "pause_partials_at",
    "vad_options_from_config",
    "language_policy_from_config",
    "session_options_from_config",
    "runtime_options_from_config",
    "default_per_ip_limit",
    "tcp_options_from_config",
    "audiosocket_options_from_config",
    "web_options_from_config",
    "engine_options_from_config",
    "sentiment_options_from_config",
    "analyzer_specs_from_config",
    "pool_options_from_config",
    "redis_options_from_config",
    "REDIS_URL_ENV",
    "redis_url_override",
    "backend_from_config",
    "worker_host_options_from_config",
]


def vad_options_from_config(config: ServerConfig) -> VadOptions:
    v = config.vad
    return VadOptions(
        mode=v.mode,
        sample_rate_hz=config.audio.sample_rate,
        frame_ms=config.audio.frame_duration_ms,
        silence_frames=v.silence_frames,
        max_speech_s=v.max_speech_s,
        preroll_ms=v.preroll_ms,
        start_window_frames=v.start_window_frames,
        start_voiced_frames=v.start_voiced_frames,
        min_speech_ms=v.min_speech_ms,
        silence_floor_dbfs=v.silence_floor_dbfs,
        trailing_ms=v.trailing_ms,
        digital_silence_peak=v.digital_silence_peak,
        digital_silence_frames=v.digital_silence_frames,
        agc_target_dbfs=v.agc_target_dbfs,
        agc_max_gain_db=v.agc_max_gain_db,
        agc_window_ms=v.agc_window_ms,
        min_dynamic_range_db=v.min_dynamic_range_db,
        sentence_end_silence_frames=v.sentence_end_silence_frames,
        speculation_backoff_ms=v.speculation_backoff_ms,
    )


def language_policy_from_config(config: ServerConfig) -> LanguagePolicy:
    m = config.model
    return LanguagePolicy(m.language_min_detect_s, m.language_min_probability, m.language_redetect_below,
                          m.language_recheck_below_log_prob, m.language_confirm_utterances)


def _refuse(requested: Any) -> bool:
    return False


def session_options_from_config(config: ServerConfig) -> SessionOptions:
    """VAD, stream limit, the sentiment default, the options the server refuses, the partials' cadence,
    the access tokens (``auth``; reads ``auth.token_file``).

    Raises:
        ConfigError: the token file cannot be used (:func:`~whisper_streaming.app.security.token_set_from_config`).
    """
    max_stream_s = config.server.max_stream_s
    s = config.sentiment
    p = config.partials
    return SessionOptions(
        vad=vad_options_from_config(config),
        max_stream_samples=None if max_stream_s is None else int(max_stream_s * config.audio.sample_rate),
        stream_defaults=StreamOptions(sentiment=s.enabled),
        default_language=config.model.language,
        language_policy=language_policy_from_config(config),
        option_policy=_option_policy(config),
        partial_policy=PartialPolicy(p.first_after_s, p.min_interval_s, p.cost_factor),
        tokens=token_set_from_config(config),
        speaker_policy=speaker_policy_from_config(config),
    )


def speaker_policy_from_config(config: ServerConfig) -> SpeakerPolicy:
    """Section ``speakers``: the thresholds (None in the config: the calibrated defaults)."""
    sp = config.speakers
    defaults = SpeakerPolicy()
    return SpeakerPolicy(
        identify_threshold=defaults.identify_threshold if sp.identify_threshold is None else sp.identify_threshold,
        auto_threshold=defaults.auto_threshold if sp.auto_threshold is None else sp.auto_threshold,
        max_auto_labels=sp.max_auto_labels,
        min_enroll_speech_s=sp.min_enroll_speech_s,
        min_identify_speech_s=defaults.min_identify_speech_s,
    )


def voice_store_from_config(config: ServerConfig) -> VoiceStore | None:
    """Saved voices (``speakers.dir``), or None.

    Raises:
        OSError: the directory cannot be created.
    """
    sp = config.speakers
    return VoiceStore(sp.dir, replace=sp.replace_saved) if sp.enabled and sp.dir else None


def _option_policy(config: ServerConfig) -> dict[str, Any]:
    """Options the server cannot give: sentiment without an engine, partials when disabled or with one worker."""
    policy: dict[str, Any] = {}
    if config.sentiment.engine == "none":
        policy["sentiment"] = _refuse
    p = config.partials
    if not p.enabled or (p.workers == 0 and config.model.channel < 2):
        policy["partials"] = _refuse
    if not config.speakers.enabled:
        policy["enroll"] = _nothing
        policy["speakers"] = _speakers_off
    return policy


def _nothing(requested: Any) -> None:
    return None


def _speakers_off(requested: Any) -> str:
    return SPEAKERS_OFF


def runtime_options_from_config(config: ServerConfig) -> RuntimeOptions:
    s = config.server
    return RuntimeOptions(
        session=session_options_from_config(config),
        max_sessions=s.max_connections,
        max_sessions_per_ip=default_per_ip_limit(s.max_connections) if s.max_connections_per_ip is None else s.max_connections_per_ip,
        max_queued_utterances=s.max_queued_utterances,
        overload_queue_fraction=s.overload_queue_fraction,
        shutdown_timeout_s=s.shutdown_timeout_s,
        status_probes_per_s=s.status_probes_per_s,
        speculation_idle_engines=s.speculation_idle_engines,
    )


def default_per_ip_limit(max_connections: int) -> int:
    """Three quarters of the slots (at least 1): one host cannot take them all."""
    return max(1, max_connections * 3 // 4)


def tcp_options_from_config(config: ServerConfig) -> TcpOptions:
    """The TCP door's options; TLS when ``tls`` is set (loads the certificate and key).

    Raises:
        ConfigError: the TLS files cannot be used (:func:`~whisper_streaming.app.security.build_ssl_context`).
    """
    n = config.network
    return TcpOptions(host=n.ip, port=n.port, handshake_timeout_s=n.handshake_timeout_s, identify_timeout_s=n.identify_timeout_s,
                      socket_timeout_s=n.socket_timeout, max_send_buffer_bytes=n.max_send_buffer_bytes,
                      status_requests_per_s=n.status_requests_per_s, status_burst=n.status_burst,
                      length_encoding=n.length_encoding, ssl_context=build_ssl_context(config))


def audiosocket_options_from_config(config: ServerConfig) -> AudioSocketOptions:
    n = config.network
    return AudioSocketOptions(host=n.ip, port=config.audiosocket.port, identify_timeout_s=n.identify_timeout_s, idle_timeout_s=n.socket_timeout,
                              max_call_s=config.audiosocket.max_call_s)


def web_options_from_config(config: ServerConfig) -> WebOptions:
    """The web door's options (section ``http`` on ``network.ip``, the network timeouts and send
    buffer limit); TLS (HTTPS/WSS) when ``tls`` is set.

    Raises:
        ConfigError: the TLS files cannot be used (:func:`~whisper_streaming.app.security.build_ssl_context`).
    """
    n, h = config.network, config.http
    return WebOptions(host=n.ip, port=h.port, allowed_origins=h.allowed_origins, max_message_bytes=h.max_message_bytes,
                      identify_timeout_s=n.identify_timeout_s, socket_timeout_s=n.socket_timeout,
                      max_send_buffer_bytes=n.max_send_buffer_bytes, ssl_context=build_ssl_context(config),
                      max_upload_bytes=config.batch.max_upload_bytes)


def batch_from_config(config: ServerConfig, backend: AsrBackend) -> tuple[JobStore, BatchApiOptions] | None:
    """The file API's job store and options (section ``batch``), or None when it is off (or HTTP is).
    A file may use every worker (``model.channel``); the pool leaves some to live streams."""
    b = config.batch
    if not (b.enabled and config.http.enabled):
        return None
    transcriber = BatchTranscriber(backend, vad_options=vad_options_from_config(config), max_in_flight=max(1, config.model.channel),
                                   max_speakers=b.max_speakers)
    store = JobStore(transcriber, max_queued=b.max_queued_jobs, max_running=b.max_running_jobs, retention_s=float(b.retention_s),
                     callback_body=job_json)
    return store, BatchApiOptions(max_duration_s=float(b.max_duration_s), callbacks=b.callbacks, callback_targets=b.callback_targets)


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
        speech_screen=None if m.speech_screen_min_audio_s is None else SpeechScreenOptions(
            min_audio_s=m.speech_screen_min_audio_s,
            probability=m.speech_screen_threshold,
            min_speech_ms=m.speech_screen_min_speech_ms,
        ),
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
        analyzers=analyzer_specs_from_config(config),
        throttle_worker_s_per_s=config.server.throttle_worker_s_per_s or None,
        throttle_burst_s=config.server.throttle_burst_s,
        partial_workers=config.partials.workers if config.partials.enabled else 0,
        pause_partials_at=pause_partials_at(config),
    )


def pause_partials_at(config: ServerConfig, cores: int | None = None) -> int | None:
    """How many workers busy with finals pause the partial workers (``PoolOptions.pause_partials_at``).

    On a CPU, partials must not take a core a final could use: with ``cores`` (default: the
    cores this process may run on) and ``model.cpu_threads`` per worker (0: counted as one),
    the cores left over by ``partials.workers`` decide: ``max(1, cores // threads -
    partials.workers)``, e.g. 1 on 2 cores.  None (never pause) on an accelerator, where the
    decode does not run on the cores.
    """
    if config.model.device not in ("cpu", "auto"):
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, config.model.cpu_threads)
    return max(1, cores // threads - config.partials.workers)


def analyzer_specs_from_config(config: ServerConfig) -> tuple[AnalyzerSpec, ...]:
    """The analyzers every worker builds: sentiment unless ``sentiment.engine: none``; the speaker
    embedding unless ``speakers.enabled`` is false (it loads its model at first use)."""
    sentiment = sentiment_options_from_config(config)
    specs = () if sentiment is None else (sentiment_analyzer_spec(sentiment),)
    if config.speakers.enabled:
        specs += (speaker_analyzer_spec(SpeakerAnalyzerOptions(preload=config.speakers.preload)),)
    return specs


def redis_options_from_config(config: ServerConfig) -> RedisOptions:
    """Section ``backend``: the broker's address and recovery timings (front end and worker hosts)."""
    b = config.backend
    return RedisOptions(url=b.redis_url, prefix=b.prefix, group=b.group, heartbeat_s=b.heartbeat_s, worker_ttl_s=b.worker_ttl_s,
                        claim_after_s=b.claim_after_s, max_attempts=b.max_attempts, result_ttl_s=b.result_ttl_s,
                        connect_timeout_s=b.connect_timeout_s)


REDIS_URL_ENV = "WHISPER_STREAMING_REDIS_URL"
"""Environment variable that overrides ``backend.redis_url`` (``--redis-url`` overrides both)."""


def redis_url_override(option: str | None) -> dict[str, str]:
    """The ``with_overrides`` pair for ``backend.redis_url``: the command-line ``option``, else
    :data:`REDIS_URL_ENV` if set, else nothing."""
    url = option or os.environ.get(REDIS_URL_ENV) or None
    return {"backend.redis_url": url} if url else {}


def backend_from_config(config: ServerConfig) -> AsrBackend:
    """The server's backend (``backend.kind``): its own :class:`ProcessPool` (resolves the model:
    may raise :class:`~whisper_streaming.errors.ModelError`), or a :class:`RedisBackend` (no model
    here: the worker hosts load it)."""
    if config.backend.kind == "redis":
        b, s = config.backend, config.server
        return RedisBackend(RedisBackendOptions(
            redis=redis_options_from_config(config),
            max_queued=s.max_queued_utterances,
            max_queued_per_session=s.max_queued_per_session,
            max_in_flight=b.max_in_flight,
            result_timeout_s=b.result_timeout_s,
            unavailable_grace_s=b.unavailable_grace_s,
            throttle_worker_s_per_s=s.throttle_worker_s_per_s or None,
            throttle_burst_s=s.throttle_burst_s,
        ))
    return ProcessPool(pool_options_from_config(config, engine_options_from_config(config)))


def worker_host_options_from_config(config: ServerConfig, *, workers: int | None = None) -> WorkerHostOptions:
    """A worker host's options (``whisper-streaming-worker``): ``workers`` (default ``model.channel``)
    engine processes with the model and analyzers of the config; fairness and the cost throttle
    are the front end's, so the host's own queue has neither.

    Raises:
        ModelError: the model cannot be resolved.
    """
    pool = pool_options_from_config(config, engine_options_from_config(config))
    pool = dataclasses.replace(pool, workers=workers or config.model.channel, throttle_worker_s_per_s=None, partial_workers=0,
                               max_queued_per_session=max(pool.max_queued_per_session, workers or config.model.channel))
    return WorkerHostOptions(redis=redis_options_from_config(config), pool=pool)
