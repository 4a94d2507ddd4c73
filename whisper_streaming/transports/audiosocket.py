"""The Asterisk AudioSocket door, on the same runtime, sessions and workers as the TCP door.

One TCP connection is one call: the UUID frame, then audio frames (signed linear 16-bit at the
rate of the audio kind: 0x10 8 kHz, 0x11 12 kHz, 0x12 16 kHz ... 0x18 192 kHz), then a hangup
frame or EOF.  Each call becomes a session driven by commands: ``Identify(<uuid>)`` and
``BeginStream`` (stream options: ``pcm_s16le`` at the call's rate, the server's defaults
otherwise) at the first audio frame, an ``AudioChunk`` per audio frame; hangup or EOF finishes
the stream so the pending utterance is transcribed.  8 and 16 kHz audio goes to the session as
it is; any other rate is resampled to 16 kHz on arrival
(:class:`~whisper_streaming.core.audio_format.StreamResampler`, soxr HQ), so every kind
Asterisk sends is transcribed (result times are the call's seconds either way).

AudioSocket has no text channel back to Asterisk: results go to the runtime's sinks (the JSONL
results log, the webhook ``results.webhook_url``), which never block the audio path; a call's
sink events carry its UUID as ``call_id``.  A malformed frame ends that call only (logged).

Neither TLS nor tokens (config ``tls``, ``auth``) apply to this port: Asterisk's AudioSocket
speaks plain TCP and has no way to send a token, so calls are never asked for one.  Keep the
port on a private network (``network.ip``, a firewall) when the other doors need tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ, SAMPLE_RATES_HZ, StreamResampler
from whisper_streaming.errors import ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import AudioChunk, BeginStream, Identify, Output, SessionFailed
from whisper_streaming.pipeline.session import SessionOptions
from whisper_streaming.runtime.driver import ConnectionLog, SessionDriver
from whisper_streaming.runtime.runtime import Runtime, finish_tasks
from whisper_streaming.sinks.base import SessionInfo
from whisper_streaming.wire.audiosocket import AudioFrame, AudioSocketDecoder, CallStarted, Dtmf, Hangup, RemoteError

__all__ = ["AudioSocketOptions", "AudioSocketTransport", "READ_CHUNK_BYTES"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 65536


@dataclass(frozen=True)
class AudioSocketOptions:
    """``host``/``port`` to listen on (0: any free port); ``identify_timeout_s``: the UUID frame
    must come this soon after connecting (no session slot is taken before it);
    ``idle_timeout_s``: a call without a frame for this long is ended (not while its
    transcriptions are pending); ``max_call_s``: seconds of audio after which a call is finished
    and ended (``STREAM_TOO_LONG``; None: only ``server.max_stream_s``)."""

    host: str = "127.0.0.1"
    port: int = 0
    identify_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    max_call_s: float | None = 14400.0


class AudioSocketTransport:
    """The AudioSocket listener, composed with a :class:`~whisper_streaming.runtime.runtime.Runtime`."""

    name = "audiosocket"

    def __init__(self, runtime: Runtime, options: AudioSocketOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.calls_started = 0
        self._server: asyncio.base_events.Server | None = None
        self._calls: set[_Call] = set()
        self._ids = itertools.count(1)
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, self.options.host, self.options.port, limit=READ_CHUNK_BYTES * 2)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("audiosocket listening on %s:%d", *self.address)
        return self.address

    def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()

    def status_lines(self) -> list[str]:
        return [f"audiosocket calls: {self.calls_started} (open {len(self._calls)})"]

    async def shutdown(self) -> None:
        """Stop accepting; finish every open call (its results go to the sinks)."""
        self.close_listener()
        for call in list(self._calls):
            call.begin_shutdown()
        await finish_tasks([c.task for c in self._calls if c.task is not None], self.runtime.stream_time_left(), "audiosocket calls",
                           before_cancel=self._cut_calls)

    def _cut_calls(self) -> None:
        """``shutdown_timeout_s`` is over: the calls still open end with ``SHUTTING_DOWN`` (logged, counted, in the sinks)."""
        for call in list(self._calls):
            call.log.warning("results still owed at the shutdown deadline: call ended with SHUTTING_DOWN")
            self.runtime.record_refusal(ErrorReason.SHUTTING_DOWN)
            call.driver.request_close(ErrorReason.SHUTTING_DOWN.value)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.runtime.serve(_Call(self, reader, writer, f"a{next(self._ids)}"), self._calls)


def _call_session_options(options: SessionOptions, max_call_s: float | None) -> SessionOptions:
    """The session options with the call length limit (the shorter of it and ``server.max_stream_s``),
    without a token check (Asterisk cannot send a token)."""
    if options.tokens is not None:
        options = dataclasses.replace(options, tokens=None)
    if max_call_s is None:
        return options
    limit = int(max_call_s * options.vad.sample_rate_hz)
    if options.max_stream_samples is not None and options.max_stream_samples <= limit:
        return options
    return dataclasses.replace(options, max_stream_samples=limit)


class _Call:
    """One AudioSocket call: an AudioSocket read loop; no replies to the peer."""

    def __init__(self, door: AudioSocketTransport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: str) -> None:
        self.door = door
        self.runtime = door.runtime
        self.reader = reader
        self.writer = writer
        self.conn_id = conn_id
        peer = writer.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.log = ConnectionLog(log, {"conn": f"{conn_id} {self.peer}"})
        self.decoder = AudioSocketDecoder()
        self.call_id: str | None = None
        self._rate: int | None = None
        self._resampler: StreamResampler | None = None  # for a rate the session does not take as is
        self.driver: SessionDriver = self.runtime.open_session(SessionInfo(conn_id, "audiosocket", self.peer), self, self.log,
                                                               options=_call_session_options(self.runtime.options.session, door.options.max_call_s))
        self.task: asyncio.Task[Any] | None = None

    # -------------------------------------------------------------- Peer

    def deliver(self, output: Output) -> None:
        if isinstance(output, SessionFailed):  # no text channel back: log it (the runtime counts it)
            self.log.warning("call ended with %s", output.reason)

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        started = await self._await_uuid(self.door.options.identify_timeout_s)
        if started is None:
            return
        refusal = self.runtime.admit(self.driver, self.peer_ip)
        if refusal is not None:
            self.log.warning("call rejected: %s", refusal)
            return
        self.door.calls_started += 1
        self.log.info("call connected")
        try:
            await self._event(started)
            if await self._process_events(None):
                await self._call_loop(self.door.options.idle_timeout_s)
        finally:
            s = self.driver.session
            self.log.info("call end: uuid=%s audio=%.1fs utterances=%d results=%d outcome=%s",
                          self.call_id, s.audio_s, s.utterances, s.results_sent, s.close_reason or self.driver.closing or "closed")

    async def _call_loop(self, timeout_s: float) -> None:
        driver = self.driver
        while driver.closing is None:
            try:
                data = await self._read(timeout_s)
            except asyncio.TimeoutError:
                if driver.input_stopped or driver.pending_transcriptions:
                    continue  # waiting for our own transcriptions
                self.log.info("no frame for %.0f s; ending the call", timeout_s)
                await self._hangup("timeout")
                break
            except (ConnectionError, OSError) as exc:
                self.log.info("connection lost: %s", exc)
                await self._hangup("connection lost")
                break
            if data is None:
                break
            if driver.input_stopped:
                if not data:
                    await driver.close_requested
                    break
                continue
            if not await self._process_events(data):
                break

    async def _process_events(self, data: bytes | None) -> bool:
        """Feed what a read gave (``b""``: EOF; None: nothing new, act on the frames buffered with
        the UUID) and act on every complete frame.  False: the call ends (malformed data)."""
        driver = self.driver
        eof = data == b""
        try:
            if data:
                self.decoder.receive_data(data)
            elif eof:
                self.decoder.receive_eof()
            while driver.closing is None and not driver.input_stopped and (event := self.decoder.next_event()) is not None:
                await self._event(event)
        except RemoteProtocolError as exc:
            self.log.error("malformed AudioSocket data (%s: %s); ending this call", exc.reason, exc.detail)
            driver.request_close(f"protocol error {exc.reason}")
            return False
        if eof and not driver.input_stopped:
            await self._hangup("hangup")
        return True

    async def _await_uuid(self, timeout_s: float) -> CallStarted | None:
        """The call's UUID frame (it must come first), within ``timeout_s``; no slot is taken before it.

        None: the peer closed, sent something else first (logged), or nothing in time.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        data = b""
        while True:
            try:
                if data:
                    self.decoder.receive_data(data)  # checks each frame header as it arrives
                event = self.decoder.next_event()
            except RemoteProtocolError as exc:
                self.log.error("malformed AudioSocket data (%s: %s) before the UUID; closing", exc.reason, exc.detail)
                return None
            if event is not None:
                assert isinstance(event, CallStarted)  # the decoder refuses any other first frame
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(READ_CHUNK_BYTES), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                self.log.info("no UUID frame within %.0f s; closing", timeout_s)
                return None
            except (ConnectionError, OSError):
                return None
            if not data:
                return None

    async def _read(self, timeout_s: float) -> bytes | None:
        """Read what arrived; ``None`` if a close was requested meanwhile.

        Raises:
            asyncio.TimeoutError: nothing within ``timeout_s``.
        """
        return await self.driver.read_or_close(self.reader.read(READ_CHUNK_BYTES), timeout_s)

    async def _event(self, event: Any) -> None:
        if isinstance(event, CallStarted):
            self.call_id = str(event.uuid)
            self.driver.info = dataclasses.replace(self.driver.info, call_id=self.call_id)
            self.log.info("call %s started", self.call_id)
        elif isinstance(event, AudioFrame):
            if self._rate is None:
                self._start_stream(event.sample_rate_hz)
                await self.driver.handle(Identify(self.call_id or "?"))
                await self.driver.handle(BeginStream())
            elif event.sample_rate_hz != self._rate:
                self.log.error("audio frame at %d Hz in a %d Hz call; ending the call", event.sample_rate_hz, self._rate)
                self.driver.request_close("sample rate changed")
                return
            pcm = event.pcm if self._resampler is None else self._resampler.process(event.pcm)
            if pcm:
                await self.driver.handle(AudioChunk(pcm))
        elif isinstance(event, Hangup):
            await self._hangup("hangup")
        elif isinstance(event, RemoteError):
            self.log.warning("Asterisk error frame, code %d; ending the call", event.code)
            await self._hangup("asterisk error")
        elif isinstance(event, Dtmf):
            self.log.info("DTMF %s", event.digit)

    def _start_stream(self, rate: int) -> None:
        """The call's stream options: its audio kind's rate (or 16 kHz, resampled), s16le, the server's defaults otherwise."""
        self._rate = rate
        stream_rate = rate
        if rate not in SAMPLE_RATES_HZ:
            self._resampler = StreamResampler(rate, ASR_SAMPLE_RATE_HZ)
            stream_rate = ASR_SAMPLE_RATE_HZ
            self.log.info("audio at %d Hz: resampled to %d Hz", rate, stream_rate)
        opts = self.runtime.options.session
        defaults = dataclasses.replace(opts.stream_defaults, sample_rate=stream_rate, encoding="pcm_s16le")
        self.driver.session.stream_options = defaults

    async def _hangup(self, reason: str) -> None:
        """Finish the stream (the pending utterance is transcribed and delivered), then close."""
        if self._resampler is not None and not self.driver.input_stopped and self.driver.closing is None:
            tail, self._resampler = self._resampler.flush(), None
            if tail:
                await self.driver.handle(AudioChunk(tail))
        await self.driver.finish(reason)
        if self.driver.closing is None and self._rate is None:
            self.driver.request_close(reason)  # no stream was ever started: nothing to flush

    def begin_shutdown(self) -> None:
        self.driver.begin_shutdown()
        if self._rate is None:
            self.driver.request_close("server shutdown")

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()  # Asterisk reads nothing back: no lingering close
