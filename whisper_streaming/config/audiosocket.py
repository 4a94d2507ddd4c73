"""The ``audiosocket`` section: the Asterisk AudioSocket listener."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG

__all__ = ["AudioSocketConfig"]


class AudioSocketConfig(BaseModel):
    """The Asterisk AudioSocket listener (on ``network.ip``)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = False
    """Listen for AudioSocket calls."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 5001
    """TCP port for AudioSocket; 0 lets the OS pick a free port."""
