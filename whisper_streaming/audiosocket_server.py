"""asyncio transport for Asterisk AudioSocket calls, on the same Session/pool pipeline as the TCP protocol.

One TCP connection is one call: the UUID frame, then audio frames (signed linear 16-bit at 8 kHz
for kind 0x10, 16 kHz for 0x12), then a hangup frame or EOF.  Each call becomes a
:class:`~whisper_streaming.session.Session` fed with a synthesized ``%u <uuid>`` and ``%b``
(stream options: the rate of the audio kind, ``pcm_s16le``, sentiment per config); each audio
frame is an ``%s``; hangup or EOF finishes the stream so the pending utterance is transcribed.

AudioSocket has no text channel back to Asterisk: results go to the JSONL results log and to the
server's one shared :class:`~whisper_streaming.webhook.WebhookSink` (``results.webhook_url``),
which never blocks the audio path.  A malformed frame ends that call only (logged).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Any

from .audiosocket import AudioFrame, AudioSocketDecoder, CallStarted, Dtmf, Hangup, RemoteError
from .errors import RemoteProtocolError
from .protocol import Audio, Begin, Error, Result, UserId
from .server import READ_CHUNK_BYTES, StreamingServer, _ConnLog, _Connection, finish_tasks
from .session import Send, Session
from .webhook import WebhookSink

__all__ = ["AudioSocketServer", "WEBHOOK_CLOSE_DEADLINE_S"]

log = logging.getLogger(__name__)

WEBHOOK_CLOSE_DEADLINE_S = 5.0


class AudioSocketServer:
    """The AudioSocket listener, sharing ``server``'s backend, limits, results log and stats."""

    def __init__(self, server: StreamingServer, *, webhook: WebhookSink | None = None) -> None:
        self.server = server
        self.config = server.config
        self.webhook = webhook
        self.calls_started = 0
        self._server: asyncio.base_events.Server | None = None
        self._calls: set[_Call] = set()
        self._ids = itertools.count(1)
        self.address: tuple[str, int] | None = None
        server.extra_status.append(lambda: f"audiosocket calls: {self.calls_started} (open {len(self._calls)})")

    async def start(self) -> tuple[str, int]:
        net = self.config.network
        self._server = await asyncio.start_server(self._accept, net.ip, self.config.audiosocket.port, limit=READ_CHUNK_BYTES * 2)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("audiosocket listening on %s:%d", *self.address)
        return self.address

    def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()

    async def shutdown(self) -> None:
        """Stop accepting; finish every open call (its results go out); close the webhook with a deadline."""
        if self._server is not None:
            self._server.close()
        for call in list(self._calls):
            call.begin_shutdown()
        await finish_tasks([c.task for c in self._calls if c.task is not None], self.config.server.shutdown_timeout_s, "audiosocket calls")
        if self.webhook is not None:
            stats = await self.webhook.aclose(WEBHOOK_CLOSE_DEADLINE_S)
            log.info("webhook closed: %s", stats)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.server.serve(_Call(self, reader, writer, f"a{next(self._ids)}"), self._calls)


