"""The web door's lifecycle: uvicorn serving the FastAPI app as a task of the server's event loop.

:meth:`WebTransport.start` binds the listening socket itself (so port 0 works and the bound port
is known at once), hands it to a :class:`uvicorn.Server` whose signal capture is turned off (the
server's own SIGINT/SIGTERM handling in :mod:`whisper_streaming.app.main` stays in charge), and
logs ``http listening on H:P``.  :meth:`WebTransport.shutdown` stops accepting, finishes every
open WebSocket stream like the TCP door (pending results, ``summary``, ``finished``, then close
1001), cuts those still open at :meth:`~whisper_streaming.runtime.runtime.Runtime.stream_time_left`
(``error SHUTTING_DOWN``), then lets uvicorn close the remaining HTTP connections and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import WebSocket

from whisper_streaming.batch.jobs import JobStore
from whisper_streaming.runtime.metrics import metrics_registry
from whisper_streaming.runtime.runtime import Runtime, finish_tasks
from whisper_streaming.transports.web.app import build_app
from whisper_streaming.transports.web.auth import BearerBeforeBody, install_log_redaction
from whisper_streaming.transports.web.batch_api import BATCH_PATHS, BatchApiOptions, BodyLimit
from whisper_streaming.transports.web.stream import WsConnection, WsLimits

__all__ = ["WebOptions", "WebTransport", "START_TIMEOUT_S", "HTTP_CLOSE_TIMEOUT_S"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""How long uvicorn may take to start serving on the bound socket."""
HTTP_CLOSE_TIMEOUT_S = 2.0
"""At shutdown, after the WebSocket sessions are done: how long uvicorn may wait for other HTTP requests."""


@dataclass(frozen=True)
class WebOptions:
    """``host``/``port`` to listen on (0: any free port); ``allowed_origins``: browser origins
    (``scheme://host[:port]``, lower case, or ``*``) allowed besides the server's own;
    ``max_message_bytes``: largest WebSocket message (larger: close 1009);
    ``identify_timeout_s``: from connecting to the first message; ``socket_timeout_s``: without
    a message (while no results are owed) before ``TIMEOUT``; ``max_send_buffer_bytes``: output
    unsent to a peer before it is dropped; ``ssl_context``: TLS (HTTPS/WSS) when set;
    ``max_upload_bytes``: largest request body of the file API (larger: 413 before it is read)."""

    host: str = "127.0.0.1"
    port: int = 0
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = 1 << 20
    identify_timeout_s: float = 10.0
    socket_timeout_s: float = 60.0
    max_send_buffer_bytes: int = 1 << 20
    ssl_context: ssl.SSLContext | None = None
    max_upload_bytes: int = 200 << 20


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals alone (the host server handles them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6 as the address resolves).

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(exc.errno, f"http {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"http {host}:{port}: {exc.strerror or exc}") from None
    return sock


class WebTransport:
    """The HTTP/WebSocket door, composed with a :class:`~whisper_streaming.runtime.runtime.Runtime`."""

    name = "websocket"

    def __init__(self, runtime: Runtime, options: WebOptions, *, jobs: JobStore | None = None,
                 batch_options: BatchApiOptions | None = None) -> None:
        self.runtime = runtime
        self.options = options
        self.jobs = jobs
        self.registry = metrics_registry(runtime)
        install_log_redaction()  # uvicorn logs a WebSocket's path with its query: never a ?token=
        self.app = build_app(runtime, self.registry, self._serve_stream, jobs=jobs, batch_options=batch_options)
        self.sessions_started = 0
        self.address: tuple[str, int] | None = None
        self._connections: set[WsConnection] = set()
        self._ids = itertools.count(1)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._limits = WsLimits(allowed_origins=options.allowed_origins, identify_timeout_s=options.identify_timeout_s,
                                socket_timeout_s=options.socket_timeout_s, max_send_buffer_bytes=options.max_send_buffer_bytes)

    def _uvicorn_config(self) -> uvicorn.Config:
        config = uvicorn.Config(
            # a token first (before the body is read), then the size (before it is buffered)
            BearerBeforeBody(BodyLimit(self.app, max_bytes=self.options.max_upload_bytes), self.runtime.options.session.tokens,  # type: ignore[arg-type]
                             paths=BATCH_PATHS, on_refused=self.runtime.record_refusal),
            log_config=None,  # the server's logging as configured; uvicorn logs under "uvicorn.*"
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",  # reading pauses after each message until the app takes it (backpressure)
            ws_max_size=self.options.max_message_bytes,  # larger: the library closes with 1009
            ws_per_message_deflate=False,
            server_header=False,
            timeout_graceful_shutdown=HTTP_CLOSE_TIMEOUT_S,
        )
        config.load()
        config.ssl = self.options.ssl_context  # shared with the TCP door (uvicorn passes it to create_server)
        return config

    async def start(self) -> tuple[str, int]:
        """Bind, start uvicorn on the socket; returns ``(host, port)`` actually bound.

        Raises:
            OSError: the address cannot be bound, or uvicorn did not start.
        """
        sock = _bind(self.options.host, self.options.port)
        sockname = sock.getsockname()
        server = _EmbeddedServer(self._uvicorn_config())
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="http-server")
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not server.started:
            if task.done() or asyncio.get_running_loop().time() > deadline:
                server.should_exit = True
                sock.close()
                exc = None if not task.done() or task.cancelled() else task.exception()
                raise OSError(f"the HTTP server did not start on {sockname[0]}:{sockname[1]}" + (f": {exc}" if exc else ""))
            await asyncio.sleep(0.005)
        self._server, self._task = server, task
        self.address = (sockname[0], sockname[1])
        log.info("http listening on %s:%d%s", *self.address, " (TLS)" if self.options.ssl_context is not None else "")
        return self.address

    def close_listener(self) -> None:
        if self._server is not None:
            for server in getattr(self._server, "servers", []):
                server.close()

    def status_lines(self) -> list[str]:
        return [f"websocket sessions: {self.sessions_started} (open {sum(c.admitted for c in self._connections)})"]

    async def shutdown(self) -> None:
        """Stop accepting; finish every open WebSocket stream (results, ``finished``, close 1001); stop uvicorn."""
        self.close_listener()
        if self.jobs is not None:  # batch jobs are cancelled (their callbacks say so): the streams finish first
            await self.jobs.close(deadline_s=2.0)
        for conn in list(self._connections):
            conn.begin_shutdown()
        await finish_tasks([c.task for c in self._connections if c.task is not None], self.runtime.stream_time_left(), "websocket sessions",
                           before_cancel=self._tell_shutting_down)
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), HTTP_CLOSE_TIMEOUT_S + 1.0)
            except asyncio.TimeoutError:
                log.warning("http server did not stop in time; cancelling it")
                self._task.cancel()
            except Exception:  # noqa: BLE001 - a failing HTTP server must not stop the shutdown of the rest
                log.exception("http server failed while stopping")

    def _tell_shutting_down(self) -> None:
        """``shutdown_timeout_s`` is over: every session still open gets ``error SHUTTING_DOWN`` (never silence)."""
        for conn in list(self._connections):
            conn.cut_at_shutdown()

    async def _serve_stream(self, websocket: WebSocket) -> None:
        conn = WsConnection(self.runtime, websocket, f"w{next(self._ids)}", self._limits, self._admitted)
        await self.runtime.serve(conn, self._connections)

    def _admitted(self) -> None:
        self.sessions_started += 1
