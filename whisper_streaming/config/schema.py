"""Server configuration: typed, validated, immutable.

The configuration lives in a YAML file (see ``config_vad.yaml`` at the repository root for
the documented defaults).  Every section and every key is optional; missing ones take the
defaults defined here, so an empty file (or ``{}``) is a valid configuration.

Validation is deliberately strict:

* unknown keys are errors (a typo such as ``chanel`` must not be silently ignored);
* types are not coerced: ``port: "5000"`` or ``enabled: "yes"`` are errors.  Float fields
  accept integers (``socket_timeout: 60``) but never strings, booleans, NaN or infinity;
* ranges and cross-field constraints are checked.

Every problem found is reported at once in a :class:`~whisper_streaming.errors.ConfigError`
whose message has one line per problem, formatted ``"<source>: <dotted.key.path>: <message>"``,
for example::

    config_vad.yaml: model.chanel: unknown key (expected one of: ...)
    config_vad.yaml: network.port: expected an integer, got str '5000'

A pydantic ``ValidationError`` never escapes this module.

Public API: the section models, :class:`ServerConfig`, :func:`load_config`,
:func:`parse_config` and :func:`with_overrides`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from whisper_streaming.errors import ConfigError, UsageError
from whisper_streaming.core.options import WHISPER_LANGUAGE_CODES

__all__ = [
    "AudioConfig",
    "NetworkConfig",
    "ModelConfig",
    "VadConfig",
    "ServerSectionConfig",
    "PcmSaveConfig",
    "SentimentConfig",
    "ResultsConfig",
    "ServerConfig",
    "PROTOCOL_SAMPLE_RATE_HZ",
    "load_config",
    "parse_config",
    "with_overrides",
]

#: The wire protocol carries 16 kHz, 16-bit, mono PCM; nothing else is supported.
PROTOCOL_SAMPLE_RATE_HZ = 16000

# A finite float that also accepts ints but never strings or booleans.
_Float = Annotated[float, Strict(), AllowInfNan(False)]
_UnitFloat = Annotated[_Float, Field(ge=0.0, le=1.0)]
_NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]

_LANGUAGE_RE = re.compile(r"[a-z]{2,3}")

_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class AudioConfig(BaseModel):
    """Audio framing of the incoming PCM stream (16 kHz, s16le, mono)."""

    model_config = _MODEL_CONFIG

    sample_rate: StrictInt = PROTOCOL_SAMPLE_RATE_HZ
    """Sample rate in Hz.  Must be 16000: the protocol's PCM is 16 kHz."""

    frame_duration_ms: Literal[10, 20, 30] = 30
    """Duration of one VAD frame in milliseconds (WebRTC VAD supports 10, 20 or 30)."""

    frame_size: StrictInt = 480
    """Samples per VAD frame; must equal ``sample_rate * frame_duration_ms / 1000``."""

    @field_validator("sample_rate")
    @classmethod
    def _check_sample_rate(cls, value: int) -> int:
        if value != PROTOCOL_SAMPLE_RATE_HZ:
            raise ValueError(
                f"must be {PROTOCOL_SAMPLE_RATE_HZ} (the protocol's PCM is 16 kHz), got {value}"
            )
        return value

    @field_validator("frame_size")
    @classmethod
    def _check_frame_size(cls, value: int, info: ValidationInfo) -> int:
        rate = info.data.get("sample_rate")
        duration = info.data.get("frame_duration_ms")
        if rate is None or duration is None:
            return value  # already reported on the other field
        expected = rate * duration // 1000
        if value != expected:
            raise ValueError(
                f"must equal sample_rate * frame_duration_ms / 1000 = "
                f"{rate} * {duration} / 1000 = {expected}, got {value}"
            )
        return value


