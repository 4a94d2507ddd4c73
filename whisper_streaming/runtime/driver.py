"""Runs one session's actions against the backend, the sinks and the peer (any door).

A door (transport) owns the bytes; for each connection it builds a :class:`SessionDriver`
through :meth:`~whisper_streaming.runtime.runtime.Runtime.open_session`, feeds it the peer's
commands (:meth:`SessionDriver.handle`) and gets outputs back through its :class:`Peer`
(``deliver``: render and write, or drop for a door with no way back).  The driver carries out
everything else the session asks: submit utterances to the backend (with backpressure), claim
or cancel speculations, publish results and audio to the sinks, answer status requests, and
ask the door to close (:attr:`SessionDriver.close_requested`).

Speculative transcription: when the session offers a tentative utterance (its audio is final,
the endpoint is still ``silence_frames * frame_ms - trailing_ms`` away) while the runtime has
room for it (:meth:`~whisper_streaming.runtime.runtime.Runtime.room_for_speculation`: nothing
queued and an idle engine, or two with ``server.speculation_idle_engines: 2``), the utterance is
submitted at once (without room, the offer is kept and submitted after a later command that
finds room, until the endpoint or resumed speech overtakes it); the :class:`Transcribe` that
confirms it takes the job over, so the result is ready up to that much sooner.  Room includes
the backend's word that this session's job would start at once
(:meth:`~whisper_streaming.backends.base.AsrBackend.starts_at_once`): a speculation must never
wait in the queue, where it would hold back every other session's.  A speculation that is
withdrawn (speech resumed) is cancelled; an engine that supports it stops the job after its
encoder pass (``should_stop``).  Nearly every
speculation is confirmed on real speech, so running one on the last idle engine mostly does
work that the endpoint would have queued 300 ms later anyway; under load (nothing idle) nothing
is speculated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Hashable, MutableMapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from whisper_streaming.backends.base import AsrBackend, UtteranceJob, UtteranceResult
from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.errors import AsrError, ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import Command, Identify, Output, SessionFailed, SpeakerEnrolled, StatusReport
from whisper_streaming.pipeline.session import (
    Action,
    CancelSpeculation,
    Close,
    DecodePartial,
    Deliver,
    LoadVoices,
    Session,
    Speculate,
    StatusRequested,
    StreamAudio,
    StreamEnded,
    StreamStarted,
    Transcribe,
)
from whisper_streaming.runtime.stats import RuntimeStats
from whisper_streaming.sinks.voices import VoiceStore
from whisper_streaming.sinks.base import SessionClosed, SessionInfo, Sink, SinkEvent, StreamAudioReceived, StreamClosed, StreamOpened

__all__ = ["Peer", "SessionHost", "ConnectionLog", "SessionDriver"]


class Peer(Protocol):
    """What a door gives the driver: a way to hand the peer one output."""

    def deliver(self, output: Output) -> None:
        """Render ``output`` for the peer and write it (never blocks; a door without a way back logs it)."""
        ...


class SessionHost(Protocol):
    """What a driver needs from the runtime (:class:`~whisper_streaming.runtime.runtime.Runtime`)."""

    backend: AsrBackend
    stats: RuntimeStats
    sinks: Sequence[Sink]
    voices: VoiceStore | None

    def publish(self, event: SinkEvent) -> None: ...

    def result_delivered(self, info: SessionInfo, result: FinalResult) -> None: ...

    def room_for_speculation(self, session_key: Hashable) -> bool: ...

    def status_text(self) -> str: ...

    def limited_status_text(self) -> str: ...


class ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with the connection id (and peer): ``[c7 127.0.0.1:5000] ...``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['conn']}] {msg}", kwargs  # type: ignore[index]


class SessionDriver:
    """One session of any door: the action executor. See the module docstring.

    Attributes:
        session: the sans-IO session it drives.
        info: who the session is (updated when the peer identifies itself).
        closing: why the connection is closing (None while open).
        close_requested: resolved once a close is requested (the door's read loop waits on it too).
        input_stopped: the door must ignore further input (EOF, hangup, server shutdown).
    """

    def __init__(self, runtime: SessionHost, session: Session, info: SessionInfo, peer: Peer, log: logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self.runtime = runtime
        self.session = session
        self.info = info
        self.peer = peer
        self.log = log
        self.closing: str | None = None
        self.input_stopped = False
        self.close_requested: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._speculations: dict[int, asyncio.Future[UtteranceResult]] = {}  # Speculate.key -> running transcription
        self._deferred: Speculate | None = None  # offered when there was no room; retried until claimed or cancelled
        self._in_flight: set[asyncio.Future[UtteranceResult]] = set()  # confirmed transcriptions not reported yet
        self._partial_future: asyncio.Future[UtteranceResult] | None = None  # the partial decode outstanding
        self._end_published = False
        self._stream_index = -1
        self._closed = False
        self.admitted = False  # set by the runtime's admission
        self.peer_ip = "?"
        self._stream_rate = DEFAULT_SAMPLE_RATE_HZ  # Hz of the open stream's audio (StreamStarted)
        self._endpoints: dict[tuple[int, float, float], float] = {}  # utterance -> loop time of its endpoint (final latency)

    @property
    def pending_transcriptions(self) -> int:
        return self.session.pending_transcriptions

    # -------------------------------------------------------------- inputs

    async def handle(self, command: Command) -> None:
        """Give the session one command from the peer and carry out what it asks (awaits backpressure)."""
        actions = self.session.handle(command)
        if isinstance(command, Identify) and self.session.user_id != self.info.user_id:  # the sinks see who it is from now on
            self.info = replace(self.info, user_id=self.session.user_id)
        await self.execute(actions)
        deferred = self._deferred
        if deferred is not None and not self._closed and not self.input_stopped \
                and self.runtime.room_for_speculation(self.info.session_id):
            self._deferred = None  # an engine freed up before the endpoint: start it now
            await self._speculate(deferred)

    async def protocol_error(self, exc: RemoteProtocolError) -> None:
        self.log.warning("protocol error %s: %s", exc.reason, exc.detail)
        await self.execute(self.session.protocol_error(exc))

    async def timeout(self) -> None:
        await self.execute(self.session.timeout())

    async def finish(self, reason: str) -> None:
        """The peer is done sending (EOF, hangup): finish the open stream, deliver, then close."""
        self.input_stopped = True
        await self.execute(self.session.shutdown(reason))

    def begin_shutdown(self) -> None:
        """Server shutdown: stop reading input, finish the open stream, close when flushed."""
        self.input_stopped = True
        self.run_sync_actions(self.session.shutdown())

    async def read_or_close(self, read: Awaitable[bytes], timeout_s: float) -> bytes | None:
        """Await the door's ``read``; None if a close was requested first (the read is cancelled).

        Raises:
            asyncio.TimeoutError: neither within ``timeout_s`` (the read is cancelled).
            ConnectionError, OSError: from the read.
        """
        task = asyncio.ensure_future(read)
        done, _ = await asyncio.wait((task, self.close_requested), timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.close_requested.done():
            return None
        raise asyncio.TimeoutError

    def request_close(self, reason: str) -> None:
        if self.closing is None:
            self.closing = reason
        if not self.close_requested.done():
            self.close_requested.set_result(None)

    def close(self) -> None:
        """Drop queued work and speculations, close the sinks' stream state, publish the end (idempotent).

        A transcription a worker is already running cannot be stopped: its result still goes to
        the sinks (not to the peer, which is gone), and :class:`SessionClosed` is published after
        the last of them, so a sink never sees a result after its session's end.
        """
        if self._closed:
            return
        self._closed = True
        self._deferred = None
        for future in self._speculations.values():
            future.cancel()
        self._speculations.clear()
        if self._partial_future is not None:
            self._partial_future.cancel()
        self.runtime.backend.cancel_session(self.info.session_id)
        if self._stream_index >= 0:
            self.runtime.publish(StreamClosed(self.info, self._stream_index))
            self._stream_index = -1
        self._in_flight = {f for f in self._in_flight if not f.done()}
        if not self._in_flight:
            self._publish_end()

    def _publish_end(self) -> None:
        if self._end_published or not self.admitted:
            return
        self._end_published = True
        s = self.session
        self.runtime.publish(SessionClosed(self.info, s.results_sent, s.audio_s, s.close_reason or self.closing or "closed"))

    # -------------------------------------------------------------- actions

    async def execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transcribe):
                await self._transcribe(action)
            elif isinstance(action, Speculate):
                await self._speculate(action)
            elif isinstance(action, DecodePartial):
                await self._decode_partial(action)
            else:
                self._run_sync_action(action)

    def run_sync_actions(self, actions: list[Action]) -> None:
        """Carry out ``actions`` without awaiting (from callbacks): transcriptions are queued in a task."""
        for action in actions:
            if isinstance(action, Transcribe):  # only from shutdown/flush; queue without waiting
                asyncio.get_running_loop().create_task(self._transcribe(action))
            elif isinstance(action, Speculate):
                pass  # optional, and never produced outside the audio path
            elif isinstance(action, DecodePartial):  # never produced outside the audio path; keep the session's state right
                self.run_sync_actions(self.session.partial_refused(action.key))
            else:
                self._run_sync_action(action)

    def _run_sync_action(self, action: Action) -> None:
        if isinstance(action, StreamAudio):  # every audio packet: build no event that no sink will see
            self.runtime.stats.audio_in_s += len(action.pcm) / (2 * self._stream_rate)
            if self._stream_index >= 0 and self.runtime.sinks:
                self.runtime.publish(StreamAudioReceived(self.info, self._stream_index, action.pcm))
        elif isinstance(action, Deliver):
            self._deliver(action.output)
        elif isinstance(action, StatusRequested):
            self.peer.deliver(StatusReport(self.runtime.limited_status_text() if action.limited else self.runtime.status_text()))
        elif isinstance(action, StreamStarted):
            self.log.info("stream %d started (user %r)", action.stream_index, action.user_id)
            if self.info.user_id != action.user_id:
                self.info = replace(self.info, user_id=action.user_id)
            self._stream_index = action.stream_index
            self._stream_rate = action.sample_rate_hz
            self.runtime.publish(StreamOpened(self.info, action.stream_index, action.sample_rate_hz))
        elif isinstance(action, StreamEnded):
            self.runtime.publish(StreamClosed(self.info, action.stream_index))
            self._stream_index = -1
        elif isinstance(action, CancelSpeculation):
            if self._deferred is not None and self._deferred.key == action.key:
                self._deferred = None
            future = self._speculations.pop(action.key, None)
            if future is not None:
                future.cancel()  # dropped if still queued; a running job stops after its encoder pass (ProcessPool)
        elif isinstance(action, Close):
            self.request_close(action.reason)
        elif isinstance(action, LoadVoices):
            self._load_voices(action)

    def _load_voices(self, action: LoadVoices) -> None:
        store = self.runtime.voices
        found = {name: store.load(name) if store is not None else None for name in action.names}
        self.log.info("saved voices %s: %s", ", ".join(action.names), "loaded" if all(found.values()) else "missing")
        self.run_sync_actions(self.session.voices_loaded(found))

    def _save_voice(self, enrolled: SpeakerEnrolled) -> None:
        self.log.info("speaker %r enrolled from %.1f s of speech", enrolled.name, enrolled.speech_s)
        store = self.runtime.voices
        if store is None:
            return
        try:
            if store.save(enrolled.name, enrolled.voice) is None:
                self.log.warning("a voice named %r is saved already; kept (speakers.replace_saved is off)", enrolled.name)
        except OSError as exc:  # the session keeps its enrolled voice; only the saved copy is missing
            self.log.error("cannot save the voice of %r: %s", enrolled.name, exc)

    def _deliver(self, output: Output) -> None:
        if isinstance(output, SpeakerEnrolled):
            self._save_voice(output)
        if isinstance(output, FinalResult):
            self._count_final(output)
            self.runtime.result_delivered(self.info, output)
        elif isinstance(output, PartialHypothesis):
            if self._closed:
                return
            self.runtime.stats.partials_sent += 1
        elif isinstance(output, SessionFailed):
            if self._closed:
                return  # e.g. a late ASR failure after the peer left: nobody to tell, nothing to count
            self.runtime.stats.errors[output.reason.value] += 1
        if not self._closed:
            self.peer.deliver(output)

    def _count_final(self, result: FinalResult) -> None:
        """Count a final result and its latency from its utterance's endpoint (:meth:`_transcribe`
        noted it; utterances that gave no text are skipped: results leave in cut order)."""
        stats = self.runtime.stats
        stats.finals += 1
        key = (result.stream_index, result.start_s, result.end_s)
        if key not in self._endpoints:
            return
        while self._endpoints:
            earlier, t0 = next(iter(self._endpoints.items()))
            del self._endpoints[earlier]
            if earlier == key:
                stats.final_latency.observe(max(0.0, asyncio.get_running_loop().time() - t0))
                return

    async def _speculate(self, action: Speculate) -> None:
        """Submit the tentative utterance if the runtime has room now; else keep it, and
        :meth:`handle` tries again after each later command (an engine that frees up before the
        endpoint starts it then) until a :class:`Transcribe` claims it or it is cancelled."""
        if not self.runtime.room_for_speculation(self.info.session_id):
            self._deferred = action
            return
        job = UtteranceJob(action.asr_samples().astype("<i2").tobytes(), action.language, action.analyses)
        try:
            future = self._speculations[action.key] = await self.runtime.backend.submit(self.info.session_id, job)
        except AsrError:
            return  # the confirmed utterance will be submitted (and fail) normally
        self.runtime.stats.speculations_started += 1

        def done(fut: asyncio.Future[UtteranceResult]) -> None:
            """Tell the session the text: one that ends a sentence may end the utterance sooner."""
            if self._closed or fut.cancelled() or fut.exception() is not None or self._speculations.get(action.key) is not fut:
                return
            self.run_sync_actions(self.session.speculation_done(action.key, fut.result().transcript.text))

        future.add_done_callback(done)

    async def _decode_partial(self, action: DecodePartial) -> None:
        """Run a partial decode only when it delays nothing (nothing queued, two engines idle), as a
        cheap decode; report back to the session either way."""
        runtime = self.runtime
        if self._closed or not runtime.room_for_partial():
            runtime.stats.partials_refused += 1
            self.run_sync_actions(self.session.partial_refused(action.key))
            return
        job = UtteranceJob(action.asr_samples().astype("<i2").tobytes(), action.language, partial=True)
        try:
            future = await runtime.backend.submit(self.info.session_id, job)
        except AsrError:
            self.run_sync_actions(self.session.partial_refused(action.key))
            return
        runtime.stats.partials_decoded += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._partial_future = future

        def done(fut: asyncio.Future[UtteranceResult]) -> None:
            if self._partial_future is fut:
                self._partial_future = None
            if self._closed:
                return
            if fut.cancelled() or fut.exception() is not None:
                self.run_sync_actions(self.session.partial_refused(action.key))
            else:
                self.run_sync_actions(self.session.partial_done(action.key, fut.result().transcript.text, loop.time() - started))

        future.add_done_callback(done)

    async def _transcribe(self, action: Transcribe) -> None:
        partial = self._partial_future
        if partial is not None and not partial.done():  # its utterance has ended: the session would drop its text,
            partial.cancel()  # so its worker stops after the encoder (ProcessPool); the session counts it dropped
        if self._deferred is not None and self._deferred.key == action.claims:
            self._deferred = None  # the endpoint came first: the utterance is queued as confirmed below
        u = action.utterance  # its endpoint is now: the final latency is counted from here (backpressure included)
        self._endpoints[(action.stream_index, u.start_s, u.end_s)] = asyncio.get_running_loop().time()
        future = self._speculations.pop(action.claims, None) if action.claims is not None else None
        if future is not None and not future.cancelled():
            self.runtime.stats.speculations_used += 1
        else:
            job = UtteranceJob(action.asr_samples().astype("<i2").tobytes(), action.language, action.analyses)  # 16 kHz s16le
            try:
                future = await self.runtime.backend.submit(self.info.session_id, job)
            except AsrError as exc:
                self.log.error("cannot queue utterance: %s", exc)
                self.run_sync_actions(self.session.transcription_failed(action.ticket, exc.reason))
                return
        ticket = action.ticket
        self._in_flight.add(future)

        def done(fut: asyncio.Future[UtteranceResult]) -> None:
            self._in_flight.discard(fut)
            try:
                if fut.cancelled():
                    return
                exc = fut.exception()
                if exc is not None:
                    self.log.error("utterance %d failed: %s", ticket, exc)
                    reason = exc.reason if isinstance(exc, AsrError) else ErrorReason.ASR_FAILED
                    self.run_sync_actions(self.session.transcription_failed(ticket, reason))
                else:
                    got = fut.result()
                    t = got.transcript
                    self.run_sync_actions(self.session.transcription_done(ticket, t.text, got.annotations, t.language, t.language_probability,
                                                                          transcript=t))
            finally:
                if self._closed and not self._in_flight:
                    self._publish_end()

        future.add_done_callback(done)
