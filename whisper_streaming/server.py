"""asyncio TCP transport: moves bytes between sockets, the codec and the session.

Everything protocol-shaped lives elsewhere: :mod:`~whisper_streaming.protocol` (bytes <->
packets), :mod:`~whisper_streaming.session` (packets -> actions) and
:mod:`~whisper_streaming.pool` (utterances -> transcripts).  This module reads and writes,
enforces timeouts and connection limits, and carries out the session's actions.

Closing after an error uses a lingering close (shut down our sending side, then read and
discard for up to :data:`LINGER_S` until the peer closes): closing a socket with unread
input makes the kernel send RST, which can destroy the ``%E`` the peer has not read yet.

Speculative transcription: when the session offers a tentative utterance (its audio is final,
the endpoint is still ``silence_frames * frame_ms - trailing_ms`` away) while nothing is
queued and at least two workers are idle, the utterance is submitted at once; the
:class:`Transcribe` that confirms it takes the job over, so the result is ready up to that
much sooner.  A speculation that is withdrawn (speech resumed) cannot stop a job that already
runs, so one worker is always left for confirmed utterances: with ``model.channel: 1``
nothing is speculated, and under load (no two idle workers) neither, so speculation costs no
throughput when the machine is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import ServerConfig
from .errors import AsrError, HandshakeError, RemoteProtocolError
from .language import LanguagePolicy
from .options import StreamOptions
from .pcm_save import PcmRecorder, PcmStreamWriter
from .pool import AsrBackend, EngineState
from .protocol import MAGIC, Error, PacketDecoder, Result, Role, Status, Summary, encode_packet
from .results_log import ResultsLog, result_record
from .sentiment_stats import SentimentTally
from .session import (
    Action,
    CancelSpeculation,
    Close,
    Send,
    Session,
    SessionOptions,
    Speculate,
    StatusRequested,
    StreamAudio,
    StreamEnded,
    StreamStarted,
    Transcribe,
)
from .vad import VadOptions

__all__ = ["StreamingServer", "ServerStats", "vad_options_from_config", "session_options_from_config", "language_policy_from_config", "LINGER_S", "READ_CHUNK_BYTES", "finish_tasks"]

log = logging.getLogger(__name__)

LINGER_S = 2.0
"""How long a closing connection keeps reading (and discarding) until the peer closes."""
READ_CHUNK_BYTES = 65536


def vad_options_from_config(config: ServerConfig) -> VadOptions:
    v = config.vad
    return VadOptions(
        mode=v.mode,
        sample_rate_hz=config.audio.sample_rate,
        frame_ms=config.audio.frame_duration_ms,
        silence_frames=v.silence_frames,
        max_speech_s=v.max_speech_s,
        preroll_ms=v.preroll_ms,
        start_window_frames=v.start_window_frames,
        start_voiced_frames=v.start_voiced_frames,
        min_speech_ms=v.min_speech_ms,
        silence_floor_dbfs=v.silence_floor_dbfs,
        trailing_ms=v.trailing_ms,
        digital_silence_peak=v.digital_silence_peak,
        digital_silence_frames=v.digital_silence_frames,
        agc_target_dbfs=v.agc_target_dbfs,
        agc_max_gain_db=v.agc_max_gain_db,
        agc_window_ms=v.agc_window_ms,
    )


def language_policy_from_config(config: ServerConfig) -> LanguagePolicy:
    m = config.model
    return LanguagePolicy(m.language_min_detect_s, m.language_min_probability, m.language_redetect_below)


def _refuse(requested: Any) -> bool:
    return False


def session_options_from_config(config: ServerConfig) -> SessionOptions:
    """VAD, stream limit and the sentiment default/policy (``sentiment.engine: none`` refuses the opt-in)."""
    max_stream_s = config.server.max_stream_s
    s = config.sentiment
    return SessionOptions(
        vad=vad_options_from_config(config),
        max_stream_samples=None if max_stream_s is None else int(max_stream_s * config.audio.sample_rate),
        stream_defaults=StreamOptions(sentiment=s.enabled),
        default_language=config.model.language,
        language_policy=language_policy_from_config(config),
        option_policy={"sentiment": _refuse} if s.engine == "none" else {},
    )


@dataclass
class ServerStats:
    """Counters since start, shown in ``%C``."""

    sessions_started: int = 0
    sessions_rejected: int = 0
    handshake_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # %E reasons sent
    speculations_started: int = 0  # tentative utterances submitted before their endpoint
    speculations_used: int = 0  # ... whose result became a final result
    sentiment: SentimentTally = field(default_factory=SentimentTally)  # of the %R sent with a sentiment


async def finish_tasks(tasks: list[asyncio.Task[Any]], timeout_s: float, what: str) -> None:
    """Wait up to ``timeout_s`` for ``tasks`` (connections finishing), then cancel the rest."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    if pending:
        log.warning("shutdown timeout: aborted %d %s", len(pending), what)
        await asyncio.wait(pending, timeout=2.0)


