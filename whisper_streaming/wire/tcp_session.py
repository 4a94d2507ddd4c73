"""The V1.0 wire adapter: TCP packets <-> session commands and outputs (sans-IO).

:func:`command_for` maps a client packet to a
:mod:`~whisper_streaming.pipeline.commands` command; :class:`TcpRenderer` renders the session's
outputs as server packets, per connection (it keeps the open stream's sentiment tally for the
``%S`` summary sent right before its ``%F``).  :class:`TcpSession` puts the two around a
:class:`~whisper_streaming.pipeline.session.Session`: packets in, actions out, with every
:class:`~whisper_streaming.pipeline.session.Deliver` rendered as :class:`Send` actions (what the
session was before the restructuring; tests and tools drive it like a connection).

===================  ===================================================
packet               command / output
===================  ===================================================
``%u`` UserId        :class:`~whisper_streaming.pipeline.commands.Identify`
``%o`` Options       ``SetOptions``
``%b`` Begin         ``BeginStream``
``%s`` Audio         ``AudioChunk``
``%f`` Finish        ``FinishStream``
``%c`` StatusRequest ``RequestStatus``
``%L`` Welcome       ``Welcomed``
``%O`` OptionsAcc.   ``OptionsSet``
``%R`` Result        :class:`~whisper_streaming.core.results.FinalResult` (+ sentiment field)
``%S``, ``%F``       ``StreamFinished`` (``%S`` only for a stream with sentiment on)
``%S``              ``SpeakerEnrolled`` (``enrolled: NAME`` and ``speech: 4.21 s``, before that stream's ``%F``)
``%C`` Status        ``StatusReport``
``%E`` Error         ``SessionFailed``
===================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from whisper_streaming.analyzers.sentiment import SENTIMENT, Sentiment
from whisper_streaming.analyzers.sentiment_stats import SentimentTally
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.errors import ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import (
    AudioChunk,
    BeginStream,
    Command,
    FinishStream,
    Identify,
    OptionsSet,
    Output,
    RequestStatus,
    SessionFailed,
    SetOptions,
    StatusReport,
    SpeakerEnrolled,
    StreamFinished,
    Welcomed,
)
from whisper_streaming.pipeline.session import Action, Deliver, Session
from whisper_streaming.wire.protocol import (
    Partial,
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Options,
    OptionsAccepted,
    Packet,
    Result,
    ServerPacket,
    Status,
    StatusRequest,
    Summary,
    UserId,
    Welcome,
)
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch
from whisper_streaming.wire.result_fields import sentiment_fields, speaker_fields

__all__ = ["command_for", "TcpRenderer", "Send", "TcpSession"]


def command_for(packet: Packet) -> Command:
    """The session command of a client packet.

    Raises:
        RemoteProtocolError: ``UNEXPECTED_PACKET`` for a packet a client never sends.
    """
    if isinstance(packet, Audio):
        return AudioChunk(packet.pcm)
    if isinstance(packet, UserId):
        return Identify(packet.user_id)
    if isinstance(packet, Begin):
        return BeginStream()
    if isinstance(packet, Finish):
        return FinishStream()
    if isinstance(packet, StatusRequest):
        return RequestStatus()
    if isinstance(packet, Options):
        return SetOptions(packet.pairs)
    raise RemoteProtocolError(ErrorReason.UNEXPECTED_PACKET, f"{type(packet).__name__} is not a client packet")


class TcpRenderer:
    """Renders one connection's session outputs as V1.0 server packets, in order."""

    def __init__(self) -> None:
        self._tally = SentimentTally()  # the stream being delivered

    def render(self, output: Output) -> list[ServerPacket]:
        if isinstance(output, FinalResult):
            sentiment = output.annotations.get(SENTIMENT)
            if isinstance(sentiment, Sentiment):
                self._tally.add(sentiment)
            else:
                sentiment = None
            fields = sentiment_fields(sentiment) if sentiment is not None else ()
            speaker = output.annotations.get(SPEAKER)
            if isinstance(speaker, SpeakerMatch):
                fields += speaker_fields(speaker)
            return [Result(output.start_s, output.end_s, output.text, fields)]
        if isinstance(output, SpeakerEnrolled):  # a voice sample's answer, right before its %F
            return [Summary(f"enrolled: {output.name}\nspeech: {output.speech_s:.2f} s")]
        if isinstance(output, PartialHypothesis):
            return [Partial(output.start_s, output.end_s, output.stable, output.unstable)]
        if isinstance(output, StreamFinished):
            tally, self._tally = self._tally, SentimentTally()
            if SENTIMENT in output.analyses:  # every result of the stream was counted
                return [Summary(tally.summary().to_text()), Finished()]
            return [Finished()]
        if isinstance(output, Welcomed):
            return [Welcome(output.message)]
        if isinstance(output, OptionsSet):
            return [OptionsAccepted(output.pairs)]
        if isinstance(output, StatusReport):
            return [Status(output.text)]
        if isinstance(output, SessionFailed):
            return [Error(output.reason)]
        raise TypeError(f"not a session output: {output!r}")


@dataclass(frozen=True)
class Send:
    """Send this packet to the peer; ``result``: the :class:`FinalResult` a ``%R`` renders (not part of equality)."""

    packet: Packet
    result: FinalResult | None = field(default=None, compare=False)


class TcpSession:
    """A :class:`Session` driven by V1.0 packets, its outputs rendered as :class:`Send` actions.

    Every other attribute is the session's.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.renderer = TcpRenderer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def receive_packet(self, packet: Packet) -> list[Action | Send]:
        try:
            command = command_for(packet)
        except RemoteProtocolError as exc:
            return self.render(self.session.protocol_error(exc))
        return self.render(self.session.handle(command))

    def render(self, actions: list[Action]) -> list[Action | Send]:
        out: list[Action | Send] = []
        for action in actions:
            if isinstance(action, Deliver):
                result = action.output if isinstance(action.output, FinalResult) else None
                out += [Send(p, result) for p in self.renderer.render(action.output)]
            else:
                out.append(action)
        return out

    def protocol_error(self, exc: RemoteProtocolError) -> list[Action | Send]:
        return self.render(self.session.protocol_error(exc))

    def timeout(self) -> list[Action | Send]:
        return self.render(self.session.timeout())

    def shutdown(self, reason: str = "server shutdown") -> list[Action | Send]:
        return self.render(self.session.shutdown(reason))

    def transcription_done(self, *args: Any, **kwargs: Any) -> list[Action | Send]:
        return self.render(self.session.transcription_done(*args, **kwargs))

    def transcription_failed(self, *args: Any, **kwargs: Any) -> list[Action | Send]:
        return self.render(self.session.transcription_failed(*args, **kwargs))

    def partial_done(self, *args: Any, **kwargs: Any) -> list[Action | Send]:
        return self.render(self.session.partial_done(*args, **kwargs))

    def voices_loaded(self, *args: Any, **kwargs: Any) -> list[Action | Send]:
        return self.render(self.session.voices_loaded(*args, **kwargs))

    def partial_refused(self, *args: Any, **kwargs: Any) -> list[Action | Send]:
        return self.render(self.session.partial_refused(*args, **kwargs))
