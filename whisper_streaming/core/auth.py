"""Access tokens (config ``auth``): the set of valid tokens and how a peer's token is checked (pure; no I/O).

Tokens are off by default (config ``auth.tokens: []`` and ``auth.token_file: null``): then no
:class:`TokenSet` is built at all and every door behaves as it always did.  When on, each door
asks for a token before a stream and checks it with :meth:`TokenSet.verify`:

* the TCP V1.0 door: ``%o token=...`` (the ``token`` key of
  :data:`~whisper_streaming.core.options.OPTIONS`, never echoed in ``%O``) in the first ``%o``,
  before ``%b``;
* the WebSocket door: ``?token=...`` or the ``token`` field of the first ``start`` message;
* HTTP endpoints other than ``/health``: ``Authorization: Bearer <token>``
  (:func:`bearer_token` reads the header).

A token is compared with :func:`hmac.compare_digest` against *every* valid token (no early
exit), so the time taken tells neither which token nor how much of one matched.  Tokens must
never be logged: :class:`TokenSet`'s ``repr`` shows only how many there are.

Token syntax (:data:`TOKEN_RE`): 1..512 characters from ``A-Z a-z 0-9 - . _ ~ + /``: the
RFC 6750 ``b64token`` characters without ``=``, so one token travels unchanged in ``%o``
(which reserves ``;`` and ``=``), a URL query and an ``Authorization`` header.
``python -c "import secrets; print(secrets.token_urlsafe(32))"`` makes a good one.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

__all__ = ["TokenSet", "TOKEN_RE", "MAX_TOKEN_CHARS", "TOKEN_ENV", "check_token", "parse_token_lines", "bearer_token"]

TOKEN_ENV = "WHISPER_STREAMING_TOKEN"
"""The environment variable the command-line clients read their access token from (keeps it out of the process list)."""

MAX_TOKEN_CHARS = 512
"""Longest token accepted (characters)."""

TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/-]{1,%d}\Z" % MAX_TOKEN_CHARS)
"""What a valid token looks like (see the module docstring)."""


def check_token(token: str) -> str:
    """Return ``token`` if it has the token syntax (:data:`TOKEN_RE`).

    Raises:
        ValueError: not a string or not the token syntax; the message never quotes the token.
    """
    if not isinstance(token, str):
        raise ValueError(f"a token must be a string, not {type(token).__name__}")
    if not TOKEN_RE.match(token):
        raise ValueError(f"a token must be 1-{MAX_TOKEN_CHARS} characters from A-Z a-z 0-9 - . _ ~ + / (value not shown)")
    return token


@dataclass(frozen=True)
class TokenSet:
    """The valid tokens (at least one).  ``repr`` never shows them.

    Raises:
        ValueError: (constructor) no tokens, or a token without the token syntax.
    """

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a TokenSet needs at least one token (no tokens: auth off, use None)")
        for token in self.tokens:
            check_token(token)
        object.__setattr__(self, "_encoded", tuple(t.encode("ascii") for t in self.tokens))

    def __repr__(self) -> str:
        return f"TokenSet(<{len(self.tokens)} token(s)>)"

    __str__ = __repr__

    def verify(self, token: str | None) -> bool:
        """Whether ``token`` is one of the valid tokens, compared in constant time against every one.

        None, a non-string or a token with characters outside the token syntax is False (after
        the same comparisons, so it takes as long).
        """
        candidate = token.encode("utf-8", "replace") if isinstance(token, str) else b""
        ok = False
        for valid in self._encoded:  # type: ignore[attr-defined]
            ok |= hmac.compare_digest(candidate, valid)
        return ok


def parse_token_lines(text: str) -> tuple[str, ...]:
    """The tokens of a token file's text: one per line; blank lines and ``#`` comments (whole
    lines or after the token) are skipped; surrounding whitespace is stripped.

    Raises:
        ValueError: a line that is not one token (names the line number, never its text).
    """
    tokens: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        try:
            check_token(token)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        tokens.append(token)
    return tuple(dict.fromkeys(tokens))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (RFC 6750 section 2.1; the
    scheme is case-insensitive); None when the header is absent or not a Bearer credential."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None

