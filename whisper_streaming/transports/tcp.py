"""The V1.0 TCP door: moves bytes between sockets, the codec and the runtime.

Everything protocol-shaped lives elsewhere: :mod:`~whisper_streaming.wire.protocol` (bytes <->
packets), :mod:`~whisper_streaming.wire.tcp_session` (packets <-> session commands and outputs),
:mod:`~whisper_streaming.runtime` (sessions, backend, sinks, admission).  This module reads and
writes, enforces the handshake and idle timeouts and the send buffer limit.

Slots are for sessions, not for connections: a connection takes one only with its first packet
other than ``%c`` (normally ``%u``).  Before that, ``%c`` is answered as a monitoring probe, so
status stays visible when every slot is taken; a connection that has not sent ``%u`` within
``identify_timeout_s`` of its handshake is closed (``%E TIMEOUT``).  ``%c`` never resets the idle
timer.  Each connection's ``%c`` are answered at most at ``status_requests_per_s`` (after a
burst of ``status_burst``): over that rate the connection waits, so a client polling faster
only slows itself down and a pipelined flood costs the server nothing but its own idle
timeout (the connection is closed with ``%E TIMEOUT`` when it has sent nothing else for
``socket_timeout_s``, or before identifying, at ``identify_timeout_s``).  Connections without a
session also share a server-wide allowance of fresh status texts
(:meth:`~whisper_streaming.runtime.runtime.Runtime.allow_probe`; over it, the last text built).
Buffered packets are handled in batches with a yield to the event loop in between, so one
connection's pipelined flood cannot stall the others.

TLS (``TcpOptions.ssl_context``, config ``tls``): the listener wraps every connection; the TLS
handshake must finish within ``handshake_timeout_s`` too, and a peer that does not speak TLS
(or does not trust the certificate) fails it and is closed without a session.  Tokens
(config ``auth``, :mod:`whisper_streaming.core.auth`): a connection's session takes a slot at
``%u`` as before, but must show a valid ``%o token=...`` within ``identify_timeout_s`` of its
handshake (else ``%E TIMEOUT``; the session refuses ``%b``, or an ``%o`` without the token,
before one with ``%E UNAUTHORIZED``), and until then ``%c`` is answered with the limited status only
(:meth:`~whisper_streaming.runtime.runtime.Runtime.limited_status_text`).

Closing after an error uses a lingering close (shut down our sending side, then read and
discard for up to :data:`LINGER_S` until the peer closes): closing a socket with unread
input makes the kernel send RST, which can destroy the ``%E`` the peer has not read yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Any

from whisper_streaming.core.ratelimit import TokenBucket
from whisper_streaming.errors import ErrorReason, HandshakeError, RemoteProtocolError
from whisper_streaming.pipeline.commands import Output
from whisper_streaming.runtime.driver import ConnectionLog, SessionDriver
from whisper_streaming.runtime.runtime import Runtime, finish_tasks
from whisper_streaming.sinks.base import SessionInfo
from whisper_streaming.wire.protocol import MAGIC, Error, Packet, PacketDecoder, Role, ServerPacket, Status, StatusRequest, Summary, encode_packet
from whisper_streaming.wire.tcp_session import TcpRenderer, command_for

__all__ = ["TcpOptions", "TcpTransport", "LINGER_S", "READ_CHUNK_BYTES"]

log = logging.getLogger(__name__)

LINGER_S = 2.0
"""How long a closing connection keeps reading (and discarding) until the peer closes."""
READ_CHUNK_BYTES = 65536
YIELD_EVERY_PACKETS = 256
"""Buffered packets handled before the connection yields to the event loop."""


@dataclass(frozen=True)
class TcpOptions:
    """``host``/``port`` to listen on (0: any free port); ``handshake_timeout_s`` for the magic
    string; ``identify_timeout_s`` from the handshake to ``%u``; ``socket_timeout_s`` without a
    packet other than ``%c`` before ``%E TIMEOUT`` (not while we owe results);
    ``max_send_buffer_bytes`` unread by the peer before it is dropped; ``status_requests_per_s``
    and ``status_burst``: how often a connection's ``%c`` is answered; ``length_encoding``: the
    packets' 4 length digits, ``hex`` or ``decimal`` (:data:`~whisper_streaming.wire.protocol.LENGTH_ENCODINGS`);
    ``ssl_context``: serve TLS with this server context (None: plain TCP)."""

    host: str = "127.0.0.1"
    port: int = 0
    handshake_timeout_s: float = 10.0
    identify_timeout_s: float = 10.0
    socket_timeout_s: float = 60.0
    max_send_buffer_bytes: int = 1 << 20
    status_requests_per_s: float = 10.0
    status_burst: int = 20
    length_encoding: str = "hex"
    ssl_context: ssl.SSLContext | None = None


class TcpTransport:
    """The V1.0 listener, composed with a :class:`~whisper_streaming.runtime.runtime.Runtime`."""

    name = "tcp"

    def __init__(self, runtime: Runtime, options: TcpOptions) -> None:
        self.runtime = runtime
        self.options = options
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_TcpConnection] = set()
        self._ids = itertools.count(1)
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns ``(host, port)`` actually bound."""
        tls = self.options.ssl_context
        self._server = await asyncio.start_server(self._accept, self.options.host, self.options.port, limit=READ_CHUNK_BYTES * 2, ssl=tls,
                                                  ssl_handshake_timeout=self.options.handshake_timeout_s if tls is not None else None)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("listening on %s:%d%s", *self.address, " (TLS)" if tls is not None else "")
        return self.address

    def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()

    def status_lines(self) -> list[str]:
        return []

    async def shutdown(self) -> None:
        """Stop accepting; finish every open stream (results, then ``%F``); close."""
        self.close_listener()
        for conn in list(self._connections):
            conn.begin_shutdown()
        await finish_tasks([c.task for c in self._connections if c.task is not None], self.runtime.stream_time_left(), "connections",
                           before_cancel=self._tell_shutting_down)

    def _tell_shutting_down(self) -> None:
        """``shutdown_timeout_s`` is over: every session still open gets ``%E SHUTTING_DOWN`` (never silence)."""
        for conn in list(self._connections):
            conn.cut_at_shutdown()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.runtime.serve(_TcpConnection(self, reader, writer, f"c{next(self._ids)}"), self._connections)


