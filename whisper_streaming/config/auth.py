"""The ``auth`` section: access tokens for the TCP protocol port and the HTTP/WebSocket port.

Off when both ``tokens`` and ``token_file`` are empty (the default): then nothing changes.  On:
a TCP client sends ``%o token=...`` before ``%b``; a WebSocket client ``?token=...`` or the
``token`` of its first ``start`` message; HTTP endpoints other than ``/health`` want
``Authorization: Bearer <token>`` (see :mod:`whisper_streaming.core.auth`).  The AudioSocket
port is never asked for a token (Asterisk cannot send one).

The token file has one token per line; blank lines and ``#`` comments are skipped.  It must
exist here; it is read once when the server starts
(:func:`whisper_streaming.app.security.token_set_from_config`), and a file without a token is
an error there (an empty file must not turn tokens off).  Error messages never show a token.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field, StrictStr, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, NonEmptyStr, existing_file
from whisper_streaming.core.auth import check_token

__all__ = ["AuthConfig"]


class AuthConfig(BaseModel):
    """Access tokens (both empty: off)."""

    model_config = STRICT_MODEL_CONFIG

    tokens: tuple[StrictStr, ...] = Field(default=(), repr=False)
    """Valid tokens, each 1-512 characters from ``A-Z a-z 0-9 - . _ ~ + /``."""

    token_file: Optional[NonEmptyStr] = None
    """A file of further valid tokens, one per line (``#`` comments); ``None``: none."""

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, token in enumerate(value):
            try:
                check_token(token)
            except ValueError as exc:
                raise ValueError(f"token {i + 1}: {exc}") from None
        return value

    @field_validator("token_file")
    @classmethod
    def _check_file(cls, value: Optional[str]) -> Optional[str]:
        return existing_file(value)

    @property
    def enabled(self) -> bool:
        """Whether tokens are required (``tokens`` or ``token_file`` set)."""
        return bool(self.tokens) or self.token_file is not None
