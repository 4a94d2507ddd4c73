"""One ``/v1/stream`` WebSocket: moves messages between the socket, the wire adapter and the runtime.

What the messages mean is :mod:`whisper_streaming.wire.ws_session`; this module accepts the
socket (after the ``Origin`` check), reads one message at a time, writes the session's outputs
through a bounded outbox, and closes with the code the ending calls for.

* **Origin**: a browser's ``Origin`` must be the server's own (``host:port`` of the ``Host``
  header) or listed in ``http.allowed_origins``; else ``error BAD_ORIGIN`` and close 1008.  No
  ``Origin`` (not a browser): allowed.
* **Admission**: the session slot is taken at the first message (``server.max_connections``
  counts every door); a refusal is ``error SERVER_TOO_BUSY`` / ``TOO_MANY_CONNECTIONS`` and
  close 1013.  No first message within ``identify_timeout_s``: ``error TIMEOUT``, close 1001.
* **Backpressure**: the next message is read only after the session has taken the previous one
  (``driver.handle`` waits while the ASR queue is full), and uvicorn's ``websockets-sansio``
  protocol stops reading the socket after each message until the application has taken it, so
  a client sending faster than the workers keep up stops being read (TCP flow control blocks
  its sends); it never costs unbounded memory.
* **Limits**: a message over ``http.max_message_bytes`` is refused by the WebSocket library
  (close 1009, counted as ``FRAME_TOO_LARGE``); malformed messages end that session only
  (``error <reason>``, close with :attr:`~whisper_streaming.errors.ErrorReason.ws_close_code`).
  Output the peer does not read past ``max_send_buffer_bytes`` drops it.
* **Close**: the peer closing (or vanishing) ends the session at once (its queued work is
  dropped; results of running work still reach the sinks).  At a server shutdown the open
  stream is finished (results, ``summary``, ``finished``) and the socket closed with 1001.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from whisper_streaming.errors import ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import Output, SessionFailed
from whisper_streaming.runtime.driver import ConnectionLog, SessionDriver
from whisper_streaming.runtime.runtime import Runtime
from whisper_streaming.sinks.base import SessionInfo
from whisper_streaming.wire.ws_session import WsAdapter, error_message, to_text

__all__ = ["WsLimits", "WsConnection", "origin_allowed", "LINGER_S", "CLOSE_NORMAL", "CLOSE_GOING_AWAY", "CLOSE_TOO_BIG"]

log = logging.getLogger(__name__)

LINGER_S = 2.0
"""How long the outbox may take to reach the peer once the session is over (then the socket is closed anyway)."""
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
_CLOSE = object()  # the outbox's last item: close the socket


@dataclass(frozen=True)
class WsLimits:
    """The connection limits of :class:`~whisper_streaming.transports.web.door.WebOptions` a connection needs."""

    allowed_origins: tuple[str, ...] = ()
    identify_timeout_s: float = 10.0
    socket_timeout_s: float = 60.0
    max_send_buffer_bytes: int = 1 << 20


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a WebSocket with this ``Origin`` header may connect (see the module docstring).

    ``allowed``: normalized origins (``scheme://host[:port]``, lower case) or ``*``.
    """
    if origin is None or "*" in allowed:
        return True
    value = origin.strip().lower().rstrip("/")
    if value in allowed:
        return True
    netloc = urlsplit(value).netloc
    return bool(host) and bool(netloc) and netloc == host.strip().lower()  # type: ignore[union-attr]


