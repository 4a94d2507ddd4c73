"""TLS and access tokens from the configuration (sections ``tls`` and ``auth``), loaded at startup.

:func:`build_ssl_context` loads ``tls.cert_file``/``tls.key_file`` into one server
:class:`ssl.SSLContext` that the TCP protocol door and the HTTP/WebSocket door share;
:func:`token_set_from_config` gathers ``auth.tokens`` and the lines of ``auth.token_file`` into a
:class:`~whisper_streaming.core.auth.TokenSet`.  Both return None when their section is off, and
raise :class:`~whisper_streaming.errors.ConfigError` (exit code 2) for a file that cannot be
used, never quoting a token.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from whisper_streaming.config.schema import ServerConfig
from whisper_streaming.core.auth import TokenSet, parse_token_lines
from whisper_streaming.errors import ConfigError

__all__ = ["build_ssl_context", "token_set_from_config"]


class _EncryptedKey(Exception):
    """The key file asked for a passphrase (none is configured: the server must start unattended)."""


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def build_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server TLS context of ``tls.cert_file`` + ``tls.key_file`` (TLS 1.2 or newer), or None when TLS is off.

    Raises:
        ConfigError: a file cannot be read, is not PEM, the key does not match the certificate,
            or the key is encrypted (a passphrase would need a prompt at every start).
    """
    tls = config.tls
    if tls.cert_file is None or tls.key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    where = f"tls: cert_file {tls.cert_file!r}, key_file {tls.key_file!r}"
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except _EncryptedKey:
        raise ConfigError(f"{where}: the key is encrypted; give an unencrypted key (e.g. openssl pkey -in KEY -out KEY.plain)") from None
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}: cannot load the certificate and key (not PEM, or the key does not match the certificate): "
                          f"{exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    return context


def token_set_from_config(config: ServerConfig) -> TokenSet | None:
    """The valid access tokens: ``auth.tokens`` and those of ``auth.token_file``; None when both are empty (tokens off).

    Raises:
        ConfigError: the token file cannot be read, has a line that is not one token (its line
            number is named, never its text), or has no token at all (an empty file must not turn
            tokens off).
    """
    auth = config.auth
    if not auth.enabled:
        return None
    tokens = list(auth.tokens)
    if auth.token_file is not None:
        path = auth.token_file
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"auth.token_file: {path!r} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"auth.token_file: cannot read {path!r}: {exc.strerror or exc}") from None
        try:
            from_file = parse_token_lines(text)
        except ValueError as exc:
            raise ConfigError(f"auth.token_file: {path!r}: {exc}") from None
        if not from_file:
            raise ConfigError(f"auth.token_file: {path!r} has no token (one per line; an empty file would turn tokens off)")
        tokens += from_file
    return TokenSet(tuple(dict.fromkeys(tokens)))
