"""The ``tls`` section: TLS on the TCP protocol port and the HTTP/WebSocket port.

Both files set: both ports speak TLS (the page then runs over HTTPS/WSS, which browsers require
for the microphone anywhere but ``localhost``); neither (the default): plain TCP and HTTP.  The
AudioSocket port always stays plain (Asterisk's AudioSocket does not speak TLS).  The files must
exist here; they are loaded (and a wrong pair, a bad PEM or an encrypted key reported as a
:class:`~whisper_streaming.errors.ConfigError`) when the server starts
(:func:`whisper_streaming.app.security.build_ssl_context`).  Relative paths are relative to the
server's working directory.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, field_validator, model_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, NonEmptyStr, existing_file

__all__ = ["TlsConfig"]


class TlsConfig(BaseModel):
    """TLS for the TCP protocol port and the HTTP/WebSocket port (both files, or neither)."""

    model_config = STRICT_MODEL_CONFIG

    cert_file: Optional[NonEmptyStr] = None
    """PEM certificate chain: the server's certificate first, then any intermediates (``None``: no TLS)."""

    key_file: Optional[NonEmptyStr] = None
    """PEM private key of that certificate, unencrypted (``None``: no TLS)."""

    @field_validator("cert_file", "key_file")
    @classmethod
    def _check_file(cls, value: Optional[str]) -> Optional[str]:
        return existing_file(value)

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file (TLS on) or neither (TLS off)")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None
