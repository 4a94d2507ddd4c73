"""The web door: one HTTP server (FastAPI on uvicorn) in the server's own event loop.

``/v1/stream``: WebSocket streaming (:mod:`~whisper_streaming.transports.web.stream`, protocol in
:mod:`whisper_streaming.wire.ws_session`); ``/``: the live-caption page and ``/static/*`` its
files (package data in ``static/``); ``/health`` and ``/metrics``
(:mod:`~whisper_streaming.transports.web.app`).  :class:`WebTransport` is the door the runtime
starts and stops (:mod:`~whisper_streaming.transports.web.door`).
"""

from __future__ import annotations

from whisper_streaming.transports.web.door import WebOptions, WebTransport

__all__ = ["WebOptions", "WebTransport"]
