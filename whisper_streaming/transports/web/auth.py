"""Access tokens on the web door (config ``auth``): ``Authorization: Bearer`` for HTTP endpoints, and
no token in uvicorn's log lines.

* :func:`bearer_guard` is a FastAPI dependency for every HTTP endpoint but ``/health`` and the
  page's own files (``/``, ``/static/*``: public; the page passes the token of its URL on to the
  WebSocket): without ``Authorization: Bearer <valid token>`` the answer is 401
  (``{"detail": "UNAUTHORIZED"}``, ``WWW-Authenticate: Bearer``), counted with the errors as
  ``UNAUTHORIZED``.  Tokens off (None): it lets everything through.
* :class:`BearerBeforeBody` is an ASGI middleware that gives the same 401 to an upload route
  before its body is read: FastAPI parses a multipart form before it runs the route's
  dependencies, so without it a client with no token could still make the server read and
  spool a 200 MB upload.
* The WebSocket ``/v1/stream`` needs nothing here: its ``?token=`` or ``start`` ``token`` goes to
  the session as the ``token`` option, which the session checks
  (:mod:`whisper_streaming.pipeline.session`; ``error UNAUTHORIZED``, close 1008).
* :class:`RedactTokens` is a :class:`logging.Filter` for the ``uvicorn`` loggers: uvicorn logs a
  WebSocket's path with its query string (``"WebSocket /v1/stream?token=..." [accepted]``), the
  WebSocket library (on uvicorn's logger) its frames at DEBUG (a ``start`` with its ``token``),
  and a token must never reach a log.  :func:`install_log_redaction` adds it once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request

from whisper_streaming.core.auth import TokenSet, bearer_token
from whisper_streaming.errors import ErrorReason

__all__ = ["bearer_guard", "BearerBeforeBody", "RedactTokens", "install_log_redaction", "UVICORN_LOGGERS"]

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


class BearerBeforeBody:
    """ASGI middleware: a request to one of ``paths`` (method ``POST``) without ``Authorization:
    Bearer <one of tokens>`` gets :func:`bearer_guard`'s 401 before a byte of its body is read
    (the route's own guard still checks every request).  ``tokens`` None: everything passes.
    ``on_refused``: called with ``UNAUTHORIZED`` for each refusal."""

    def __init__(self, app: Callable[..., Awaitable[None]], tokens: TokenSet | None, *, paths: tuple[str, ...],
                 on_refused: Callable[[ErrorReason], None] | None = None) -> None:
        self.app = app
        self.tokens = tokens
        self.paths = paths
        self.on_refused = on_refused

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if (self.tokens is None or scope["type"] != "http" or scope.get("method") != "POST"
                or not scope.get("path", "").startswith(self.paths)):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if self.tokens.verify(bearer_token(header.decode("latin-1") if header is not None else None)):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        log.info("POST %s from %s: no valid bearer token (401 before the body)", scope.get("path"), client[0] if client else "?")
        if self.on_refused is not None:
            self.on_refused(ErrorReason.UNAUTHORIZED)
        body = json.dumps({"detail": ErrorReason.UNAUTHORIZED.value}).encode()
        await send({"type": "http.response.start", "status": ErrorReason.UNAUTHORIZED.http_status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="whisper_streaming"'), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


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