class _ConnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['conn']}] {msg}", kwargs  # type: ignore[index]


class StreamingServer:
    """The TCP server. ``await start()``, then ``await wait_closed()``; ``await shutdown()`` stops it gracefully."""

    def __init__(self, config: ServerConfig, backend: AsrBackend, *, results_log: ResultsLog | None = None) -> None:
        self.config = config
        self.backend = backend
        self.session_options = session_options_from_config(config)
        self.results_log = results_log
        self.recorder = PcmRecorder(config.pcm_save.dir) if config.pcm_save.enabled else None
        self.stats = ServerStats()
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._sessions: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._stopping = False
        self._stopped = asyncio.Event()
        self.address: tuple[str, int] | None = None
        self.extra_status: list[Callable[[], str]] = []  # more %C lines (other transports)
        self.transports: list[Any] = []  # other transports on this backend: ``await t.shutdown()`` before it closes

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns ``(host, port)`` actually bound."""
        net = self.config.network
        self._server = await asyncio.start_server(self._accept, net.ip, net.port, limit=READ_CHUNK_BYTES * 2)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("listening on %s:%d", *self.address)
        return self.address

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    def status_text(self) -> str:
        """The ``%C`` text: one line per engine, then sessions, queue and counters."""
        st = self.backend.status()
        lines = [f"engine {i}: {state.value}" for i, state in enumerate(st.engines)]
        lines.append(f"sessions: {len(self._sessions)}/{self.config.server.max_connections}")
        lines.append(f"utterances queued: {st.utterances_queued}")
        lines.append(f"utterances done: {st.utterances_done}")
        lines.append(f"utterances failed: {st.utterances_failed}")
        lines.append(f"worker restarts: {st.worker_restarts}")
        lines.append(f"sessions total: {self.stats.sessions_started}")
        lines.append(f"sessions rejected: {self.stats.sessions_rejected}")
        lines.append(f"handshake failures: {self.stats.handshake_failures}")
        errors = " ".join(f"{k}={v}" for k, v in sorted(self.stats.errors.items()))
        lines.append(f"errors: {errors or 'none'}")
        lines.append(f"sentiment: {self.stats.sentiment.summary().counts_text()}")
        lines.append(f"speculative transcriptions: started {self.stats.speculations_started}, used {self.stats.speculations_used}")
        g = st.guards
        lines.append(f"decoding guards: loops {g.loops}, loops cut {g.loop_cuts}, time limited {g.time_limited}, "
                     f"no-speech fragments dropped {g.no_speech_dropped}")
        lines.extend(extra() for extra in self.extra_status)
        lines.append(f"tasks: {len(asyncio.all_tasks())}")
        return "\n".join(lines)

    async def shutdown(self) -> None:
        """Stop accepting; finish every open stream (results, then ``%F``); close; stop the backend.

        Bounded by ``server.shutdown_timeout_s``; connections still open then are aborted.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("shutting down: %d sessions open", len(self._sessions))
        if self._server is not None:
            self._server.close()
        others = [asyncio.ensure_future(t.shutdown()) for t in self.transports]
        for conn in list(self._connections):
            conn.begin_shutdown()
        await finish_tasks([c.task for c in self._connections if c.task is not None], self.config.server.shutdown_timeout_s, "connections")
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        await self.backend.close()
        if self.results_log is not None:
            self.results_log.close()
        self._stopped.set()
        log.info("stopped")

    # ------------------------------------------------------------------ internals

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.serve(_Connection(self, reader, writer, f"c{next(self._ids)}"), self._connections)

    async def serve(self, conn: _Connection, registry: set[Any]) -> None:
        """Run one connection (of any transport) in the current task, listed in ``registry`` while it runs."""
        conn.task = asyncio.current_task()
        registry.add(conn)
        try:
            await conn.run()
        except Exception:  # noqa: BLE001 - a bug in one connection must not take the server down
            conn.log.exception("connection failed")
        finally:
            registry.discard(conn)
            self._sessions.discard(conn)
            conn.abort()

    def _admit(self, conn: _Connection) -> str | None:
        """Admit a session, or return the ``%E`` reason that refuses it.

        Overload policy: refuse new sessions (never degrade open ones) when the sessions
        limit is reached or the utterance queue is over ``server.overload_queue_fraction``.
        """
        limits = self.config.server
        reason = None
        if self._stopping or len(self._sessions) >= limits.max_connections:
            reason = "SERVER_TOO_BUSY"
        elif self.backend.status().utterances_queued > limits.overload_queue_fraction * limits.max_queued_utterances:
            reason = "SERVER_TOO_BUSY"
        elif limits.max_connections_per_ip and sum(c.peer_ip == conn.peer_ip for c in self._sessions) >= limits.max_connections_per_ip:
            reason = "TOO_MANY_CONNECTIONS"
        if reason is not None:
            self.stats.sessions_rejected += 1
            return reason
        self._sessions.add(conn)
        self.stats.sessions_started += 1
        return None


