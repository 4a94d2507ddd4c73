"""The sink interface: where sessions publish what happened, whatever their door.

A :class:`Sink` receives :data:`SinkEvent` values from the runtime (results, streams opening
and closing with their audio, sessions ending) through :meth:`Sink.publish`, which must never
block the event loop (queue, or do a quick local write), and is closed once at shutdown with a
deadline (:meth:`Sink.aclose`).  Sinks: the JSON-lines results log
(:class:`~whisper_streaming.sinks.jsonl.JsonlSink`), the webhook
(:class:`~whisper_streaming.sinks.webhook.WebhookSink`) and PCM saving
(:class:`~whisper_streaming.sinks.pcm.PcmSink`).  A sink ignores events it has no use for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

from whisper_streaming.analyzers.sentiment import SENTIMENT, Sentiment
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch
from whisper_streaming.core.results import FinalResult

__all__ = ["result_json", "SessionInfo", "ResultPublished", "StreamOpened", "StreamAudioReceived", "StreamClosed", "SessionClosed", "SinkEvent", "Sink"]


@dataclass(frozen=True)
class SessionInfo:
    """Who a session is: ``session_id`` the connection id (``c<n>`` TCP, ``a<n>`` AudioSocket; unique
    while the server runs), ``transport`` the door's name, ``peer`` ``host:port``, ``user_id`` what
    the peer said it is (None until it did), ``call_id`` the telephony call's id (AudioSocket UUID)."""

    session_id: str
    transport: str
    peer: str = "?"
    user_id: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class ResultPublished:
    session: SessionInfo
    result: FinalResult


@dataclass(frozen=True)
class StreamOpened:
    """A stream began; its audio comes at ``sample_rate_hz``."""

    session: SessionInfo
    stream_index: int
    sample_rate_hz: int


@dataclass(frozen=True)
class StreamAudioReceived:
    """Audio of the open stream, s16le mono at the stream's rate."""

    session: SessionInfo
    stream_index: int
    pcm: bytes


@dataclass(frozen=True)
class StreamClosed:
    """The stream's audio ended (its last results may still follow: they are published when transcribed)."""

    session: SessionInfo
    stream_index: int


@dataclass(frozen=True)
class SessionClosed:
    """The session ended: ``results`` delivered, ``audio_s`` received, ``reason`` (``closed``, an error reason ...)."""

    session: SessionInfo
    results: int
    audio_s: float
    reason: str


SinkEvent = Union[ResultPublished, StreamOpened, StreamAudioReceived, StreamClosed, SessionClosed]


@runtime_checkable
class Sink(Protocol):
    """Publish without blocking; close once with a deadline."""

    def publish(self, event: SinkEvent) -> None:
        """Take one event (must not block or raise: a failing sink logs and counts)."""
        ...

    async def aclose(self, deadline_s: float) -> Any:
        """Deliver what is queued within ``deadline_s`` seconds, drop the rest, release resources (idempotent)."""
        ...


def result_json(result: FinalResult) -> dict[str, Any]:
    """The JSON fields every sink gives a result: ``start_s``/``end_s`` (2 decimals), ``text``,
    ``language`` (null when unknown), ``sentiment`` (the label, null when the stream asked for
    none) and ``score`` (4 decimals; null for none or ``unsupported``); with a speaker label
    (issue 15) also ``speaker`` and ``speaker_score`` (3 decimals), absent otherwise."""
    s = result.annotations.get(SENTIMENT)
    if not isinstance(s, Sentiment):
        s = None
    body: dict[str, Any] = {
        "start_s": round(result.start_s, 2),
        "end_s": round(result.end_s, 2),
        "text": result.text,
        "language": result.language or None,
        "sentiment": None if s is None else s.label,
        "score": None if s is None or s.score is None else round(s.score, 4),
    }
    speaker = result.annotations.get(SPEAKER)
    if isinstance(speaker, SpeakerMatch):
        body["speaker"], body["speaker_score"] = speaker.label, round(speaker.score, 3)
    return body
