"""Per-connection session state machine (sans-IO).

Packets in, actions out; no sockets, no clock, no model.  A transport (the TCP server, later
telephony or WebSocket ingress) decodes packets, feeds them to :meth:`Session.receive_packet`
and carries out the returned actions in order: send a packet, transcribe an utterance, record
audio, close.  When a transcription finishes, the transport calls
:meth:`Session.transcription_done` (or ``_failed``) and carries out what that returns.

States::

    AWAIT_USER --%u--> READY --%b--> STREAMING --%f--> READY (after every %R, then %F)
    any --protocol error / timeout / ASR failure--> CLOSED (after %E)

Output order: results leave in the order their utterances were cut, and ``%F`` leaves after
every result of its stream, even when utterances finish out of order on several workers
(an ordered output queue of slots; a slot is either ready packets or a pending
transcription).  A client may pipeline ``%f`` and the next ``%b`` without waiting for ``%F``.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Union

from .errors import RemoteProtocolError
from .protocol import (
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Packet,
    Result,
    StatusRequest,
    UserId,
    Welcome,
)
from .vad import Utterance, VadOptions, VadSegmenter

__all__ = [
    "SessionState",
    "SessionOptions",
    "Send",
    "Transcribe",
    "StreamStarted",
    "StreamAudio",
    "StreamEnded",
    "StatusRequested",
    "Close",
    "Action",
    "Session",
]


class SessionState(enum.Enum):
    AWAIT_USER = "await_user"
    READY = "ready"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionOptions:
    """``max_stream_samples``: a stream longer than this is finished, then ``%E STREAM_TOO_LONG``."""

    vad: VadOptions = field(default_factory=VadOptions)
    welcome_message: str = "Welcome!"
    max_stream_samples: int | None = None


@dataclass(frozen=True)
class Send:
    """Send this packet to the peer."""

    packet: Packet


@dataclass(frozen=True, eq=False)
class Transcribe:
    """Transcribe ``utterance``; report back with its ``ticket``."""

    ticket: int
    utterance: Utterance
    stream_index: int


@dataclass(frozen=True)
class StreamStarted:
    stream_index: int
    user_id: str


@dataclass(frozen=True)
class StreamAudio:
    """Audio accepted for the current stream (s16le bytes), e.g. for PCM saving."""

    pcm: bytes


@dataclass(frozen=True)
class StreamEnded:
    stream_index: int


@dataclass(frozen=True)
class StatusRequested:
    """Answer with ``%C`` (the transport knows the server-wide status)."""


@dataclass(frozen=True)
class Close:
    """Close the connection (after sending everything before this action)."""

    reason: str


Action = Union[Send, Transcribe, StreamStarted, StreamAudio, StreamEnded, StatusRequested, Close]


@dataclass
class _Slot:
    packets: list[Packet]
    ticket: int | None = None  # pending while not None
    start_s: float = 0.0
    end_s: float = 0.0


class Session:
    """The protocol state of one connection. See the module docstring.

    Args:
        options: VAD and welcome options.
        segmenter_factory: builds one segmenter per stream (injectable for tests).
    """

    def __init__(self, options: SessionOptions | None = None, *, segmenter_factory: Callable[[VadOptions], VadSegmenter] = VadSegmenter) -> None:
        self.options = options or SessionOptions()
        self._segmenter_factory = segmenter_factory
        self.state = SessionState.AWAIT_USER
        self.user_id: str | None = None
        self.stream_index = -1
        self._segmenter: VadSegmenter | None = None
        self._tickets = itertools.count()
        self._outputs: deque[_Slot] = deque()
        self._pending: dict[int, _Slot] = {}
        self._close_when_drained: str | None = None
        self._close_error: str | None = None  # %E reason sent just before that close
        self._stream_samples = 0
        # statistics for logs and status
        self.audio_samples = 0
        self.utterances = 0
        self.results_sent = 0
        self.close_reason: str | None = None

    # ------------------------------------------------------------------ inputs

    @property
    def pending_transcriptions(self) -> int:
        return len(self._pending)

    @property
    def audio_s(self) -> float:
        return self.audio_samples / self.options.vad.sample_rate_hz

    def receive_packet(self, packet: Packet) -> list[Action]:
        """Handle one decoded client packet; returns the actions to carry out in order.

        After :meth:`shutdown` (or once closed) input is ignored: the stream was already finished.
        """
        if self.state is SessionState.CLOSED or self._close_when_drained is not None:
            return []
        if isinstance(packet, Audio):  # the hot path first
            if self.state is not SessionState.STREAMING:
                return self._error("AUDIO_BEFORE_BEGIN", "%s before %b")
            assert self._segmenter is not None
            pcm = packet.pcm
            limit = self.options.max_stream_samples
            too_long = limit is not None and self._stream_samples + len(pcm) // 2 >= limit
            if too_long:
                pcm = pcm[: 2 * (limit - self._stream_samples)]  # type: ignore[operator]
            self._stream_samples += len(pcm) // 2
            self.audio_samples += len(pcm) // 2
            actions: list[Action] = [StreamAudio(pcm)]
            actions.extend(self._submit(u) for u in self._segmenter.feed(pcm))
            if too_long:
                actions += self._finish_stream()
                self._close_when_drained = self._close_error = "STREAM_TOO_LONG"
                actions += self._drain()
            return actions
        if isinstance(packet, StatusRequest):
            return [StatusRequested()]
        if isinstance(packet, UserId):
            if self.user_id is not None:
                return self._error("DUPLICATE_USER", "a second %u")
            self.user_id = packet.user_id
            self.state = SessionState.READY
            return self._emit(Welcome(self.options.welcome_message))
        if isinstance(packet, Begin):
            if self.state is SessionState.AWAIT_USER:
                return self._error("BEGIN_BEFORE_USER", "%b before %u")
            if self.state is SessionState.STREAMING:
                return self._error("ALREADY_STREAMING", "%b while a stream is open")
            self.state = SessionState.STREAMING
            self.stream_index += 1
            self._stream_samples = 0
            self._segmenter = self._segmenter_factory(self.options.vad)
            assert self.user_id is not None
            return [StreamStarted(self.stream_index, self.user_id)]
        if isinstance(packet, Finish):
            if self.state is not SessionState.STREAMING:
                return self._error("FINISH_BEFORE_BEGIN", "%f without an open stream")
            return self._finish_stream()
        return self._error("UNEXPECTED_PACKET", f"{type(packet).__name__} is not a client packet")

    def protocol_error(self, exc: RemoteProtocolError) -> list[Action]:
        """The codec rejected the peer's bytes: ``%E <reason>``, close."""
        if self.state is SessionState.CLOSED:
            return []
        return self._error(exc.reason, exc.detail)

    def timeout(self) -> list[Action]:
        """No packet for ``network.socket_timeout`` seconds."""
        if self.state is SessionState.CLOSED:
            return []
        return self._error("TIMEOUT", "no packet within the socket timeout")

    def shutdown(self, reason: str = "server shutdown") -> list[Action]:
        """Finish an open stream as if ``%f`` arrived (results, then ``%F``), then close.

        Used when the server stops and when the peer half-closes (EOF) its side.
        """
        if self.state is SessionState.CLOSED or self._close_when_drained is not None:
            return []
        actions = self._finish_stream() if self.state is SessionState.STREAMING else []
        self._close_when_drained = reason
        return actions + self._drain()

    def transcription_done(self, ticket: int, text: str) -> list[Action]:
        """The transcript of ``ticket`` arrived; empty text sends no ``%R``."""
        slot = self._pending.pop(ticket, None)
        if slot is None or self.state is SessionState.CLOSED:
            return []
        text = text.strip()
        if text:
            slot.packets.append(Result(slot.start_s, slot.end_s, text))
        slot.ticket = None
        return self._drain()

    def transcription_failed(self, ticket: int, reason: str = "ASR_FAILED") -> list[Action]:
        """The transcription of ``ticket`` failed after its retry: this session alone ends."""
        if self._pending.pop(ticket, None) is None:
            return []
        return self._error(reason, "transcription failed")

    # ------------------------------------------------------------------ internals

    def _submit(self, utterance: Utterance) -> Transcribe:
        ticket = next(self._tickets)
        slot = _Slot([], ticket, utterance.start_s, utterance.end_s)
        self._outputs.append(slot)
        self._pending[ticket] = slot
        self.utterances += 1
        return Transcribe(ticket, utterance, self.stream_index)

    def _finish_stream(self) -> list[Action]:
        assert self._segmenter is not None
        actions: list[Action] = [self._submit(u) for u in self._segmenter.flush()]
        self._segmenter = None
        self.state = SessionState.READY
        actions.append(StreamEnded(self.stream_index))
        self._outputs.append(_Slot([Finished()]))
        return actions + self._drain()

    def _emit(self, packet: Packet) -> list[Action]:
        self._outputs.append(_Slot([packet]))
        return self._drain()

    def _drain(self) -> list[Action]:
        actions: list[Action] = []
        while self._outputs and self._outputs[0].ticket is None:
            for packet in self._outputs.popleft().packets:
                if isinstance(packet, Result):
                    self.results_sent += 1
                actions.append(Send(packet))
        if self._close_when_drained is not None and not self._outputs:
            self.state = SessionState.CLOSED
            self.close_reason = self._close_when_drained
            if self._close_error is not None:
                actions.append(Send(Error(self._close_error)))
            actions.append(Close(self._close_when_drained))
        return actions

    def _error(self, reason: str, detail: str) -> list[Action]:
        self.state = SessionState.CLOSED
        self.close_reason = f"{reason}: {detail}" if detail else reason
        self._outputs.clear()
        self._pending.clear()
        self._segmenter = None
        return [Send(Error(reason)), Close(self.close_reason)]
