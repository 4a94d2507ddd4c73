"""The ``pcm_save`` section: saving every received stream as a WAV file."""

from __future__ import annotations

from pydantic import BaseModel, StrictBool, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, NonEmptyStr, not_blank

__all__ = ["PcmSaveConfig"]


class PcmSaveConfig(BaseModel):
    """Saving every received stream as a WAV file (for debugging / data collection)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = False
    """Whether to save received PCM."""

    dir: NonEmptyStr = "pcm"
    """Directory for the WAV files (created if missing; relative to the working directory)."""

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return not_blank(value)
