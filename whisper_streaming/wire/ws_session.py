"""The WebSocket wire adapter: JSON text messages and binary audio <-> session commands and outputs (sans-IO).

The web door (:mod:`whisper_streaming.transports.web`) moves WebSocket messages; this module
says what they mean.  One :class:`WsAdapter` per connection.

Client -> server (text frames are JSON objects, binary frames are audio):

=========================================  ==================================================
message                                    commands
=========================================  ==================================================
``{"type": "start", ...}``                 ``Identify`` (first start only), ``SetOptions``, ``BeginStream``
``{"type": "enroll", "name": "alice", ...}`` the same for a voice sample: the stream enrols ``name``
binary frame (any size)                    ``AudioChunk`` (an odd byte of s16le waits for the next frame)
``{"type": "finish"}``                     ``FinishStream``
=========================================  ==================================================

``start`` fields, all optional: ``user`` (the first start's user id, 1-64 characters; default
the connection id; a later start may repeat it or leave it out), ``sample_rate`` (Hz, an
integer in 8000..192000; default 16000), ``encoding`` (``pcm_s16le``, ``mulaw``, ``alaw``;
G.711 only at 8000 Hz), ``language`` (a Whisper code or ``auto``; null or absent: the server's
default), ``partials`` and ``sentiment`` (booleans; absent: the server's default), ``token``
(the access token when the server asks for one, config ``auth``), ``speakers`` (``"auto"``:
label results ``S1``, ``S2``...; ``"off"``; a list of saved voices to load, ``["alice", "bob"]``;
absent: label with the names enrolled in this connection, if any).  Every start describes its
stream in full: a field left out takes the server's default, not the previous start's value.
Unknown fields are ignored.  A rate other than 8000 or 16000 Hz (a browser's 44100 or 48000) is
resampled to 16 kHz on arrival (:class:`~whisper_streaming.core.audio_format.StreamResampler`,
soxr HQ); result times are seconds of the client's audio either way.  Values are checked by the
options registry (:mod:`whisper_streaming.core.options`): a bad one ends the session with
``BAD_OPTION``.

Server -> client (:meth:`WsAdapter.render`, all text frames)::

    {"type": "started", "options": {"sentiment": false, "sample_rate": 48000, "encoding": "pcm_s16le",
                                    "language": "en", "partials": true}}          (effective values)
    {"type": "partial", "start": 1.2, "end": 2.5, "stable": "hello", "unstable": "world"}
    {"type": "final", "start": 1.2, "end": 3.1, "text": "Hello world.", "language": "en",
     "sentiment": {"label": "positive", "score": 0.912},                         (sentiment: when asked for)
     "speaker": "alice", "speaker_score": 0.812}                                 (speaker: when labelled)
    {"type": "enrolled", "name": "alice", "speech": 4.21}                        (an enroll stream, before its summary)
    {"type": "summary", "results": 3, "sentiment": {"positive": 2, "negative": 0, "neutral": 1,
     "unsupported": 0, "mean_score": 0.71}}                                      (sentiment: when asked for)
    {"type": "finished"}
    {"type": "error", "reason": "BAD_OPTION"}                                    (then the close)

Times are seconds of the stream's audio (3 decimals).  Malformed input raises
:class:`~whisper_streaming.errors.RemoteProtocolError`: ``BAD_MESSAGE`` (not JSON, not an
object, no string ``type``, a field of the wrong JSON type), ``UNKNOWN_MESSAGE`` (an unknown
``type``), ``BAD_USER_ID``, ``DUPLICATE_USER`` (a later start names another user),
``BAD_OPTION`` (a sample rate out of range, G.711 at another rate); the door hands it to the
session, which ends with that reason (``{"type": "error"}`` then a close with the reason's
:attr:`~whisper_streaming.errors.ErrorReason.ws_close_code`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from whisper_streaming.analyzers.sentiment import LABELS, SENTIMENT, UNSUPPORTED, Sentiment
from whisper_streaming.analyzers.sentiment_stats import SentimentTally
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ, SAMPLE_RATES_HZ, StreamResampler
from whisper_streaming.core.options import LANGUAGE_AUTO, TOKEN_OPTION, StreamOptions, decode_accepted, encode_value
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.core.text import is_unsafe_in_ids
from whisper_streaming.errors import ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import (
    AudioChunk,
    BeginStream,
    Command,
    FinishStream,
    Identify,
    OptionsSet,
    Output,
    SessionFailed,
    SetOptions,
    SpeakerEnrolled,
    StatusReport,
    StreamFinished,
    Welcomed,
)
from whisper_streaming.wire.protocol import MAX_USER_ID_CHARS

__all__ = [
    "StartMessage",
    "FinishMessage",
    "ClientMessage",
    "parse_message",
    "WsAdapter",
    "error_message",
    "to_text",
    "MIN_SAMPLE_RATE_HZ",
    "MAX_SAMPLE_RATE_HZ",
]

MIN_SAMPLE_RATE_HZ = 8000
"""Lowest ``sample_rate`` a ``start`` may give."""
MAX_SAMPLE_RATE_HZ = 192000
"""Highest ``sample_rate`` a ``start`` may give."""
_G711 = ("mulaw", "alaw")


@dataclass(frozen=True)
class StartMessage:
    """A ``start`` message: the stream's options as the client sent them (None: not given)."""

    user: str | None = None
    sample_rate: int | None = None
    encoding: str | None = None
    language: str | None = None
    partials: bool | None = None
    sentiment: bool | None = None
    token: str | None = field(default=None, repr=False)
    speakers: str | None = None  # "auto", "off", or saved names joined with ","
    enroll: str | None = None  # an ``enroll`` message: the name its stream enrols


