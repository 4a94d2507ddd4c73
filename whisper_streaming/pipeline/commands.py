"""What a door tells a session (commands in) and what a session tells the peer (outputs).

Transport-neutral: each wire adapter maps its packets or frames to these commands and renders
the outputs back (:mod:`whisper_streaming.wire.tcp_session` for the V1.0 protocol); a door with
no way back to the peer (AudioSocket) just drops the outputs and relies on the sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from whisper_streaming.core.options import OptionPairs, redact_pairs
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.core.speakers import VoicePrint
from whisper_streaming.errors import ErrorReason

__all__ = [
    "Identify",
    "SetOptions",
    "BeginStream",
    "AudioChunk",
    "FinishStream",
    "RequestStatus",
    "Command",
    "Welcomed",
    "OptionsSet",
    "StreamFinished",
    "StatusReport",
    "SessionFailed",
    "SpeakerEnrolled",
    "Output",
]


@dataclass(frozen=True)
class Identify:
    """Who is speaking (``%u``; an AudioSocket call's UUID)."""

    user_id: str


@dataclass(frozen=True)
class SetOptions:
    """Options for the following streams, as requested ``key=value`` pairs (``%o``); the
    access token travels here too (``token``, read by the session; hidden in the ``repr``)."""

    pairs: OptionPairs

    def __repr__(self) -> str:
        return f"SetOptions(pairs={redact_pairs(self.pairs)!r})"


@dataclass(frozen=True)
class BeginStream:
    """Open a stream (``%b``)."""


@dataclass(frozen=True)
class AudioChunk:
    """Audio of the open stream, in the stream's encoding and rate (``%s``)."""

    data: bytes


@dataclass(frozen=True)
class FinishStream:
    """End the open stream: transcribe what is left, then :class:`StreamFinished` (``%f``)."""


@dataclass(frozen=True)
class RequestStatus:
    """Ask for the server's status (``%c``)."""


Command = Union[Identify, SetOptions, BeginStream, AudioChunk, FinishStream, RequestStatus]


@dataclass(frozen=True)
class Welcomed:
    """The session is identified (``%L``)."""

    message: str


@dataclass(frozen=True)
class OptionsSet:
    """The effective value of each requested option, in the order requested (``%O``)."""

    pairs: OptionPairs


@dataclass(frozen=True)
class StreamFinished:
    """Every result of stream ``stream_index`` was delivered (``%F``); ``analyses``: what it asked for."""

    stream_index: int
    analyses: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StatusReport:
    """The server's status text (``%C``)."""

    text: str


@dataclass(frozen=True)
class SessionFailed:
    """The session ends with ``reason`` (``%E``); a :class:`~whisper_streaming.pipeline.session.Close` follows."""

    reason: ErrorReason


@dataclass(frozen=True)
class SpeakerEnrolled:
    """Stream ``stream_index`` was a voice sample: ``name`` is enrolled from ``speech_s`` seconds of
    speech (sent right before that stream's :class:`StreamFinished`).  ``voice``: the enrolled
    voiceprint (:class:`~whisper_streaming.core.speakers.VoicePrint`; saved by the runtime when
    ``speakers.dir`` is set, never sent to the peer)."""

    stream_index: int
    name: str
    speech_s: float
    voice: VoicePrint = field(repr=False, compare=False)


Output = Union[Welcomed, OptionsSet, FinalResult, PartialHypothesis, StreamFinished, StatusReport, SessionFailed, SpeakerEnrolled]
