"""The ``http`` section: the HTTP server (WebSocket streaming at ``/v1/stream``, the page, ``/health``, ``/metrics``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG

__all__ = ["HttpConfig"]


class HttpConfig(BaseModel):
    """The HTTP server, on ``network.ip`` (in the same process and event loop as the TCP listener)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = True
    """Serve HTTP: the WebSocket door ``/v1/stream``, the page ``/``, ``/health`` and ``/metrics``."""

    port: Annotated[StrictInt, Field(ge=0, le=65535)] = 8080
    """TCP port of the HTTP server; 0 lets the OS pick a free port (logged as ``http listening on H:P``)."""

    allowed_origins: tuple[StrictStr, ...] = ()
    """Browser ``Origin`` values (``scheme://host[:port]``, e.g. ``https://app.example.com``) whose
    pages may open the WebSocket, besides pages served by this server itself (an ``Origin`` whose
    ``host:port`` is the request's ``Host``).  ``"*"`` allows every origin.  A request without an
    ``Origin`` header (not a browser) is always allowed; any other origin is refused (close 1008)."""

    max_message_bytes: Annotated[StrictInt, Field(ge=4096, le=64 * 1024 * 1024)] = 1048576
    """Largest WebSocket message accepted (a JSON control message or one binary audio frame);
    a larger one ends that session with close code 1009."""

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for origin in value:
            if origin == "*":
                out.append(origin)
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"an origin is scheme://host[:port] (http or https) or *, got {origin!r}")
            out.append(f"{parts.scheme}://{parts.netloc}".lower())
        return tuple(out)