class _TcpConnection:
    """One TCP connection: handshake, read loop; the runtime's driver carries out the session's actions."""

    def __init__(self, door: TcpTransport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: str) -> None:
        self.door = door
        self.runtime = door.runtime
        self.options = door.options
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        peer_text = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.log = ConnectionLog(log, {"conn": f"{conn_id} {peer_text}"})
        self.decoder = PacketDecoder(Role.SERVER, length_encoding=self.options.length_encoding)
        self.renderer = TcpRenderer()
        self.driver: SessionDriver = self.runtime.open_session(SessionInfo(conn_id, "tcp", peer_text), self, self.log)
        self.task: asyncio.Task[Any] | None = None
        self._status_bucket = TokenBucket(self.options.status_requests_per_s, self.options.status_burst)
        self._identify_deadline = 0.0
        self._last_packet = 0.0  # when the last packet other than %c arrived
        self._late_bytes = 0  # input discarded after the shutdown finished the stream

    # -------------------------------------------------------------- Peer

    def deliver(self, output: Output) -> None:
        for packet in self.renderer.render(output):
            if isinstance(packet, Summary):
                self.log.info("stream summary: %s", packet.text.replace("\n", "; "))
            self._send_now(packet)

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        if not await self._handshake(self.options.handshake_timeout_s):
            return
        self._identify_deadline = time.monotonic() + self.options.identify_timeout_s
        first = await self._before_admission()
        if first is None:
            return
        refusal = self.runtime.admit(self.driver, self.peer_ip)
        if refusal is not None:
            self.log.warning("rejected: %s", refusal)
            self._refuse(refusal)
            await self._linger_close()
            return
        self.log.info("session start")
        await self.driver.handle(command_for(first))
        try:
            await self._read_loop(self.options.socket_timeout_s)
        finally:
            s = self.driver.session
            self.log.info(
                "session end: user=%r streams=%d audio=%.1fs utterances=%d results=%d outcome=%s%s",
                s.user_id, s.stream_index + 1, s.audio_s, s.utterances, s.results_sent, s.close_reason or self.driver.closing or "closed",
                f" (discarded {self._late_bytes} bytes sent after the shutdown began)" if self._late_bytes else "",
            )

    async def _handshake(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        try:
            while not self.decoder.handshake_done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                data = await asyncio.wait_for(self.reader.read(len(MAGIC)), remaining)
                if not data:
                    return False
                self.decoder.receive_data(data)
        except HandshakeError:
            self.runtime.stats.handshake_failures += 1
            self.log.info("bad magic string; closing without reply")
            return False
        except asyncio.TimeoutError:
            self.runtime.stats.handshake_failures += 1
            self.log.info("no handshake within %.1f s; closing", timeout_s)
            return False
        except (ConnectionError, OSError):
            return False
        return True

    async def _before_admission(self) -> Packet | None:
        """Answer ``%c`` probes without a slot until the first other packet, which is returned.

        None: the peer went away, broke the protocol or did not identify in time (told with ``%E``
        where it can be).
        """
        while True:
            try:
                packet = self.decoder.next_packet()
            except RemoteProtocolError as exc:
                self.log.warning("protocol error %s before the session: %s", exc.reason, exc.detail)
                self._refuse(exc.reason)
                await self._linger_close()
                return None
            if packet is None:
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK_BYTES), max(0.0, self._identify_deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    await self._identify_timed_out()
                    return None
                except (ConnectionError, OSError):
                    return None
                if not data:
                    return None
                self.decoder.receive_data(data)
                if not await self._drain(self.options.socket_timeout_s):
                    return None
                continue
            if not isinstance(packet, StatusRequest):
                return packet
            if not await self._status_token(self._identify_deadline):  # paced: a flood waits (and yields) here
                await self._identify_timed_out()
                return None
            if self.runtime.tokens_required:  # no token yet: the server is up, nothing more
                self._send_now(Status(self.runtime.limited_status_text()))
                continue
            fresh = self.runtime.allow_probe()
            self._send_now(Status(self.runtime.status_text() if fresh else self.runtime.cached_status_text()))

    async def _identify_timed_out(self) -> None:
        self.log.info("no user id within %.0f s of the handshake; closing", self.options.identify_timeout_s)
        self._refuse(ErrorReason.TIMEOUT)
        await self._linger_close()

    async def _status_token(self, deadline: float) -> bool:
        """Wait for this connection's next status answer to be due; False if not before ``deadline``."""
        wait = self._status_bucket.wait_s()
        if wait > 0:
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(wait)
        return self._status_bucket.take() or await self._status_token(deadline)

    def _refuse(self, reason: ErrorReason) -> None:
        """Tell a peer that holds no session why it is being closed (counted with the errors)."""
        self.runtime.record_refusal(reason)
        self._send_now(Error(reason))

    async def _read_loop(self, socket_timeout_s: float) -> None:
        driver = self.driver
        self._last_packet = time.monotonic()
        await self._process_packets()  # bytes that arrived together with the first packet
        while driver.closing is None:
            deadline = self._last_packet + socket_timeout_s
            unidentified = self._unidentified()
            if unidentified:
                deadline = min(deadline, self._identify_deadline)
            try:
                data = await self._read(deadline - time.monotonic())
            except asyncio.TimeoutError:
                if driver.input_stopped or driver.pending_transcriptions:
                    self._last_packet = time.monotonic()  # we owe the peer results: it may wait silently
                    continue
                if unidentified and time.monotonic() >= self._identify_deadline:
                    self.log.info("no user id%s within %.0f s of the handshake", " or no valid token" if self.runtime.tokens_required else "",
                                  self.options.identify_timeout_s)
                else:
                    self.log.info("idle for %.0f s", socket_timeout_s)
                await driver.timeout()
                break
            except (ConnectionError, OSError) as exc:
                self.log.info("connection lost: %s", exc)
                driver.request_close("connection lost")
                return
            if data is None:  # closed by an action from a transcription callback
                break
            if not data:
                await self._peer_closed()
                break
            if driver.input_stopped:  # the stream was finished (server shutdown): late input is not transcribed
                if not self._late_bytes:
                    self.log.warning("input after the stream was finished for the shutdown: discarded (the peer gets its results, "
                                     "%F, then %E SHUTTING_DOWN and the close)")
                self._late_bytes += len(data)
                continue
            self.decoder.receive_data(data)
            await self._process_packets()
            if not await self._drain(socket_timeout_s):
                return
        if self._late_bytes and driver.closing != ErrorReason.SHUTTING_DOWN.value:
            # its stream was finished at the shutdown (results, %F) but it kept sending: say that
            # what it sent afterwards was not transcribed, rather than close as after a clean stream
            self.log.info("%%E SHUTTING_DOWN after %%F: %d bytes sent after the shutdown began were not transcribed", self._late_bytes)
            self.runtime.record_refusal(ErrorReason.SHUTTING_DOWN)
            self._send_now(Error(ErrorReason.SHUTTING_DOWN))
        if driver.closing not in (None, "connection lost", "peer not reading"):
            await self._linger_close()

    def _unidentified(self) -> bool:
        """Not yet identified (``%u``) or, with tokens on, not yet authenticated: held to ``identify_timeout_s``."""
        session = self.driver.session
        return session.user_id is None or not session.authenticated

    async def _drain(self, timeout_s: float) -> bool:
        """Wait until the peer has read enough of our output; drop a peer stuck that long."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout_s)
        except asyncio.TimeoutError:
            self.log.warning("peer has not read for %.0f s; dropping it", timeout_s)
            self.driver.request_close("peer not reading")
            self.writer.transport.abort()
            return False
        except (ConnectionError, OSError):
            self.driver.request_close("connection lost")
            return False
        return True

    async def _read(self, timeout_s: float) -> bytes | None:
        """Read what arrived; ``None`` if a close was requested meanwhile.

        Raises:
            asyncio.TimeoutError: nothing within ``timeout_s``.
        """
        return await self.driver.read_or_close(self.reader.read(READ_CHUNK_BYTES), timeout_s)

    async def _process_packets(self) -> bool:
        """Decode and handle every complete packet buffered; True if any but ``%c`` arrived (then
        ``_last_packet`` is its time)."""
        got = False
        handled = 0
        driver = self.driver
        while driver.closing is None and not driver.input_stopped:
            try:
                packet = self.decoder.next_packet()
                if packet is None:
                    return got
                command = command_for(packet)
            except RemoteProtocolError as exc:
                await driver.protocol_error(exc)
                return got
            handled += 1
            if isinstance(packet, StatusRequest):
                deadline = self._last_packet + self.options.socket_timeout_s
                if self._unidentified():
                    deadline = min(deadline, self._identify_deadline)
                if not await self._status_token(deadline):
                    self.log.info("only status requests for %.0f s", self.options.socket_timeout_s)
                    await driver.timeout()
                    return got
            else:
                got = True
                self._last_packet = time.monotonic()
            await driver.handle(command)
            if handled % YIELD_EVERY_PACKETS == 0:
                await asyncio.sleep(0)  # let the other connections run between batches
        return got

    async def _peer_closed(self) -> None:
        """EOF from the peer: a half-closed client may still read, so finish and flush."""
        try:
            self.decoder.receive_eof()
        except RemoteProtocolError as exc:
            self.log.info("peer closed inside a packet (%s)", exc.detail)
        self.log.info("peer closed its side; flushing")
        await self.driver.finish("peer closed")
        if self.driver.closing is None:
            await self.driver.close_requested

    def begin_shutdown(self) -> None:
        """Server shutdown: stop reading input, finish the open stream, close when flushed."""
        if not self.runtime.is_admitted(self.driver):
            self.abort()
            return
        self.driver.begin_shutdown()

    def cut_at_shutdown(self) -> None:
        """Tell the peer its session is cut short by the shutdown; the task is cancelled next."""
        self.log.warning("results still owed at the shutdown deadline: %E SHUTTING_DOWN")
        self.runtime.record_refusal(ErrorReason.SHUTTING_DOWN)
        self.driver.request_close(ErrorReason.SHUTTING_DOWN.value)
        self._send_now(Error(ErrorReason.SHUTTING_DOWN))

    def abort(self) -> None:
        """Close now: gracefully when everything we wrote has left, else (a peer that stopped reading
        while we still owe it output) with a reset, so the socket cannot stay open waiting for it."""
        if self.writer.transport.get_write_buffer_size():
            self._reset()
        elif not self.writer.is_closing():
            self.writer.close()

    async def _linger_close(self) -> None:
        """Shut down our side, read and discard until the peer closes (at most :data:`LINGER_S`), close.

        A peer that has not closed by then is reset: closing gracefully would leave the socket
        waiting for a peer that does not read (FIN-WAIT with a full send queue) while it can go
        on sending unnoticed.
        """
        transport = self.writer.transport
        peer_closed = False
        try:
            if transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()
            deadline = time.monotonic() + LINGER_S
            while (remaining := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(self.reader.read(READ_CHUNK_BYTES), remaining):
                    peer_closed = True
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            if peer_closed:
                self.abort()
            else:
                self._reset()

    def _reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the kernel drops what the peer has not read."""
        sock = self.writer.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def _send_now(self, packet: ServerPacket) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(encode_packet(packet, length_encoding=self.options.length_encoding))
        limit = self.options.max_send_buffer_bytes
        if self.writer.transport.get_write_buffer_size() > limit:
            self.log.warning("peer is not reading (send buffer over %d bytes); dropping it", limit)
            self.driver.request_close("peer not reading")
            self.writer.transport.abort()