class _Connection:
    """One TCP connection: handshake, read loop, action executor."""

    def __init__(self, server: StreamingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: str) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn_id = conn_id
        peer = writer.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.log = _ConnLog(log, {"conn": f"{conn_id} {self.peer}"})
        self.decoder = PacketDecoder(Role.SERVER)
        self.session = Session(server.session_options)
        self.task: asyncio.Task[Any] | None = None
        self._closing: str | None = None
        self._input_stopped = False
        self._pcm: PcmStreamWriter | None = None
        self._speculations: dict[int, asyncio.Future[Any]] = {}  # Speculate.key -> running transcription
        self._close_requested: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        net = self.server.config.network
        if not await self._handshake(net.handshake_timeout_s):
            return
        refusal = self.server._admit(self)
        if refusal is not None:
            self.log.warning("rejected: %s", refusal)
            self._send_now(Error(refusal))
            await self._linger_close()
            return
        self.log.info("session start")
        try:
            await self._read_loop(net.socket_timeout)
        finally:
            self.server.backend.cancel_session(self.conn_id)
            self._close_pcm()
            s = self.session
            self.log.info(
                "session end: user=%r streams=%d audio=%.1fs utterances=%d results=%d outcome=%s",
                s.user_id, s.stream_index + 1, s.audio_s, s.utterances, s.results_sent, s.close_reason or self._closing or "closed",
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
            self.server.stats.handshake_failures += 1
            self.log.info("bad magic string; closing without reply")
            return False
        except asyncio.TimeoutError:
            self.server.stats.handshake_failures += 1
            self.log.info("no handshake within %.1f s; closing", timeout_s)
            return False
        except (ConnectionError, OSError):
            return False
        return True

    async def _read_loop(self, socket_timeout_s: float) -> None:
        last_packet = time.monotonic()
        if await self._process_packets():  # bytes that arrived together with the magic string
            last_packet = time.monotonic()
        while self._closing is None:
            try:
                data = await self._read(last_packet + socket_timeout_s - time.monotonic())
            except asyncio.TimeoutError:
                if self._input_stopped or self.session.pending_transcriptions:
                    last_packet = time.monotonic()  # we owe the peer results: it may wait silently
                    continue
                self.log.info("idle for %.0f s", socket_timeout_s)
                await self._execute(self.session.timeout())
                break
            except (ConnectionError, OSError) as exc:
                self.log.info("connection lost: %s", exc)
                self._request_close("connection lost")
                return
            if data is None:  # closed by an action from a transcription callback
                break
            if not data:
                await self._peer_closed()
                break
            if self._input_stopped:
                continue  # shutting down: the stream was already finished, ignore late input
            self.decoder.receive_data(data)
            if await self._process_packets():
                last_packet = time.monotonic()
            if not await self._drain(socket_timeout_s):
                return
        if self._closing not in (None, "connection lost", "peer not reading"):
            await self._linger_close()

    async def _drain(self, timeout_s: float) -> bool:
        """Wait until the peer has read enough of our output; drop a peer stuck that long."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout_s)
        except asyncio.TimeoutError:
            self.log.warning("peer has not read for %.0f s; dropping it", timeout_s)
            self._request_close("peer not reading")
            self.writer.transport.abort()
            return False
        except (ConnectionError, OSError):
            self._request_close("connection lost")
            return False
        return True

    async def _read(self, timeout_s: float) -> bytes | None:
        """Read what arrived; ``None`` if a close was requested meanwhile.

        Raises:
            asyncio.TimeoutError: nothing within ``timeout_s``.
        """
        read = asyncio.ensure_future(self.reader.read(READ_CHUNK_BYTES))
        done, _ = await asyncio.wait((read, self._close_requested), timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            return read.result()
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read
        if self._close_requested.done():
            return None
        raise asyncio.TimeoutError

    async def _process_packets(self) -> bool:
        """Decode and handle every complete packet buffered; True if any arrived."""
        got = False
        while self._closing is None and not self._input_stopped:
            try:
                packet = self.decoder.next_packet()
            except RemoteProtocolError as exc:
                self.log.warning("protocol error %s: %s", exc.reason, exc.detail)
                await self._execute(self.session.protocol_error(exc))
                return got
            if packet is None:
                return got
            got = True
            await self._execute(self.session.receive_packet(packet))
        return got

    async def _peer_closed(self) -> None:
        """EOF from the peer: a half-closed client may still read, so finish and flush."""
        try:
            self.decoder.receive_eof()
        except RemoteProtocolError as exc:
            self.log.info("peer closed inside a packet (%s)", exc.detail)
        self._input_stopped = True
        self.log.info("peer closed its side; flushing")
        await self._execute(self.session.shutdown("peer closed"))
        if self._closing is None:
            await self._close_requested

    def begin_shutdown(self) -> None:
        """Server shutdown: stop reading input, finish the open stream, close when flushed."""
        if self not in self.server._sessions:
            self.abort()
            return
        self._input_stopped = True
        self._run_sync_actions(self.session.shutdown())

    def abort(self) -> None:
        self._close_pcm()
        for future in self._speculations.values():
            future.cancel()
        self._speculations.clear()
        if not self.writer.is_closing():
            self.writer.close()

    async def _linger_close(self) -> None:
        transport = self.writer.transport
        try:
            if transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()
            deadline = time.monotonic() + LINGER_S
            while (remaining := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(self.reader.read(READ_CHUNK_BYTES), remaining):
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.abort()

    # -------------------------------------------------------------- actions

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transcribe):
                await self._transcribe(action)
            elif isinstance(action, Speculate):
                await self._speculate(action)
            else:
                self._run_sync_action(action)

    def _run_sync_actions(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transcribe):  # only from shutdown/flush; queue without waiting
                asyncio.get_running_loop().create_task(self._transcribe(action))
            elif isinstance(action, Speculate):
                pass  # optional, and never produced outside the audio path
            else:
                self._run_sync_action(action)

    def _run_sync_action(self, action: Action) -> None:
        if isinstance(action, Send):
            self._send_now(action.packet)
            if isinstance(action.packet, Result):
                self._result_sent(action)
            elif isinstance(action.packet, Summary):
                self.log.info("stream summary: %s", action.packet.text.replace("\n", "; "))
        elif isinstance(action, StreamAudio):
            if self._pcm is not None:
                self._pcm.write(action.pcm)
        elif isinstance(action, StatusRequested):
            self._send_now(Status(self.server.status_text()))
        elif isinstance(action, StreamStarted):
            self.log.info("stream %d started (user %r)", action.stream_index, action.user_id)
            if self.server.recorder is not None:
                self._pcm = self.server.recorder.open_stream(action.user_id, session_id=self.conn_id, stream_index=action.stream_index,
                                                            sample_rate_hz=action.sample_rate_hz)
        elif isinstance(action, StreamEnded):
            self._close_pcm()
        elif isinstance(action, CancelSpeculation):
            future = self._speculations.pop(action.key, None)
            if future is not None:
                future.cancel()  # dropped if still queued; a running job finishes unused
        elif isinstance(action, Close):
            self._request_close(action.reason)

    def _result_sent(self, action: Send) -> None:
        result = action.packet
        assert isinstance(result, Result)
        if result.sentiment is not None:
            self.server.stats.sentiment.add(result.sentiment)
        results_log = self.server.results_log
        if results_log is not None and action.context is not None:
            results_log.write(result_record(session_id=self.conn_id, user_id=self.session.user_id, stream_index=action.context.stream_index,
                                            result=result, language=action.context.language))

    def _backend_idle(self) -> bool:
        """Room for a speculation: nothing queued and two idle workers (one stays free for confirmed work)."""
        status = self.server.backend.status()
        return status.utterances_queued == 0 and sum(state is EngineState.IDLE for state in status.engines) >= 2

    async def _speculate(self, action: Speculate) -> None:
        if not self._backend_idle():
            return
        pcm = action.asr_samples().astype("<i2").tobytes()
        try:
            self._speculations[action.key] = await self.server.backend.submit(self.conn_id, pcm, sentiment=action.sentiment, language=action.language)
        except AsrError:
            return  # the confirmed utterance will be submitted (and fail) normally
        self.server.stats.speculations_started += 1

    async def _transcribe(self, action: Transcribe) -> None:
        future = self._speculations.pop(action.claims, None) if action.claims is not None else None
        if future is not None and not future.cancelled():
            self.server.stats.speculations_used += 1
        else:
            pcm = action.asr_samples().astype("<i2").tobytes()  # 16 kHz s16le for the ASR
            try:
                future = await self.server.backend.submit(self.conn_id, pcm, sentiment=action.sentiment, language=action.language)
            except AsrError as exc:
                self.log.error("cannot queue utterance: %s", exc)
                self._run_sync_actions(self.session.transcription_failed(action.ticket))
                return
        ticket = action.ticket

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                self.log.error("utterance %d failed: %s", ticket, exc)
                self._run_sync_actions(self.session.transcription_failed(ticket))
            else:
                got = fut.result()
                t = got.transcript
                self._run_sync_actions(self.session.transcription_done(ticket, t.text, got.sentiment, t.language, t.language_probability))

        future.add_done_callback(done)

    def _send_now(self, packet: Any) -> None:
        if self.writer.is_closing():
            return
        if isinstance(packet, Error):
            self.server.stats.errors[packet.reason] += 1
        self.writer.write(encode_packet(packet))
        limit = self.server.config.network.max_send_buffer_bytes
        if self.writer.transport.get_write_buffer_size() > limit:
            self.log.warning("peer is not reading (send buffer over %d bytes); dropping it", limit)
            self._request_close("peer not reading")
            self.writer.transport.abort()

    def _request_close(self, reason: str) -> None:
        if self._closing is None:
            self._closing = reason
        if not self._close_requested.done():
            self._close_requested.set_result(None)

    def _close_pcm(self) -> None:
        if self._pcm is not None:
            self._pcm.close()
            self._pcm = None