@dataclass(frozen=True)
class FinishMessage:
    """A ``finish`` message: the end of the open stream."""


ClientMessage = StartMessage | FinishMessage


def _bad(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorReason.BAD_MESSAGE, detail)


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``data[key]`` if present and not null, checked against ``kind`` (JSON booleans are not integers)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        raise _bad(f"{key} must be {what}, got {type(value).__name__}")
    return value


def parse_message(text: str) -> ClientMessage:
    """One text frame -> the message it carries.

    Raises:
        RemoteProtocolError: ``BAD_MESSAGE`` (not a JSON object with a string ``type``, or a
            field of the wrong JSON type), ``UNKNOWN_MESSAGE`` (another ``type``).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("not JSON") from None
    if not isinstance(data, dict):
        raise _bad(f"a message is a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise _bad("no string 'type'")
    if kind == "finish":
        return FinishMessage()
    if kind not in ("start", "enroll"):
        raise RemoteProtocolError(ErrorReason.UNKNOWN_MESSAGE, f"unknown message type {kind[:32]!r}")
    enroll = None
    if kind == "enroll":
        enroll = _field(data, "name", str, "a string")
        if enroll is None:
            raise _bad("an enroll message needs a string 'name'")
    speakers = data.get("speakers")
    if isinstance(speakers, list) and speakers and all(isinstance(n, str) for n in speakers):
        speakers = ",".join(speakers)
    elif speakers is not None and not isinstance(speakers, str):
        raise _bad("speakers must be \"auto\", \"off\" or a list of names")
    return StartMessage(
        speakers=speakers,
        enroll=enroll,
        user=_field(data, "user", str, "a string"),
        sample_rate=_field(data, "sample_rate", int, "an integer"),
        encoding=_field(data, "encoding", str, "a string"),
        language=_field(data, "language", str, "a string or null"),
        partials=_field(data, "partials", bool, "true or false"),
        sentiment=_field(data, "sentiment", bool, "true or false"),
        token=_field(data, "token", str, "a string"),
    )


def _check_user(user: str) -> str:
    if not 1 <= len(user) <= MAX_USER_ID_CHARS:
        raise RemoteProtocolError(ErrorReason.BAD_USER_ID, f"user id must have 1-{MAX_USER_ID_CHARS} characters, got {len(user)}")
    if any(is_unsafe_in_ids(ch) for ch in user):
        raise RemoteProtocolError(ErrorReason.BAD_USER_ID, "user id contains control characters, line separators or bidi controls")
    return user


def error_message(reason: ErrorReason) -> dict[str, Any]:
    """``{"type": "error", "reason": ...}`` (the door closes with ``reason.ws_close_code`` after it)."""
    return {"type": "error", "reason": reason.value}


def to_text(message: dict[str, Any]) -> str:
    """A server message as the text of one WebSocket frame (compact JSON, UTF-8 kept)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def _sentiment(sentiment: Sentiment) -> dict[str, Any]:
    if sentiment.label == UNSUPPORTED:
        return {"label": UNSUPPORTED, "score": None, "language": sentiment.language}
    return {"label": sentiment.label, "score": round(sentiment.score or 0.0, 3)}


