"""The file API of the web door: OpenAI-compatible transcription and asynchronous jobs.

==================================  ==============================================================
route                               what
==================================  ==============================================================
``POST /v1/audio/transcriptions``   multipart ``file`` and OpenAI's fields (``model``, ``language``,
                                    ``prompt``, ``temperature``, ``response_format`` = ``json`` |
                                    ``text`` | ``srt`` | ``vtt`` | ``verbose_json``,
                                    ``timestamp_granularities[]`` = ``segment`` | ``word``) plus
                                    ours (``diarize``, ``num_speakers``, ``features``); answers when
                                    done, in the format asked (OpenAI's API reference, "Create
                                    transcription")
``POST /v1/jobs``                   the same fields plus ``callback_url``: ``202 {"id", "status"}``
``GET /v1/jobs/{id}``               ``{"id", "status", "progress", "stage", "result"?, "error"?}``
``DELETE /v1/jobs/{id}``            cancels; the job's view
==================================  ==============================================================

A client that disconnects while ``POST /v1/audio/transcriptions`` waits for its result has its job
cancelled (its workers go back to other work).  With tokens on, an upload without a valid bearer
token is refused before its body is read (:class:`~whisper_streaming.transports.web.auth.BearerBeforeBody`
in the door).  A ``callback_url`` must point where ``batch.callback_targets`` allows
(:func:`callback_refusal`).

Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 a bad field,
413 an upload over ``batch.max_upload_bytes`` (refused from ``Content-Length`` before the body
is read, or as soon as a chunked body passes it) or audio over ``batch.max_duration_s``, 415/422
a file that is not usable audio (no audio stream, corrupt, unsupported codec, empty: the
reason's own status), 429 when ``batch.max_queued_jobs`` are active, 404 an unknown or expired
job.  The ``model`` field is accepted and ignored: the server has one model (its name is echoed
nowhere, as speaches does for an unknown model it cannot load).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from whisper_streaming.batch.formats import RESPONSE_FORMATS, render, to_verbose_json
from whisper_streaming.batch.jobs import JobQueueFull, JobState, JobStore, JobView
from whisper_streaming.batch.request import MAX_SPEAKERS, BatchRequest
from whisper_streaming.errors import MediaError, UsageError
from whisper_streaming.media.decode import decode_media

__all__ = ["BatchApiOptions", "callback_refusal", "batch_router", "job_json", "BodyLimit", "BATCH_PATHS", "validation_error"]

log = logging.getLogger(__name__)

MAX_CONCURRENT_DECODES = 2
"""Uploads decoded at once (each holds its whole file's audio while it decodes); the others wait."""

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
BATCH_PATHS = (TRANSCRIPTIONS_PATH, "/v1/jobs")
"""Upload endpoints whose request bodies :class:`BodyLimit` bounds."""

T = TypeVar("T")


@dataclass(frozen=True)
class BatchApiOptions:
    """``max_duration_s``: longest decoded audio; ``callbacks``: accept ``callback_url``;
    ``callback_targets``: where it may point (``public``, ``private`` or ``any``: see
    :func:`callback_refusal`)."""

    max_duration_s: float = 4 * 3600.0
    callbacks: bool = True
    callback_targets: str = "private"


async def callback_refusal(url: str, targets: str) -> str | None:
    """Why ``url`` may not receive a callback, or None.

    Every address its host resolves to must be allowed by ``targets``: ``any`` allows all;
    otherwise loopback, link-local (169.254.0.0/16 and fe80::/10: cloud metadata services),
    unspecified, multicast and reserved addresses are refused (server-side request forgery,
    OWASP's SSRF prevention cheat sheet), and ``public`` refuses private networks too (Python's
    :attr:`ipaddress.IPv4Address.is_global`).  An IPv4-mapped IPv6 address counts as its IPv4
    address.  Checked once, at submission: a name that later resolves elsewhere (DNS rebinding)
    is not caught; use ``public`` or turn callbacks off where that matters.
    """
    if targets == "any":
        return None
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"its host cannot be resolved ({exc})"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast or address.is_reserved:
            return f"its host resolves to {address}, a loopback, link-local or reserved address (batch.callback_targets: any to allow)"
        if targets == "public" and not address.is_global:
            return f"its host resolves to {address}, not a public address (batch.callback_targets: {targets})"
    return None


def _error(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def job_json(view: JobView) -> dict[str, Any]:
    """The JSON of a job (``GET /v1/jobs/{id}``, and the body of its callback)."""
    body: dict[str, Any] = {"id": view.id, "status": view.state.value, "progress": round(view.progress, 1), "stage": view.stage,
                            "filename": view.filename, "duration": round(view.duration_s, 3), "created_at": round(view.created_at, 3)}
    if view.finished_at is not None:
        body["finished_at"] = round(view.finished_at, 3)
    if view.result is not None:
        body["result"] = to_verbose_json(view.result, words=view.request.word_timestamps)
    if view.error is not None:
        body["error"] = {"code": view.error.code, "message": view.error.message}
    return body


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """An exception handler for the app: a field FastAPI's own validation refuses (``temperature``
    out of range, ``num_speakers`` not a number, no ``file``) is 400 in OpenAI's error shape on the
    file API's paths (:data:`BATCH_PATHS`), FastAPI's 422 elsewhere."""
    if not str(request.scope.get("path", "")).startswith(BATCH_PATHS):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = first.get("loc", ())
    param = str(loc[-1]) if len(loc) > 1 else None
    message = first.get("msg", "invalid request")
    return _error(400, f"{param}: {message}" if param else str(message), param=param)


class BodyLimit:
    """ASGI middleware: a request body to one of ``paths`` larger than ``max_bytes`` gets 413
    before it is buffered (``Content-Length``), or as soon as a chunked body passes the limit."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, max_bytes: int, paths: tuple[str, ...] = BATCH_PATHS) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").startswith(self.paths):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        started = exceeded = refused = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started, refused
            if exceeded and not started:
                # The app answers the failed body read itself (FastAPI's form parsing turns any
                # error into 400, Starlette's error middleware into 500): the answer is 413.
                if not refused:
                    refused = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not exceeded:
                raise
            if not started and not refused:
                await self._refuse(send)

    async def _refuse(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        body = json.dumps({"error": {"message": f"the upload is larger than {self.max_bytes} bytes", "type": "invalid_request_error",
                                     "param": "file", "code": "UPLOAD_TOO_LARGE"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


Fmt = Annotated[str, Form(description="json, text, srt, verbose_json or vtt")]
"""The ``response_format`` form field (module level: FastAPI resolves string annotations here)."""


def _request_from(language: str | None, prompt: str | None, temperature: float | None, granularities: list[str],
                  response_format: str, diarize: bool, num_speakers: int | None, features: bool) -> BatchRequest | JSONResponse:
    if response_format not in RESPONSE_FORMATS:
        return _error(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}", param="response_format")
    bad = [g for g in granularities if g not in ("segment", "word")]
    if bad:
        return _error(400, "timestamp_granularities[] must be segment or word", param="timestamp_granularities[]")
    words = "word" in granularities
    if words and response_format != "verbose_json":
        return _error(400, "timestamp_granularities[] needs response_format verbose_json (as OpenAI's API)", param="timestamp_granularities[]")
    if language is not None and language.strip():
        language = language.strip().lower()
        if not language.isascii() or not language.isalpha() or not 2 <= len(language) <= 3:
            return _error(400, "language must be an ISO 639-1 code such as en", param="language")
    else:
        language = None
    if num_speakers is not None and not 1 <= num_speakers <= MAX_SPEAKERS:
        return _error(400, f"num_speakers must be between 1 and {MAX_SPEAKERS}", param="num_speakers")
    try:
        return BatchRequest(language=language, prompt=prompt or None, temperature=temperature, word_timestamps=words,
                            diarize=diarize or num_speakers is not None, num_speakers=num_speakers, features=features)
    except UsageError as exc:
        return _error(400, str(exc))


async def _unless_disconnected(request: Request, wait: Awaitable[T]) -> T | None:
    """``await wait``, or None as soon as the client disconnects (its body already read, the next
    ASGI message is ``http.disconnect``; Starlette does not cancel a route whose client left)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waiting = asyncio.ensure_future(wait)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({waiting, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not waiting.done():
            waiting.cancel()
    return waiting.result() if waiting.done() and not waiting.cancelled() else None


def batch_router(store: JobStore, options: BatchApiOptions, guard: Any = None) -> APIRouter:
    """The routes of the module docstring; ``guard``: a FastAPI dependency (tokens) for every route."""
    router = APIRouter(dependencies=[guard] if guard is not None else [])

    decoding = asyncio.Semaphore(MAX_CONCURRENT_DECODES)

    async def decoded(file: UploadFile) -> Any:
        if store.active >= store.max_queued:  # 429 before the decode: a full store must not cost a decode's CPU and memory
            return _error(429, f"{store.active} jobs are queued or running (the limit is {store.max_queued}); retry later",
                          kind="rate_limit_error", code="SERVER_TOO_BUSY")
        data = await file.read()
        try:
            async with decoding:  # each decode holds a whole file's audio: a few at a time
                return await asyncio.to_thread(decode_media, data, max_duration_s=options.max_duration_s)
        except MediaError as exc:
            return _error(exc.reason.http_status, exc.detail, param="file", code=exc.reason.value)

    def submit(media: Any, request: BatchRequest, filename: str, callback_url: str | None) -> JobView | JSONResponse:
        try:
            return store.submit(media.samples, request, filename=filename, callback_url=callback_url)
        except JobQueueFull as exc:
            return _error(429, str(exc), kind="rate_limit_error", code="SERVER_TOO_BUSY")
        except UsageError as exc:
            return _error(400 if callback_url else 503, str(exc), param="callback_url" if callback_url else None)

    @router.post(TRANSCRIPTIONS_PATH, summary="Transcribe a file (OpenAI-compatible)")
    async def transcriptions(
        http: Request,
        file: Annotated[UploadFile, File(description="audio or video: WAV, FLAC, MP3, M4A/AAC, OGG/Opus, MP4, WebM ...")],
        model: Annotated[str | None, Form(description="accepted and ignored: the server has one model")] = None,
        language: Annotated[str | None, Form(description="ISO 639-1 code; detected when absent")] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
        response_format: Fmt = "json",
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        diarize: Annotated[bool, Form()] = False,
        num_speakers: Annotated[int | None, Form()] = None,
        features: Annotated[bool, Form()] = False,
    ) -> Response:
        request = _request_from(language, prompt, temperature, timestamp_granularities or [], response_format, diarize, num_speakers, features)
        if isinstance(request, JSONResponse):
            return request
        media = await decoded(file)
        if isinstance(media, JSONResponse):
            return media
        view = submit(media, request, file.filename or "", None)
        if isinstance(view, JSONResponse):
            return view
        try:
            final = await _unless_disconnected(http, store.wait(view.id))
        except asyncio.CancelledError:  # the task was cancelled (shutdown): its job goes too
            store.cancel(view.id)
            raise
        if final is None:  # the client went away: nobody wants the result, so its workers are freed
            store.cancel(view.id)
            log.info("POST %s: the client disconnected; job %s cancelled", TRANSCRIPTIONS_PATH, view.id)
            return Response(status_code=499)
        if final.state is not JobState.COMPLETED or final.result is None:
            message = final.error.message if final.error else final.state.value
            return _error(500 if final.state is JobState.FAILED else 503, message, kind="server_error",
                          code=final.error.code if final.error else final.state.value.upper())
        body, media_type = render(final.result, response_format, words=request.word_timestamps)
        if isinstance(body, dict):
            return JSONResponse(body, media_type=media_type)
        return PlainTextResponse(body, media_type=media_type)

    @router.post("/v1/jobs", status_code=202, summary="Start a batch job (diarization, features, callback)")
    async def create_job(
        file: Annotated[UploadFile, File()],
        model: Annotated[str | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
        response_format: Fmt = "verbose_json",
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        diarize: Annotated[bool, Form()] = False,
        num_speakers: Annotated[int | None, Form()] = None,
        features: Annotated[bool, Form()] = False,
        callback_url: Annotated[str | None, Form()] = None,
    ) -> Response:
        request = _request_from(language, prompt, temperature, timestamp_granularities or [], "verbose_json", diarize, num_speakers, features)
        if isinstance(request, JSONResponse):
            return request
        if callback_url and not options.callbacks:
            return _error(400, "callbacks are turned off on this server (batch.callbacks)", param="callback_url")
        if callback_url and (why := await callback_refusal(callback_url, options.callback_targets)) is not None:
            return _error(400, f"callback_url: {why}", param="callback_url")
        media = await decoded(file)
        if isinstance(media, JSONResponse):
            return media
        view = submit(media, request, file.filename or "", callback_url or None)
        if isinstance(view, JSONResponse):
            return view
        return JSONResponse({"id": view.id, "status": view.state.value, "progress": 0.0, "stage": view.stage}, status_code=202,
                            headers={"Location": f"/v1/jobs/{view.id}"})

    @router.get("/v1/jobs/{job_id}", summary="A job's status, progress and result")
    async def get_job(job_id: str) -> Response:
        view = store.get(job_id)
        if view is None:
            return _error(404, f"no job {job_id}", code="NOT_FOUND")
        return JSONResponse(job_json(view), headers={"Cache-Control": "no-store"})

    @router.delete("/v1/jobs/{job_id}", summary="Cancel a job")
    async def delete_job(job_id: str) -> Response:
        view = store.cancel(job_id)
        if view is None:
            return _error(404, f"no job {job_id}", code="NOT_FOUND")
        return JSONResponse(job_json(view))

    return router
