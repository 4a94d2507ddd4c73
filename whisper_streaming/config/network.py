"""The ``network`` section: the TCP listener."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat, NonEmptyStr

__all__ = ["NetworkConfig"]


class NetworkConfig(BaseModel):
    """TCP listener settings."""

    model_config = STRICT_MODEL_CONFIG

    ip: NonEmptyStr = "127.0.0.1"
    """Address to bind (IPv4 or IPv6 literal, or a host name)."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 5000
    """TCP port to listen on; 0 lets the OS pick a free port."""

    socket_timeout: Annotated[FiniteFloat, Field(gt=0)] = 60.0
    """Seconds without any packet but ``%c`` from a client before it gets ``%E TIMEOUT`` and is closed."""

    handshake_timeout_s: Annotated[FiniteFloat, Field(gt=0)] = 10.0
    """Seconds a new connection has to send the magic string."""

    identify_timeout_s: Annotated[FiniteFloat, Field(gt=0)] = 10.0
    """Seconds from the handshake to ``%u`` (from connecting to the UUID frame for AudioSocket);
    later, ``%E TIMEOUT`` and close.  No session slot is taken before it."""

    status_requests_per_s: Annotated[FiniteFloat, Field(gt=0)] = 10.0
    """``%c`` answered per second per connection (after ``status_burst``); a connection sending
    faster waits for its answers (it slows only itself)."""

    status_burst: Annotated[StrictInt, Field(ge=1, le=1000)] = 20
    """``%c`` a connection may have answered at once before ``status_requests_per_s`` applies."""

    length_encoding: Literal["hex", "decimal"] = "hex"
    """How the 4 ASCII digits of every packet's length are read and written: ``hex`` (0000-FFFF,
    the protocol's text) or ``decimal`` (0000-9999, as the original description's examples show:
    ``%s0960`` for 960 bytes), for clients built from those examples."""

    max_send_buffer_bytes: Annotated[StrictInt, Field(ge=65536)] = 1048576
    """Bytes of unsent output allowed per connection before the client is considered stuck."""

    @field_validator("ip")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        if value != value.strip() or not value:
            raise ValueError(f"must not contain leading/trailing whitespace, got {value!r}")
        return value
