"""The ``audiosocket`` section: the Asterisk AudioSocket listener."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, Field, StrictBool, StrictInt

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat

__all__ = ["AudioSocketConfig"]


class AudioSocketConfig(BaseModel):
    """The Asterisk AudioSocket listener (on ``network.ip``)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = False
    """Listen for AudioSocket calls."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 5001
    """TCP port for AudioSocket; 0 lets the OS pick a free port."""

    max_call_s: Optional[Annotated[FiniteFloat, Field(gt=0)]] = 14400.0
    """Longest call in seconds of audio (default 4 h; ``server.max_stream_s`` applies too if shorter):
    past it the call's stream is finished (its results delivered) and the call ends with
    ``STREAM_TOO_LONG`` (logged). ``None``: no limit."""
