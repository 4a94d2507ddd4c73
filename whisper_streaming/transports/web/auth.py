"""Access tokens on the web door (config ``auth``): ``Authorization: Bearer`` for HTTP endpoints, and
no token in uvicorn's log lines.

* :func:`bearer_guard` is a FastAPI dependency for every HTTP endpoint but ``/health`` and the
  page's own files (``/``, ``/static/*``: public; the page passes the token of its URL on to the
  WebSocket): without ``Authorization: Bearer <valid token>`` the answer is 401
  (``{"detail": "UNAUTHORIZED"}``, ``WWW-Authenticate: Bearer``), counted with the errors as
  ``UNAUTHORIZED``.  Tokens off (None): it lets everything through.
* The WebSocket ``/v1/stream`` needs nothing here: its ``?token=`` or ``start`` ``token`` goes to
  the session as the ``token`` option, which the session checks
  (:mod:`whisper_streaming.pipeline.session`; ``error UNAUTHORIZED``, close 1008).
* :class:`RedactTokens` is a :class:`logging.Filter` for the ``uvicorn`` loggers: uvicorn logs a
  WebSocket's path with its query string (``"WebSocket /v1/stream?token=..." [accepted]``), the
  WebSocket library (on uvicorn's logger) its frames at DEBUG (a ``start`` with its ``token``),
  and a token must never reach a log.  :func:`install_log_redaction` adds it once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from whisper_streaming.core.auth import TokenSet, bearer_token
from whisper_streaming.errors import ErrorReason

__all__ = ["bearer_guard", "RedactTokens", "install_log_redaction", "UVICORN_LOGGERS"]

log = logging.getLogger(__name__)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
"""The loggers uvicorn writes request lines to."""

_TOKEN_IN_QUERY = re.compile(r"(?i)((?:^|[?&;\s])token=)[^&\s\"']*")
_TOKEN_IN_JSON = re.compile(r"(?i)(\"token\"\s*:\s*\")[^\"]*")


def bearer_guard(tokens: TokenSet | None, on_refused: Callable[[ErrorReason], None] | None = None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that wants ``Authorization: Bearer <one of tokens>`` (None: tokens off, nothing wanted).

    ``on_refused``: called with ``UNAUTHORIZED`` for each refusal (the runtime's error counter).

    Raises (from the dependency):
        HTTPException: 401 without a valid token.
    """

    async def guard(request: Request) -> None:
        if tokens is None:
            return
        if tokens.verify(bearer_token(request.headers.get("authorization"))):
            return
        client = request.client
        log.info("%s %s from %s: no valid bearer token (401)", request.method, request.url.path, client.host if client else "?")
        if on_refused is not None:
            on_refused(ErrorReason.UNAUTHORIZED)
        raise HTTPException(status_code=ErrorReason.UNAUTHORIZED.http_status, detail=ErrorReason.UNAUTHORIZED.value,
                            headers={"WWW-Authenticate": 'Bearer realm="whisper_streaming"'})

    return guard


class RedactTokens(logging.Filter):
    """Replaces the value of every ``token=`` query parameter and every JSON ``"token": "..."``
    (the WebSocket library logs frames at DEBUG) in a record's message with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is left to the handler
            return True
        if "token" not in message.lower():
            return True
        record.msg = _TOKEN_IN_JSON.sub(r"\1***", _TOKEN_IN_QUERY.sub(r"\1***", message))
        record.args = None
        return True


def install_log_redaction() -> None:
    """Add :class:`RedactTokens` to uvicorn's loggers (idempotent)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
