"""The FastAPI application of the web door: its routes, each a thin shell over the runtime.

======================  =====================================================================
route                   what
======================  =====================================================================
``GET /``               the live-caption page (``static/index.html``; a placeholder without it)
``GET /static/*``       the page's files (package data, served offline: no CDN)
``GET /health``         JSON: ``status`` (``ok``, ``starting``: no engine ready, ``stopping``,
                        ``unavailable``: Redis backend without Redis or live worker host),
                        ``engines_ready``, ``engines``, ``sessions``, ``sessions_by_transport``,
                        ``max_sessions``, ``queue_depth``, and with the Redis backend ``workers``
                        (``broker``, ``connected``, ``live``, ``slots``, ``busy``, ``jobs_in_flight``,
                        ``redelivered``, ``duplicates_dropped``, ``resubmitted``); HTTP 200, or 503
                        while stopping
``GET /metrics``        Prometheus text (:mod:`whisper_streaming.runtime.metrics`); with tokens on
                        (config ``auth``) only with ``Authorization: Bearer <token>``, else 401
                        (:mod:`~whisper_streaming.transports.web.auth`)
``WS /v1/stream``       WebSocket streaming (:mod:`whisper_streaming.transports.web.stream`)
``/v1/audio/...``,      the file API when a job store is given (config ``batch``;
``/v1/jobs``            :mod:`whisper_streaming.transports.web.batch_api`), tokens as ``/metrics``
``GET /docs``,          the OpenAPI document and its Swagger UI/ReDoc pages, served from package
``/redoc``,             assets (no CDN: :mod:`whisper_streaming.transports.web.docs`)
``/openapi.json``
======================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from whisper_streaming.backends.base import EngineState
from whisper_streaming.runtime.metrics import CONTENT_TYPE, render_metrics
from whisper_streaming.runtime.runtime import Runtime
from whisper_streaming.batch.jobs import JobStore
from whisper_streaming.transports.web.auth import bearer_guard
from whisper_streaming.transports.web.batch_api import BatchApiOptions, batch_router, validation_error
from whisper_streaming.transports.web.docs import install_docs

__all__ = ["build_app", "health", "STATIC_DIR", "STREAM_PATH", "PLACEHOLDER_PAGE"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The page's files (package data)."""
STREAM_PATH = "/v1/stream"
"""The WebSocket streaming endpoint."""
PLACEHOLDER_PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>whisper_streaming</title></head>"
                    "<body><h1>whisper_streaming</h1><p>The live-caption page is not installed. "
                    "WebSocket streaming is at <code>/v1/stream</code>.</p></body></html>")
"""``/`` when ``static/index.html`` is missing."""

_READY = frozenset({EngineState.IDLE, EngineState.BUSY, EngineState.RUNNING})


def health(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """The ``/health`` status code and body (see the module docstring)."""
    status = runtime.backend.status()
    ready = sum(state in _READY for state in status.engines)
    remote = status.remote
    if runtime.stopping:
        state = "stopping"
    elif remote is not None and not (remote.connected and remote.workers_live):
        state = "unavailable"  # Redis down or no worker host: new sessions are refused
    elif status.engines and not ready:
        state = "starting"
    else:
        state = "ok"
    body = {
        "status": state,
        "engines_ready": ready,
        "engines": [s.value for s in status.engines],
        "sessions": runtime.session_count,
        "sessions_by_transport": runtime.sessions_by_transport(),
        "max_sessions": runtime.options.max_sessions,
        "queue_depth": runtime.backend.capacity().queue_depth,
    }
    if remote is not None:
        body["workers"] = {"broker": remote.broker, "connected": remote.connected, "live": remote.workers_live, "slots": remote.slots_live,
                           "busy": remote.slots_busy, "jobs_in_flight": remote.jobs_in_flight, "redelivered": remote.jobs_redelivered,
                           "duplicates_dropped": remote.duplicates_dropped, "resubmitted": remote.jobs_resubmitted}
    return (503 if runtime.stopping else 200), body


def build_app(runtime: Runtime, registry: CollectorRegistry, serve_stream: Callable[[WebSocket], Awaitable[None]],
              static_dir: Path = STATIC_DIR, jobs: JobStore | None = None, batch_options: BatchApiOptions | None = None) -> FastAPI:
    """The application: ``serve_stream`` runs one ``/v1/stream`` WebSocket; ``registry`` is scraped for
    ``/metrics``; ``jobs``: the file API's job store (None: no file API)."""
    app = FastAPI(title="whisper_streaming", docs_url=None, redoc_url=None, openapi_url=None,
                  description="Streaming and batch speech-to-text: WebSocket streaming at /v1/stream, "
                              "OpenAI-compatible file transcription, batch jobs with diarization and acoustic features.")
    index = static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return HTMLResponse(PLACEHOLDER_PAGE)

    @app.get("/health")
    async def get_health() -> JSONResponse:
        code, body = health(runtime)
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    guard = Depends(bearer_guard(runtime.options.session.tokens, runtime.record_refusal))  # tokens on: Authorization: Bearer

    @app.get("/metrics", dependencies=[guard])
    async def get_metrics() -> Response:
        return Response(render_metrics(registry), media_type=CONTENT_TYPE)

    @app.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(websocket)

    if jobs is not None:
        app.include_router(batch_router(jobs, batch_options or BatchApiOptions(), guard))
        app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]  # OpenAI's 400 shape
    install_docs(app)

    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
    return app
