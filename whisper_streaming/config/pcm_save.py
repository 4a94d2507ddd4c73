"""The ``pcm_save`` section: saving every received stream as a WAV file."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, Field, StrictBool, StrictInt, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, NonEmptyStr, not_blank

__all__ = ["PcmSaveConfig"]


class PcmSaveConfig(BaseModel):
    """Saving every received stream as a WAV file (for debugging / data collection)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = False
    """Whether to save received PCM."""

    dir: NonEmptyStr = "pcm"
    """Directory for the WAV files (created if missing; relative to the working directory)."""

    max_file_bytes: Annotated[StrictInt, Field(ge=1 << 20, le=(4 << 30) - (1 << 20))] = 1 << 30
    """A stream's WAV file is continued in ``..._part2.wav`` ... past this size (a WAV header
    cannot state 4 GiB or more)."""

    max_total_bytes: Optional[Annotated[StrictInt, Field(ge=1 << 20)]] = 20 << 30
    """Bytes this server run may record in all; past it nothing more is saved (logged). ``None``: no cap."""

    max_files_per_session: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 1000
    """WAV files one session may create; its further streams are not recorded (logged)."""

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return not_blank(value)
