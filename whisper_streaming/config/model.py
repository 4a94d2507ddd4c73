"""The ``model`` section: speech-recognition engine and decoding options."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, field_validator

from whisper_streaming.config.fields import (
    LANGUAGE_CODE_RE,
    STRICT_MODEL_CONFIG,
    FiniteFloat,
    NonEmptyStr,
    UnitFloat,
    not_blank,
)
from whisper_streaming.core.options import WHISPER_LANGUAGE_CODES

__all__ = ["ModelConfig"]


class ModelConfig(BaseModel):
    """Speech-recognition engine and decoding options."""

    model_config = STRICT_MODEL_CONFIG

    engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    """ASR engine: faster-whisper (CTranslate2) or openai-whisper (OpenAI's reference, PyTorch)."""

    size: NonEmptyStr = "base"
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

    temperatures: Annotated[tuple[UnitFloat, ...], Field(min_length=1)] = (
        0.0,
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
    )
    """Fallback sampling temperatures, each in [0, 1], strictly ascending."""

    no_speech_threshold: Optional[UnitFloat] = 0.6
    """Probability above which a segment counts as silence (0..1); ``None`` disables."""

    log_prob_threshold: Optional[FiniteFloat] = -1.0
    """Average log-probability below which decoding falls back to the next temperature;
    ``None`` disables."""

    compression_ratio_threshold: Optional[Annotated[FiniteFloat, Field(gt=0)]] = 2.4
    """gzip compression ratio above which decoding is retried (repetition guard); ``None``
    disables."""

    condition_on_previous_text: StrictBool = False
    """Feed the previous utterance's text as a prompt."""

    initial_prompt: Optional[StrictStr] = None
    """Text prompt given to the decoder for every utterance; ``None`` for none."""

    transcribe_timeout_s: Annotated[FiniteFloat, Field(gt=0)] = 60.0
    """Seconds a worker may spend on one utterance before it is killed and restarted.  The
    utterance is then retried once as a minimal decode (one greedy attempt, no fallback),
    which gets a quarter of this."""

    encoder_window_pad_s: Optional[Annotated[FiniteFloat, Field(ge=1.0, le=30.0)]] = 4.0
    """Encode only the utterance plus this much padding (seconds) instead of Whisper's fixed
    30 s window; ``None`` keeps the full window.  Faster, slightly less accurate: see
    ``docs/benchmarks.md``."""

    retry_window_pad_s: Optional[Annotated[FiniteFloat, Field(ge=1.0, le=30.0)]] = 10.0
    """A trimmed-window decode that stopped early or said itself twice is redone on the
    utterance plus this much padding (seconds; ``None``: Whisper's full 30 s window)."""

    max_tokens_per_s: Annotated[FiniteFloat, Field(gt=0, le=100)] = 10.0
    """A decode may generate at most ``max_tokens_base + max_tokens_per_s * duration`` tokens
    (capped at 220): a loop stops early (measured: at most 8.5 text tokens/s in English, 5.6 in Korean)."""

    max_tokens_base: Annotated[StrictInt, Field(ge=1, le=224)] = 16
    """See ``max_tokens_per_s``."""

    decode_budget_s: Annotated[FiniteFloat, Field(gt=0, le=600)] = 2.0
    """Time bound of one utterance: no further decode (fallback temperature, full-window retry)
    starts unless it can end within ``decode_budget_s + decode_budget_per_audio_s * duration``
    seconds; the best text so far is used (``%C`` counts these as time limited)."""

    decode_budget_per_audio_s: Annotated[FiniteFloat, Field(ge=0, le=100)] = 1.0
    """See ``decode_budget_s``."""

    short_utterance_s: Annotated[FiniteFloat, Field(ge=0, le=30)] = 1.2
    """An utterance with at most this much audio whose decode has a no-speech probability above
    ``no_speech_threshold``, or more than 2 + 4 words per second of audio, is dropped (noise,
    breath and codec-noise fragments; ``DecodeLimits``); 0 = never."""

    language_min_detect_s: Annotated[FiniteFloat, Field(gt=0, le=30)] = 2.0
    """With auto-detection, an utterance must have this much audio (s) for its detected
    language to become the stream's, or to replace it."""

    language_min_probability: Annotated[FiniteFloat, Field(gt=0, le=1)] = 0.5
    """The detector's probability needed for a detected language to become the stream's."""

    language_redetect_below: Annotated[FiniteFloat, Field(ge=0, lt=1)] = 0.1
    """The stream's kept language is replaced for an utterance (of at least
    ``language_min_detect_s``) on which its probability falls below this."""

    language_recheck_below_log_prob: Optional[Annotated[FiniteFloat, Field(ge=-20, le=0)]] = -0.8
    """faster-whisper: once a stream's language is kept, the detector (about 30 ms of a base
    model's call on one thread) runs only after a decode in it that has a segment whose average
    log-probability is below this, and the utterance is decoded again when the detector
    replaces the language (``redetect_below``), the new text kept only if the model trusts it
    more (``core.language.prefer_switch``); null = the detector runs before every decode.
    Only once the kept language is confirmed (``language_confirm_utterances``).  Before that,
    a replacing detection whose decode has a segment below this value is compared the same way
    (null: not compared).  openai-whisper always detects first and never compares."""

    language_confirm_utterances: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    """Detections of the kept language in a row (utterances of at least
    ``language_min_detect_s``) before the detector runs only on doubt
    (``language_recheck_below_log_prob``): a wrong first detection is replaced first."""

    speech_screen_min_audio_s: Optional[Annotated[FiniteFloat, Field(ge=0, le=30)]] = 1.5
    """A streaming utterance with at least this much audio (s) is first screened for speech
    by Silero VAD (the model faster-whisper ships): with less than
    ``speech_screen_min_speech_ms`` of 32 ms windows scoring above ``speech_screen_threshold``
    it is not decoded (hold music, DTMF, tones; ``%C``: non-speech screened).  Shorter ones
    (a one-word answer) are always decoded.  null = off.  See ``engines/speech_screen.py``."""

    speech_screen_threshold: Annotated[FiniteFloat, Field(ge=0, lt=1)] = 0.3
    """See ``speech_screen_min_audio_s``: the speech probability a window must exceed."""

    speech_screen_min_speech_ms: Annotated[StrictInt, Field(ge=32, le=10000)] = 160
    """See ``speech_screen_min_audio_s``: how much of the utterance must score as speech (ms,
    rounded up to Silero's 32 ms windows)."""

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str) -> str:
        return not_blank(value)

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not LANGUAGE_CODE_RE.fullmatch(value) or value not in WHISPER_LANGUAGE_CODES):
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