class NetworkConfig(BaseModel):
    """TCP listener settings."""

    model_config = _MODEL_CONFIG

    ip: _NonEmptyStr = "127.0.0.1"
    """Address to bind (IPv4 or IPv6 literal, or a host name)."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 5000
    """TCP port to listen on; 0 lets the OS pick a free port."""

    socket_timeout: Annotated[_Float, Field(gt=0)] = 60.0
    """Seconds without any packet from a client before it gets ``%E TIMEOUT`` and is closed."""

    handshake_timeout_s: Annotated[_Float, Field(gt=0)] = 10.0
    """Seconds a new connection has to send the magic string."""

    max_send_buffer_bytes: Annotated[StrictInt, Field(ge=65536)] = 1048576
    """Bytes of unsent output allowed per connection before the client is considered stuck."""

    @field_validator("ip")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        if value != value.strip() or not value:
            raise ValueError(f"must not contain leading/trailing whitespace, got {value!r}")
        return value


class ModelConfig(BaseModel):
    """Speech-recognition engine and decoding options."""

    model_config = _MODEL_CONFIG

    engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    """ASR engine: faster-whisper (CTranslate2) or openai-whisper (OpenAI's reference, PyTorch)."""

    size: _NonEmptyStr = "base"
    """Model name (tiny, base, small, medium, large-v2, large-v3, ...) or a local model: a
    CTranslate2 directory (faster-whisper) or a ``.pt`` checkpoint (openai-whisper)."""

    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Inference device."""

    compute_type: Literal[
        "default",
        "auto",
        "int8",
        "int8_float16",
        "int8_float32",
        "int8_bfloat16",
        "int16",
        "float16",
        "bfloat16",
        "float32",
    ] = "int8"
    """CTranslate2 compute type (quantization)."""

    language: Optional[StrictStr] = None
    """Language code such as ``"ko"``, ``"en"``, ``"yue"``; ``None`` auto-detects."""

    channel: Annotated[StrictInt, Field(ge=1, le=64)] = 2
    """Number of ASR worker processes (each holds one model instance)."""

    cpu_threads: Annotated[StrictInt, Field(ge=0, le=256)] = 1
    """CPU threads per worker; 0 lets the engine choose."""

    beam_size: Annotated[StrictInt, Field(ge=1, le=20)] = 5
    """Beam width for decoding."""

    temperatures: Annotated[tuple[_UnitFloat, ...], Field(min_length=1)] = (
        0.0,
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
    )
    """Fallback sampling temperatures, each in [0, 1], strictly ascending."""

    no_speech_threshold: Optional[_UnitFloat] = 0.6
    """Probability above which a segment counts as silence (0..1); ``None`` disables."""

    log_prob_threshold: Optional[_Float] = -1.0
    """Average log-probability below which decoding falls back to the next temperature;
    ``None`` disables."""

    compression_ratio_threshold: Optional[Annotated[_Float, Field(gt=0)]] = 2.4
    """gzip compression ratio above which decoding is retried (repetition guard); ``None``
    disables."""

    condition_on_previous_text: StrictBool = False
    """Feed the previous utterance's text as a prompt."""

    initial_prompt: Optional[StrictStr] = None
    """Text prompt given to the decoder for every utterance; ``None`` for none."""

    transcribe_timeout_s: Annotated[_Float, Field(gt=0)] = 60.0
    """Seconds a worker may spend on one utterance before it is killed and restarted."""

    encoder_window_pad_s: Optional[Annotated[_Float, Field(ge=1.0, le=30.0)]] = 4.0
    """Encode only the utterance plus this much padding (seconds) instead of Whisper's fixed
    30 s window; ``None`` keeps the full window.  Faster, slightly less accurate: see
    ``docs/benchmarks.md``."""

    retry_window_pad_s: Optional[Annotated[_Float, Field(ge=1.0, le=30.0)]] = 10.0
    """A trimmed-window decode that stopped early or said itself twice is redone on the
    utterance plus this much padding (seconds; ``None``: Whisper's full 30 s window)."""

    max_tokens_per_s: Annotated[_Float, Field(gt=0, le=100)] = 10.0
    """A decode may generate at most ``max_tokens_base + max_tokens_per_s * duration`` tokens
    (capped at 220): a loop stops early (measured: at most 8.5 text tokens/s in English, 5.6 in Korean)."""

    max_tokens_base: Annotated[StrictInt, Field(ge=1, le=224)] = 16
    """See ``max_tokens_per_s``."""

    decode_budget_s: Annotated[_Float, Field(gt=0, le=600)] = 2.0
    """Time bound of one utterance: no further decode (fallback temperature, full-window retry)
    starts unless it can end within ``decode_budget_s + decode_budget_per_audio_s * duration``
    seconds; the best text so far is used (``%C`` counts these as time limited)."""

    decode_budget_per_audio_s: Annotated[_Float, Field(ge=0, le=100)] = 1.0
    """See ``decode_budget_s``."""

    short_utterance_s: Annotated[_Float, Field(ge=0, le=30)] = 1.2
    """An utterance with at most this much audio whose decode has a no-speech probability above
    ``no_speech_threshold``, or more than 2 + 4 words per second of audio, is dropped (noise,
    breath and codec-noise fragments; ``DecodeLimits``); 0 = never."""

    language_min_detect_s: Annotated[_Float, Field(gt=0, le=30)] = 2.0
    """With auto-detection, an utterance must have this much audio (s) for its detected
    language to become the stream's, or to replace it."""

    language_min_probability: Annotated[_Float, Field(gt=0, le=1)] = 0.5
    """The detector's probability needed for a detected language to become the stream's."""

    language_redetect_below: Annotated[_Float, Field(ge=0, lt=1)] = 0.1
    """The stream's kept language is replaced for an utterance (of at least
    ``language_min_detect_s``) on which its probability falls below this."""

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str) -> str:
        return _not_blank(value)

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not _LANGUAGE_RE.fullmatch(value) or value not in WHISPER_LANGUAGE_CODES):
            raise ValueError(
                f"must be a Whisper language code (2-3 lowercase letters) such as 'en', 'ko' or 'yue' "
                f"(or null to auto-detect), got {value!r}"
            )
        return value

    @field_validator("temperatures")
    @classmethod
    def _check_temperatures(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for previous, current in zip(value, value[1:]):
            if not current > previous:
                raise ValueError(f"must be strictly ascending, got {list(value)}")
        return value


class VadConfig(BaseModel):
    """Voice-activity detection and utterance segmentation."""

    model_config = _MODEL_CONFIG

    mode: Annotated[StrictInt, Field(ge=0, le=3)] = 1
    """WebRTC VAD aggressiveness: 0 (least) .. 3 (most aggressive)."""

    silence_frames: Annotated[StrictInt, Field(ge=1, le=1000)] = 16
    """Consecutive unvoiced frames that end an utterance."""

    max_speech_s: Annotated[_Float, Field(ge=1.0, le=30.0)] = 10.0
    """Seconds after which an utterance is cut even without silence (Whisper's window is 30 s)."""

    preroll_ms: Annotated[StrictInt, Field(ge=200, le=2000)] = 300
    """Milliseconds of audio before the detected speech start kept in the utterance."""

    start_window_frames: Annotated[StrictInt, Field(ge=1, le=100)] = 10
    """Sliding window (frames) examined for the start of speech."""

    start_voiced_frames: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    """Voiced frames within ``start_window_frames`` needed to start an utterance."""

    min_speech_ms: Annotated[StrictInt, Field(ge=0, le=5000)] = 150
    """Utterances with less voiced audio than this (milliseconds) are dropped."""

    trailing_ms: Annotated[StrictInt, Field(ge=0, le=30000)] = 180
    """Audio kept after an utterance's last voiced frame (ms; at most the endpointing silence is
    used).  Once that much silence is in, the utterance can be transcribed speculatively while
    the endpoint is awaited (``VadOptions.trailing_ms``)."""

    silence_floor_dbfs: Optional[Annotated[_Float, Field(ge=-120.0, le=0.0)]] = None
    """Frames quieter than this RMS level (dBFS) are never speech, whatever WebRTC VAD says;
    ``None`` = off (the default: quiet lines carry speech at -50 to -70 dBFS; the digital
    silence rule below handles muted lines)."""

    digital_silence_peak: Annotated[StrictInt, Field(ge=0, le=1000)] = 4
    """A frame whose samples span at most this many LSB (max - min; zeros, a constant, a few
    LSB of dither) is near digital silence: never amplified for the VAD, and a run of
    ``digital_silence_frames`` of them is never speech."""

    digital_silence_frames: Annotated[StrictInt, Field(ge=1, le=1000)] = 8
    """From this frame of a run of near-silent frames on, frames are unvoiced (``VadOptions``)."""

    agc_target_dbfs: Optional[Annotated[_Float, Field(ge=-60.0, le=0.0)]] = -20.0
    """Level normalisation of the VAD's copy of the audio: the loudest frame of the last
    ``agc_window_ms`` is brought to this level (dBFS); ``None`` = off.  Makes endpointing the
    same from -10 to -70 dBFS (``VadOptions``)."""

    agc_max_gain_db: Annotated[_Float, Field(ge=0.0, le=60.0)] = 45.0
    """Largest gain of that normalisation (dB)."""

    agc_window_ms: Annotated[StrictInt, Field(ge=30, le=600000)] = 10000
    """How long the loudest frame sets the gain (ms)."""

    @field_validator("start_voiced_frames")
    @classmethod
    def _check_start_voiced(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("start_window_frames")
        if window is not None and value > window:
            raise ValueError(f"must be <= start_window_frames ({window}), got {value}")
        return value


class ServerSectionConfig(BaseModel):
    """Connection limits, queueing and logging."""

    model_config = _MODEL_CONFIG

    max_connections: Annotated[StrictInt, Field(ge=1, le=100000)] = 16
    """Concurrent client connections; more are refused with ``%E SERVER_TOO_BUSY``."""

    max_queued_utterances: Annotated[StrictInt, Field(ge=1, le=100000)] = 64
    """Utterances waiting for a worker, across all sessions."""

    max_queued_per_session: Annotated[StrictInt, Field(ge=1, le=100000)] = 8
    """Utterances one session may have waiting (<= ``max_queued_utterances``)."""

    overload_queue_fraction: Annotated[_Float, Field(gt=0.0, le=1.0)] = 0.75
    """Overload policy: while the utterance queue holds more than this fraction of
    ``max_queued_utterances``, new sessions are refused with ``%E SERVER_TOO_BUSY`` so that
    the sessions already open keep their latency."""

    max_connections_per_ip: Annotated[StrictInt, Field(ge=0, le=100000)] = 0
    """Concurrent sessions from one peer address; 0 = no limit.  More get ``%E TOO_MANY_CONNECTIONS``."""

    max_stream_s: Optional[Annotated[_Float, Field(gt=0)]] = None
    """Longest stream in seconds of audio; past it the stream is finished (results, ``%F``),
    then ``%E STREAM_TOO_LONG`` and close.  ``None``: no limit."""

    shutdown_timeout_s: Annotated[_Float, Field(gt=0)] = 30.0
    """Seconds a graceful shutdown may take before remaining work is abandoned."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging level."""

    @field_validator("max_queued_per_session")
    @classmethod
    def _check_per_session(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_queued_utterances")
        if total is not None and value > total:
            raise ValueError(f"must be <= max_queued_utterances ({total}), got {value}")
        return value


class PcmSaveConfig(BaseModel):
    """Saving every received stream as a WAV file (for debugging / data collection)."""

    model_config = _MODEL_CONFIG

    enabled: StrictBool = False
    """Whether to save received PCM."""

    dir: _NonEmptyStr = "pcm"
    """Directory for the WAV files (created if missing; relative to the working directory)."""

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return _not_blank(value)


class SentimentConfig(BaseModel):
    """Sentiment of each final result (``%R`` field, ``%S`` summary); see ``whisper_streaming.analyzers.sentiment``."""

    model_config = _MODEL_CONFIG

    enabled: StrictBool = False
    """Server-wide default for sessions; a client can opt in (or out) with ``%o sentiment=1``."""

    engine: Literal["vader", "transformers", "none"] = "vader"
    """``vader`` (English lexicon, offline), ``transformers`` (a Hugging Face text-classification
    model), or ``none`` (no engine: clients' opt-in is answered ``sentiment=0``)."""

    model: _NonEmptyStr = "distilbert-base-uncased-finetuned-sst-2-english"
    """``transformers`` only: a model name (cache or Hub) or a local ``save_pretrained`` directory."""

    languages: Optional[Annotated[tuple[StrictStr, ...], Field(min_length=1)]] = None
    """Language codes the engine supports; others get ``sentiment=unsupported``.  ``None``: the
    engine's default (vader: en; transformers: en for the default model, else any language)."""

    neutral_threshold: Annotated[_Float, Field(gt=0.0, lt=1.0)] = 0.05
    """``vader``: |compound| below this is neutral (0.05, as the vaderSentiment README recommends)."""

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, value: str, info: ValidationInfo) -> str:
        if value == "none" and info.data.get("enabled"):
            raise ValueError("enabled: true needs an engine (vader or transformers), got none")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        return _not_blank(value)

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, value: Optional[tuple[str, ...]]) -> Optional[tuple[str, ...]]:
        for code in value or ():
            if not _LANGUAGE_RE.fullmatch(code):
                raise ValueError(f"must be 2-3 letter lowercase language codes such as 'en' or 'ko', got {code!r}")
        return value


class ResultsConfig(BaseModel):
    """Where final results go besides the client."""

    model_config = _MODEL_CONFIG

    jsonl_path: Optional[_NonEmptyStr] = None
    """Append one JSON line per final result to this file (``None``: no log)."""

    @field_validator("jsonl_path")
    @classmethod
    def _check_path(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value if value is None else _not_blank(value)

    webhook_url: Optional[_NonEmptyStr] = None
    """POST one JSON body per final result and one per session end (an AudioSocket call's hangup), from every door, here (``None``: off)."""

    webhook_timeout_s: Annotated[_Float, Field(gt=0, le=300)] = 5.0
    """Seconds one webhook POST may take."""

    webhook_max_retries: Annotated[StrictInt, Field(ge=0, le=100)] = 3
    """Retries of a failed webhook POST (with backoff) before the body is given up."""

    @field_validator("webhook_url")
    @classmethod
    def _check_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            from whisper_streaming.sinks.webhook import parse_url  # lazy: HTTP client only when configured

            try:
                parse_url(value)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return value


class AudioSocketConfig(BaseModel):
    """The Asterisk AudioSocket listener (on ``network.ip``)."""

    model_config = _MODEL_CONFIG

    enabled: StrictBool = False
    """Listen for AudioSocket calls."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 5001
    """TCP port for AudioSocket; 0 lets the OS pick a free port."""


_SECTIONS = ("audio", "network", "model", "vad", "server", "pcm_save", "sentiment", "results", "audiosocket")


class ServerConfig(BaseModel):
    """The whole configuration.  Immutable; build modified copies with :func:`with_overrides`."""

    model_config = _MODEL_CONFIG

    audio: AudioConfig = Field(default_factory=AudioConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    server: ServerSectionConfig = Field(default_factory=ServerSectionConfig)
    pcm_save: PcmSaveConfig = Field(default_factory=PcmSaveConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    results: ResultsConfig = Field(default_factory=ResultsConfig)
    audiosocket: AudioSocketConfig = Field(default_factory=AudioSocketConfig)

    @field_validator(*_SECTIONS, mode="before")
    @classmethod
    def _empty_section_is_default(cls, value: Any) -> Any:
        # ``vad:`` with every key commented out loads as None: treat it as an empty section.
        return {} if value is None else value


# --------------------------------------------------------------------------- errors


def _describe(value: Any) -> str:
    """``str '5000'``-style description of a bad input value, bounded in length."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model that the mapping at ``loc`` is validated against."""
    model: Any = ServerConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return list(model.model_fields)


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}

_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _error_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    loc = tuple(error.get("loc", ()))
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if kind == "invalid_key":
        return f"unknown key: keys must be strings, got {_describe(value)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    if kind in _COMPARISONS:
        name, symbol = _COMPARISONS[kind]
        return f"must be {symbol} {ctx.get(name)}, got {value!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_describe(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("too_short", "too_long"):
        return f"{error.get('msg', 'wrong length')}, got {value!r}"
    if kind == "value_error":
        return str(ctx.get("error", error.get("msg", "invalid value")))
    return f"{error.get('msg', 'invalid value')}, got {_describe(value)}"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error.get("loc", ()))
        prefix = f"{source}: {path}: " if path else f"{source}: "
        lines.append(prefix + _error_message(error))
    return "\n".join(lines)