class _Call(_Connection):
    """One AudioSocket call: the TCP connection's action executor, an AudioSocket read loop, no replies."""

    def __init__(self, owner: AudioSocketServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: str) -> None:
        super().__init__(owner.server, reader, writer, conn_id)
        self.owner = owner
        self.log = _ConnLog(log, {"conn": f"{conn_id} {self.peer}"})
        self.audio_decoder = AudioSocketDecoder()
        self.call_id: str | None = None
        self._rate: int | None = None

    async def run(self) -> None:
        refusal = self.server._admit(self)
        if refusal is not None:
            self.log.warning("call rejected: %s", refusal)
            return
        self.owner.calls_started += 1
        self.log.info("call connected")
        try:
            await self._call_loop(self.server.config.network.socket_timeout)
        finally:
            self.server.backend.cancel_session(self.conn_id)
            self._close_pcm()
            s = self.session
            self.log.info("call end: uuid=%s audio=%.1fs utterances=%d results=%d outcome=%s",
                          self.call_id, s.audio_s, s.utterances, s.results_sent, s.close_reason or self._closing or "closed")
            self._post({"event": "hangup", "call_id": self.call_id, "results": s.results_sent, "audio_s": round(s.audio_s, 2),
                        "reason": s.close_reason or self._closing or "closed"})

    async def _call_loop(self, timeout_s: float) -> None:
        while self._closing is None:
            try:
                data = await self._read(timeout_s)
            except asyncio.TimeoutError:
                if self._input_stopped or self.session.pending_transcriptions:
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
            if self._input_stopped:
                if not data:
                    await self._close_requested
                    break
                continue
            try:
                if data:
                    self.audio_decoder.receive_data(data)
                else:
                    self.audio_decoder.receive_eof()
                while self._closing is None and not self._input_stopped and (event := self.audio_decoder.next_event()) is not None:
                    await self._event(event)
            except RemoteProtocolError as exc:
                self.log.error("malformed AudioSocket data (%s: %s); ending this call", exc.reason, exc.detail)
                self._request_close(f"protocol error {exc.reason}")
                break
            if not data and not self._input_stopped:
                await self._hangup("hangup")

    async def _event(self, event: Any) -> None:
        if isinstance(event, CallStarted):
            self.call_id = str(event.uuid)
            self.log.info("call %s started", self.call_id)
        elif isinstance(event, AudioFrame):
            if self._rate is None:
                self._start_stream(event.sample_rate_hz)
                await self._execute(self.session.receive_packet(UserId(self.call_id or "?")))
                await self._execute(self.session.receive_packet(Begin()))
            elif event.sample_rate_hz != self._rate:
                self.log.error("audio frame at %d Hz in a %d Hz call; ending the call", event.sample_rate_hz, self._rate)
                self._request_close("sample rate changed")
                return
            await self._execute(self.session.receive_packet(Audio(event.pcm)))
        elif isinstance(event, Hangup):
            await self._hangup("hangup")
        elif isinstance(event, RemoteError):
            self.log.warning("Asterisk error frame, code %d; ending the call", event.code)
            await self._hangup("asterisk error")
        elif isinstance(event, Dtmf):
            self.log.info("DTMF %s", event.digit)

    def _start_stream(self, rate: int) -> None:
        self._rate = rate
        opts = self.server.session_options
        defaults = dataclasses.replace(opts.stream_defaults, sample_rate=rate, encoding="pcm_s16le")
        self.session = Session(dataclasses.replace(opts, stream_defaults=defaults))

    async def _hangup(self, reason: str) -> None:
        """Finish the stream (the pending utterance is transcribed and delivered), then close."""
        self._input_stopped = True
        await self._execute(self.session.shutdown(reason))
        if self._closing is None and self._rate is None:
            self._request_close(reason)  # no stream was ever started: nothing to flush

    def begin_shutdown(self) -> None:
        self._input_stopped = True
        self._run_sync_actions(self.session.shutdown())
        if self._rate is None:
            self._request_close("server shutdown")

    async def _linger_close(self) -> None:
        self.abort()  # Asterisk reads nothing back

    def _send_now(self, packet: Any) -> None:
        if isinstance(packet, Error):  # no text channel back: count and log it
            self.server.stats.errors[packet.reason] += 1
            self.log.warning("call ended with %s", packet.reason)

    def _result_sent(self, action: Send) -> None:
        super()._result_sent(action)
        result = action.packet
        assert isinstance(result, Result)
        s = result.sentiment
        self._post({
            "event": "result",
            "call_id": self.call_id,
            "start_s": round(result.start_s, 2),
            "end_s": round(result.end_s, 2),
            "text": result.text,
            "language": (action.context.language if action.context is not None else "") or None,
            "sentiment": None if s is None else s.label,
            "score": None if s is None or s.score is None else round(s.score, 4),
        })

    def _post(self, body: dict[str, Any]) -> None:
        if self.owner.webhook is not None and not self.owner.webhook.closed:
            self.owner.webhook.post_nowait(body)