class WsAdapter:
    """One WebSocket connection's messages <-> session commands and outputs (see the module docstring).

    Args:
        defaults: the server's stream options (a start's absent fields).
        default_language: the server's language (``model.language``; None: detection).
        default_user: the user id of a first start that names none (the connection id).
        query_token: the ``?token=`` of the connection's URL, sent with every start that has none.
    """

    def __init__(self, defaults: StreamOptions, default_language: str | None, default_user: str, query_token: str | None = None) -> None:
        self.defaults = defaults
        self.default_language = default_language
        self.default_user = default_user
        self._query_token = query_token
        self.user: str | None = None
        self.streaming = False  # a start was mapped and its finish not yet
        self._encoding = defaults.encoding  # the open stream's
        self._resampler: StreamResampler | None = None  # the open stream's, when its rate is not one the session takes
        self._odd = b""  # the open stream's half s16le sample
        self._rates: deque[int] = deque()  # per start not yet answered: the client's sample rate
        self._tally = SentimentTally()  # of the stream being delivered
        self._finals = 0

    # ------------------------------------------------------------------ client -> server

    def on_text(self, text: str) -> list[Command]:
        """The commands of one text frame.

        Raises:
            RemoteProtocolError: see :func:`parse_message` and :meth:`start`.
        """
        message = parse_message(text)
        if isinstance(message, FinishMessage):
            return self.finish()
        return self.start(message)

    def start(self, message: StartMessage) -> list[Command]:
        """``Identify`` (first start), ``SetOptions`` with every option (absent: the server's default), ``BeginStream``.

        Raises:
            RemoteProtocolError: ``BAD_USER_ID``, ``DUPLICATE_USER``, ``BAD_OPTION`` (sample rate
                out of range, G.711 at a rate other than 8000 Hz).
        """
        commands: list[Command] = []
        if self.user is None:
            self.user = _check_user(message.user if message.user is not None else self.default_user)
            commands.append(Identify(self.user))
        elif message.user is not None and message.user != self.user:
            raise RemoteProtocolError(ErrorReason.DUPLICATE_USER, "a later start names another user")
        d = self.defaults
        rate = d.sample_rate if message.sample_rate is None else message.sample_rate
        encoding = d.encoding if message.encoding is None else message.encoding
        if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
            raise RemoteProtocolError(ErrorReason.BAD_OPTION, f"sample_rate must be {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}, got {rate}")
        resampler = None
        session_rate = rate
        if rate not in SAMPLE_RATES_HZ:
            if encoding in _G711:
                raise RemoteProtocolError(ErrorReason.BAD_OPTION, f"{encoding} is 8000 Hz audio, not {rate} Hz")
            resampler = StreamResampler(rate, ASR_SAMPLE_RATE_HZ)
            session_rate = ASR_SAMPLE_RATE_HZ
        language = message.language if message.language is not None else (d.language or self.default_language or LANGUAGE_AUTO)
        pairs: list[tuple[str, str]] = [
            ("sample_rate", str(session_rate)),
            ("encoding", encoding),
            ("language", language),
            ("partials", encode_value("partials", d.partials if message.partials is None else message.partials)),
            ("sentiment", encode_value("sentiment", d.sentiment if message.sentiment is None else message.sentiment)),
        ]
        pairs.append(("speakers", message.speakers or ""))  # absent: the default, never the previous start's
        if message.enroll is not None:
            pairs.append(("enroll", message.enroll))
        token = message.token if message.token is not None else self._query_token
        if token is not None:
            pairs.append((TOKEN_OPTION, token))
        self._rates.append(rate)
        self.streaming = True
        self._encoding = encoding
        self._resampler = resampler
        self._odd = b""
        commands += [SetOptions(tuple(pairs)), BeginStream()]
        return commands

    def on_audio(self, data: bytes) -> list[Command]:
        """The commands of one binary frame: an ``AudioChunk`` at the session's rate (none while a
        resampler or a half sample holds everything back).  Before a start the bytes go to the
        session as they are (which ends it with ``AUDIO_BEFORE_BEGIN``)."""
        if not self.streaming:
            return [AudioChunk(bytes(data))]
        if self._resampler is not None:
            pcm = self._resampler.process(data)
        elif self._encoding in _G711:
            pcm = bytes(data)
        else:
            joined = self._odd + bytes(data)
            usable = len(joined) - len(joined) % 2
            pcm, self._odd = joined[:usable], joined[usable:]
        return [AudioChunk(pcm)] if pcm else []

    def finish(self) -> list[Command]:
        """The resampler's tail (if any), then ``FinishStream`` (a half sample left over is dropped)."""
        commands: list[Command] = []
        if self._resampler is not None:
            tail, self._resampler = self._resampler.flush(), None
            if tail:
                commands.append(AudioChunk(tail))
        self._odd = b""
        self.streaming = False
        commands.append(FinishStream())
        return commands

    # ------------------------------------------------------------------ server -> client

    def render(self, output: Output) -> list[dict[str, Any]]:
        """The server messages of one session output, in order (see the module docstring)."""
        if isinstance(output, FinalResult):
            self._finals += 1
            message: dict[str, Any] = {"type": "final", "start": round(output.start_s, 3), "end": round(output.end_s, 3),
                                       "text": output.text, "language": output.language or None}
            sentiment = output.annotations.get(SENTIMENT)
            if isinstance(sentiment, Sentiment):
                self._tally.add(sentiment)
                message["sentiment"] = _sentiment(sentiment)
            speaker = output.annotations.get(SPEAKER)
            if isinstance(speaker, SpeakerMatch):
                message["speaker"], message["speaker_score"] = speaker.label, round(speaker.score, 3)
            return [message]
        if isinstance(output, SpeakerEnrolled):
            return [{"type": "enrolled", "name": output.name, "speech": round(output.speech_s, 2)}]
        if isinstance(output, PartialHypothesis):
            return [{"type": "partial", "start": round(output.start_s, 3), "end": round(output.end_s, 3),
                     "stable": output.stable, "unstable": output.unstable}]
        if isinstance(output, StreamFinished):
            summary: dict[str, Any] = {"type": "summary", "results": self._finals}
            if SENTIMENT in output.analyses:
                s = self._tally.summary()
                summary["sentiment"] = {**{label: s.count(label) for label in (*LABELS, UNSUPPORTED)},
                                        "mean_score": None if s.mean_score is None else round(s.mean_score, 3)}
            self._tally, self._finals = SentimentTally(), 0
            return [summary, {"type": "finished"}]
        if isinstance(output, OptionsSet):
            options = decode_accepted(output.pairs)
            if self._rates:
                options["sample_rate"] = self._rates.popleft()  # what the client sends (resampled when needed)
            return [{"type": "started", "options": options}]
        if isinstance(output, SessionFailed):
            return [error_message(output.reason)]
        if isinstance(output, StatusReport):
            return [{"type": "status", "text": output.text}]
        if isinstance(output, Welcomed):
            return []
        raise TypeError(f"not a session output: {output!r}")
