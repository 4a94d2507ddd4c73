"""The ``audio`` section: framing of the incoming PCM stream (16 kHz, s16le, mono)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, StrictInt, ValidationInfo, field_validator

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.config.fields import STRICT_MODEL_CONFIG

__all__ = ["AudioConfig", "PROTOCOL_SAMPLE_RATE_HZ"]

#: The wire protocol carries 16 kHz, 16-bit, mono PCM; nothing else is supported.
PROTOCOL_SAMPLE_RATE_HZ = DEFAULT_SAMPLE_RATE_HZ


class AudioConfig(BaseModel):
    """Audio framing of the incoming PCM stream (16 kHz, s16le, mono)."""

    model_config = STRICT_MODEL_CONFIG

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
