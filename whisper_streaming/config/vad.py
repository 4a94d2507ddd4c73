"""The ``vad`` section: voice-activity detection and utterance segmentation."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, Field, StrictInt, ValidationInfo, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat

__all__ = ["VadConfig"]


class VadConfig(BaseModel):
    """Voice-activity detection and utterance segmentation."""

    model_config = STRICT_MODEL_CONFIG

    mode: Annotated[StrictInt, Field(ge=0, le=3)] = 1
    """WebRTC VAD aggressiveness: 0 (least) .. 3 (most aggressive)."""

    silence_frames: Annotated[StrictInt, Field(ge=1, le=1000)] = 16
    """Consecutive unvoiced frames that end an utterance."""

    max_speech_s: Annotated[FiniteFloat, Field(ge=1.0, le=30.0)] = 10.0
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

    sentence_end_silence_frames: Optional[Annotated[StrictInt, Field(ge=1, le=1000)]] = None
    """Semantic endpointing: once the speculative text of an utterance ends a sentence (``. ? !``),
    this many unvoiced frames end it instead of ``silence_frames`` (never fewer than the frames of
    ``trailing_ms``); ``None`` = off (``VadOptions``)."""

    speculation_backoff_ms: Annotated[StrictInt, Field(ge=0, le=10000)] = 0
    """Extra silence (ms) before the next speculative offer of an utterance, per offer of it that
    resumed speech withdrew; 0 = off (``VadOptions.speculation_backoff_ms``)."""

    silence_floor_dbfs: Optional[Annotated[FiniteFloat, Field(ge=-120.0, le=0.0)]] = None
    """Frames quieter than this RMS level (dBFS) are never speech, whatever WebRTC VAD says;
    ``None`` = off (the default: quiet lines carry speech at -50 to -70 dBFS; the digital
    silence rule below handles muted lines)."""

    digital_silence_peak: Annotated[StrictInt, Field(ge=0, le=1000)] = 4
    """A frame whose samples span at most this many LSB (max - min; zeros, a constant, a few
    LSB of dither) is near digital silence: never amplified for the VAD, and a run of
    ``digital_silence_frames`` of them is never speech."""

    digital_silence_frames: Annotated[StrictInt, Field(ge=1, le=1000)] = 8
    """From this frame of a run of near-silent frames on, frames are unvoiced (``VadOptions``)."""

    agc_target_dbfs: Optional[Annotated[FiniteFloat, Field(ge=-60.0, le=0.0)]] = -20.0
    """Level normalisation of the VAD's copy of the audio: the loudest frame of the last
    ``agc_window_ms`` is brought to this level (dBFS); ``None`` = off.  Makes endpointing the
    same from -10 to -70 dBFS (``VadOptions``)."""

    agc_max_gain_db: Annotated[FiniteFloat, Field(ge=0.0, le=60.0)] = 45.0
    """Largest gain of that normalisation (dB)."""

    agc_window_ms: Annotated[StrictInt, Field(ge=30, le=600000)] = 10000
    """How long the loudest frame sets the gain (ms)."""

    min_dynamic_range_db: Optional[Annotated[FiniteFloat, Field(ge=0.0, le=60.0)]] = 2.0
    """An utterance whose frame levels span less than this (90th minus 10th percentile, dB) is
    steady noise or a tone and is dropped without transcription; ``None`` = off
    (``VadOptions.min_dynamic_range_db``: speech spans 10-40 dB, white noise under 1 dB)."""

    @field_validator("start_voiced_frames")
    @classmethod
    def _check_start_voiced(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("start_window_frames")
        if window is not None and value > window:
            raise ValueError(f"must be <= start_window_frames ({window}), got {value}")
        return value