# --------------------------------------------------------------------------- API


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ServerConfig:
    """Validate already-parsed configuration data.

    Args:
        data: mapping of section name to section mapping (e.g. the result of YAML loading).
        source: name used as the prefix of every error line (usually the file name).

    Raises:
        ConfigError: listing every problem, one ``"<source>: <key.path>: <message>"`` per line.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {_describe(data)}")
    try:
        return ServerConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


def _yaml_error_line(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{source}: {where}invalid YAML: {' '.join(str(problem).split())}"


def load_config(path: str | os.PathLike[str] | None) -> ServerConfig:
    """Load and validate a YAML configuration file.

    Args:
        path: the YAML file; ``None`` returns the all-defaults configuration.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML (duplicate keys
            included), its top level is not a mapping, or any value is invalid.
    """
    if path is None:
        return ServerConfig()
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_line(source, exc)) from None
    if data is None:  # empty file or only comments
        data = {}
    return parse_config(data, source=source)


def with_overrides(config: ServerConfig, **dotted: Any) -> ServerConfig:
    """Return a re-validated copy of ``config`` with dotted keys replaced.

    Example: ``with_overrides(cfg, **{"network.port": 0, "network.ip": "::1"})``.  Values
    are validated as strictly as file values (pass ints, not strings).  A mapping given for
    a whole section (``**{"vad": {"mode": 3}}``) is merged into that section.

    Raises:
        ConfigError: an override names an unknown key or has an invalid value
            (source ``<overrides>``).
        UsageError: ``config`` is not a ServerConfig or a key is malformed (empty part).
    """
    if not isinstance(config, ServerConfig):
        raise UsageError(f"with_overrides() needs a ServerConfig, got {type(config).__name__}")
    data: dict[str, Any] = config.model_dump()
    for key, value in dotted.items():
        parts = key.split(".")
        if not all(parts):
            raise UsageError(f"malformed override key {key!r}")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"<overrides>: {key}: {prefix} is not a section")
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = {**node[last], **value}
        else:
            node[last] = value
    return parse_config(data, source="<overrides>")