class WsConnection:
    """One WebSocket: origin check, admission, read loop; the runtime's driver carries out the session's actions."""

    def __init__(self, runtime: Runtime, websocket: WebSocket, conn_id: str, limits: WsLimits, on_admitted: Callable[[], None]) -> None:
        self.runtime = runtime
        self.websocket = websocket
        self.limits = limits
        client = websocket.client
        self.peer_ip = client.host if client else "?"
        peer_text = f"{client.host}:{client.port}" if client else "?"
        self.log = ConnectionLog(log, {"conn": f"{conn_id} {peer_text}"})
        session = runtime.options.session
        self.adapter = WsAdapter(session.stream_defaults, session.default_language, conn_id, websocket.query_params.get("token"))
        self.driver: SessionDriver = runtime.open_session(SessionInfo(conn_id, "websocket", peer_text), self, self.log)
        self.task: asyncio.Task[Any] | None = None
        self.admitted = False
        self._on_admitted = on_admitted
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._outbox_chars = 0
        self._writer: asyncio.Task[None] | None = None
        self._close_code = CLOSE_NORMAL
        self._close_reason = ""
        self._peer_gone = False
        self._late_messages = 0  # input discarded after the shutdown finished the stream

    # -------------------------------------------------------------- Peer

    def deliver(self, output: Output) -> None:
        for message in self.adapter.render(output):
            self._send(message)
        if isinstance(output, SessionFailed):
            self._set_close(output.reason)

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        ws = self.websocket
        try:
            await ws.accept()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"ws-writer {self.driver.info.session_id}")
        try:
            origin = ws.headers.get("origin")
            if not origin_allowed(origin, ws.headers.get("host"), self.limits.allowed_origins):
                self.log.warning("origin %r is not allowed; refused", (origin or "")[:100])
                self._refuse(ErrorReason.BAD_ORIGIN)
                return
            first = await self._first_message()
            if first is None:
                return
            refusal = self.runtime.admit(self.driver, self.peer_ip)
            if refusal is not None:
                self.log.warning("rejected: %s", refusal)
                self._refuse(refusal)
                return
            self.admitted = True
            self._on_admitted()
            self.log.info("session start")
            try:
                await self._handle(first)
                await self._read_loop()
            finally:
                s = self.driver.session
                self.log.info("session end: user=%r streams=%d audio=%.1fs utterances=%d results=%d outcome=%s%s",
                              s.user_id, s.stream_index + 1, s.audio_s, s.utterances, s.results_sent,
                              s.close_reason or self.driver.closing or "closed",
                              f" (discarded {self._late_messages} messages sent after the shutdown began)" if self._late_messages else "")
        finally:
            await self._flush_and_close()

    async def _first_message(self) -> dict[str, Any] | None:
        """The first message (it takes the session slot), within ``identify_timeout_s``; None: the
        peer left, said nothing in time (told), or the server is stopping."""
        timeout_s = self.limits.identify_timeout_s
        try:
            message = await self.driver.read_or_close(self.websocket.receive(), timeout_s)
        except asyncio.TimeoutError:
            self.log.info("no message within %.0f s of connecting; closing", timeout_s)
            self._refuse(ErrorReason.TIMEOUT)
            return None
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._peer_gone = True
            return None
        if message is None:  # the server is stopping
            return None
        if message["type"] == "websocket.disconnect":
            self._disconnected(message)
            return None
        return message

    async def _read_loop(self) -> None:
        driver = self.driver
        timeout_s = self.limits.socket_timeout_s
        last = time.monotonic()
        while driver.closing is None:
            try:
                message = await driver.read_or_close(self.websocket.receive(), last + timeout_s - time.monotonic())
            except asyncio.TimeoutError:
                if driver.input_stopped or driver.pending_transcriptions:
                    last = time.monotonic()  # we owe the peer results: it may wait silently
                    continue
                self.log.info("idle for %.0f s", timeout_s)
                await driver.timeout()
                break
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                self.log.info("connection lost: %s", exc)
                self._peer_gone = True
                driver.request_close("connection lost")
                break
            if message is None:  # closed by an action (error, shutdown, transcription callback)
                break
            if message["type"] == "websocket.disconnect":
                self._disconnected(message)
                break
            last = time.monotonic()
            if driver.input_stopped:  # the stream was finished (server shutdown): late input is not transcribed
                if not self._late_messages:
                    self.log.warning("input after the stream was finished for the shutdown: discarded")
                self._late_messages += 1
                continue
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        """Map one received message to commands and have the session take them (awaits backpressure)."""
        driver = self.driver
        data = message.get("bytes")
        try:
            if data is not None:
                commands = self.adapter.on_audio(data)
            else:
                commands = self.adapter.on_text(message.get("text") or "")
        except RemoteProtocolError as exc:
            await driver.protocol_error(exc)
            return
        for command in commands:
            if driver.closing is not None:
                return
            await driver.handle(command)

    def _disconnected(self, message: dict[str, Any]) -> None:
        """The peer closed (or the WebSocket library closed it: 1009 for a message over the limit)."""
        self._peer_gone = True
        code = message.get("code")
        if code == CLOSE_TOO_BIG:
            self.log.warning("message over the size limit: closed with 1009 (FRAME_TOO_LARGE)")
            self.runtime.record_refusal(ErrorReason.FRAME_TOO_LARGE)
            self.driver.request_close(ErrorReason.FRAME_TOO_LARGE.value)
            return
        owed = self.driver.pending_transcriptions
        self.log.info("peer closed (code %s)%s", code, f" with {owed} transcription(s) pending" if owed else "")
        self.driver.request_close("peer closed")

    # -------------------------------------------------------------- output

    def _set_close(self, reason: ErrorReason) -> None:
        self._close_code, self._close_reason = reason.ws_close_code, reason.value

    def _refuse(self, reason: ErrorReason) -> None:
        """Tell a peer that holds no session why it is being closed (counted with the errors)."""
        self.runtime.record_refusal(reason)
        self._send(error_message(reason))
        self._set_close(reason)

    def _send(self, message: dict[str, Any]) -> None:
        """Queue one message for the peer (never blocks); a peer that lets too much pile up is dropped."""
        writer = self._writer
        if writer is None or writer.done() or self._peer_gone:
            return
        text = to_text(message)
        self._outbox_chars += len(text)
        self._outbox.put_nowait(text)
        limit = self.limits.max_send_buffer_bytes
        if self._outbox_chars > limit:
            self.log.warning("peer is not reading (over %d bytes unsent); dropping it", limit)
            self.driver.request_close("peer not reading")
            writer.cancel()

    async def _write_loop(self) -> None:
        ws = self.websocket
        try:
            while True:
                item = await self._outbox.get()
                if item is _CLOSE:
                    code, reason = self._close_code, self._close_reason
                    if code == CLOSE_NORMAL and self.runtime.stopping:
                        code, reason = CLOSE_GOING_AWAY, "server shutdown"
                    await ws.close(code, reason)
                    return
                self._outbox_chars -= len(item)
                await ws.send_text(item)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # the peer is gone: nothing more to say
            self._peer_gone = True
            self.log.debug("send failed: %s", exc)

    async def _flush_and_close(self) -> None:
        """Send what is queued, then the close (at most :data:`LINGER_S`); nothing when the peer is gone."""
        writer = self._writer
        if writer is None or writer.done():
            return
        if self._peer_gone:
            writer.cancel()
            return
        self._outbox.put_nowait(_CLOSE)
        try:
            await asyncio.wait_for(asyncio.shield(writer), LINGER_S)
        except asyncio.TimeoutError:
            self.log.info("output not flushed within %.0f s; closing", LINGER_S)
            writer.cancel()

    # -------------------------------------------------------------- shutdown

    def begin_shutdown(self) -> None:
        """Server shutdown: stop reading input, finish the open stream, close when flushed."""
        self.driver.begin_shutdown()
        if not self.admitted:
            self.driver.request_close("server shutdown")

    def cut_at_shutdown(self) -> None:
        """Tell the peer its session is cut short by the shutdown; the task is cancelled next."""
        self.log.warning("results still owed at the shutdown deadline: error SHUTTING_DOWN")
        self.runtime.record_refusal(ErrorReason.SHUTTING_DOWN)
        self.driver.request_close(ErrorReason.SHUTTING_DOWN.value)
        self._send(error_message(ErrorReason.SHUTTING_DOWN))
        self._set_close(ErrorReason.SHUTTING_DOWN)
        self._outbox.put_nowait(_CLOSE)

    def abort(self) -> None:
        """Stop writing (idempotent); uvicorn closes the socket when the handler returns."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
