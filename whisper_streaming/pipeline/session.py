"""Per-connection session state machine (sans-IO, transport-neutral).

Commands in, actions out; no sockets, no clock, no model, no wire format.  A door maps what
its peer sends to :mod:`~whisper_streaming.pipeline.commands` (``Identify``, ``SetOptions``,
``BeginStream``, ``AudioChunk``, ``FinishStream``, ``RequestStatus``), feeds them to
:meth:`Session.handle` and has the runtime carry out the returned actions in order: deliver an
output to the peer (:class:`Deliver`), transcribe an utterance, record audio, close.  When a
transcription finishes, the runtime calls :meth:`Session.transcription_done` (or ``_failed``)
and carries out what that returns.

States::

    AWAIT_USER --Identify--> READY --BeginStream--> STREAMING --FinishStream--> READY
    READY --SetOptions--> READY (answered by OptionsSet; options apply to the following streams)
    any --protocol error / timeout / ASR failure--> CLOSED (after SessionFailed)

Output order: results leave in the order their utterances were cut, and
:class:`~whisper_streaming.pipeline.commands.StreamFinished` leaves after every result of its
stream, even when utterances finish out of order on several workers (an ordered output queue of
slots; a slot is either ready outputs or a pending transcription).  A peer may pipeline a
finish and the next begin without waiting.  ``OptionsSet`` is queued the same way: it follows
every output owed before the options.

Stream options (:class:`~whisper_streaming.core.options.StreamOptions`) are captured at the
begin: the analyses they ask for (e.g. ``sentiment``) go with each utterance
(:attr:`Transcribe.analyses`) and their annotations into its
:class:`~whisper_streaming.core.results.FinalResult`.  ``sample_rate``/``encoding`` say what the
stream's audio carries: the session decodes it to s16le at the caller's rate
(:class:`StreamAudio`), runs the VAD at that rate (result times are seconds of the caller's
audio) and :attr:`Transcribe.asr_samples` resamples each utterance to 16 kHz.  An odd byte count
is ``ODD_PCM_LENGTH`` for ``pcm_s16le`` only (any count of G.711 bytes is whole samples).
``language`` fixes the stream's language (``auto``: detect; absent:
:attr:`SessionOptions.default_language`); with detection each stream has a
:class:`~whisper_streaming.core.language.LanguageTracker` that :meth:`Session.transcription_done`
feeds, and every :class:`Transcribe`/:class:`Speculate` carries its
:class:`~whisper_streaming.core.language.LanguageRequest` (a speculation made under an older
request is not claimed).

Tokens (:attr:`SessionOptions.tokens`, config ``auth``; None: off, and nothing here changes): the
session is :attr:`~Session.authenticated` once a ``SetOptions`` carries a valid ``token``
(checked with :meth:`~whisper_streaming.core.auth.TokenSet.verify`; a wrong one ends the session
with ``UNAUTHORIZED``).  Before that only ``Identify``, ``RequestStatus`` (answered with the
limited status: :attr:`StatusRequested.limited`) and a ``SetOptions`` that carries the token
are taken: ``BeginStream`` or a ``SetOptions`` without the token is ``UNAUTHORIZED``, so an
unauthenticated peer never sees its options accepted.
The token itself is never kept, applied to the stream options, echoed or put in a close reason.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union

import numpy as np

from whisper_streaming.core import audio_format
from whisper_streaming.core.auth import TokenSet
from whisper_streaming.core.language import LanguagePolicy, LanguageRequest, LanguageTracker
from whisper_streaming.core.options import SPEAKERS_AUTO, SPEAKERS_OFF, TOKEN_OPTION, StreamOptions, negotiate
from whisper_streaming.core.speakers import SPEAKER, SpeakerBook, SpeakerMatch, SpeakerPolicy, VoicePrint, merge_voiceprints
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.core.text import sanitize_text
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import EnrollmentError, ErrorReason, RemoteProtocolError, UsageError
from whisper_streaming.pipeline.commands import (
    SpeakerEnrolled,
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
    StreamFinished,
    Welcomed,
)
from whisper_streaming.pipeline.partials import PartialPolicy, StablePrefix
from whisper_streaming.pipeline.vad import Utterance, VadOptions, VadSegmenter

__all__ = [
    "ends_sentence",
    "SessionState",
    "SessionOptions",
    "Deliver",
    "Transcribe",
    "Speculate",
    "CancelSpeculation",
    "DecodePartial",
    "StreamStarted",
    "StreamAudio",
    "StreamEnded",
    "StatusRequested",
    "Close",
    "LoadVoices",
    "Action",
    "Session",
]


SENTENCE_END = (".", "?", "!", "\u3002", "\uff1f", "\uff01")
"""What ends a sentence in Whisper's text: ``. ? !`` and their CJK full-width forms."""


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends a sentence: its last character (quotes and brackets aside) is in
    :data:`SENTENCE_END`, and it is not an ellipsis (``...``, a speaker trailing off)."""
    t = text.rstrip().rstrip("\"')]\u201d\u2019")
    return bool(t) and t.endswith(SENTENCE_END) and not t.endswith(("...", "\u2026"))


class SessionState(enum.Enum):
    AWAIT_USER = "await_user"
    READY = "ready"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionOptions:
    """``max_stream_samples``: a stream longer than this is finished, then ``%E STREAM_TOO_LONG``
    (samples at ``vad.sample_rate_hz``; scaled for a stream at another ``sample_rate``).

    ``stream_defaults``: the options of a session that sends no ``%o`` (the server-wide default).
    ``option_policy``: per ``%o`` key, the effective value the server gives a requested one
    (see :func:`~whisper_streaming.core.options.negotiate`).
    ``default_language``: the language of a stream whose options say none (``model.language``;
    None: detect per stream).  ``language_policy``: when a detected language is kept
    (:class:`~whisper_streaming.core.language.LanguageTracker`).
    ``tokens``: the valid access tokens (None: no token needed; see the module docstring).
    ``speaker_policy``: thresholds of enrolment, identification and auto labels (issue 15).
    """

    vad: VadOptions = field(default_factory=VadOptions)
    welcome_message: str = "Welcome!"
    max_stream_samples: int | None = None
    stream_defaults: StreamOptions = field(default_factory=StreamOptions)
    option_policy: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    default_language: str | None = None
    language_policy: LanguagePolicy = field(default_factory=LanguagePolicy)
    partial_policy: PartialPolicy = field(default_factory=PartialPolicy)
    tokens: TokenSet | None = None
    speaker_policy: SpeakerPolicy = field(default_factory=SpeakerPolicy)


@dataclass(frozen=True)
class Deliver:
    """Give this output to the peer (the door renders it: a packet, a JSON message, nothing)."""

    output: Output


class _UtteranceAudio:
    utterance: Utterance

    def asr_samples(self) -> np.ndarray:
        """The utterance's int16 samples at 16 kHz (resampled when the stream is at another rate)."""
        return audio_format.resample(self.utterance.samples, self.utterance.sample_rate_hz, audio_format.ASR_SAMPLE_RATE_HZ)


@dataclass(frozen=True, eq=False)
class Transcribe(_UtteranceAudio):
    """Transcribe ``utterance``; report back with its ``ticket``; run the ``analyses`` named on it.

    ``claims``: the key of an earlier :class:`Speculate` for exactly this audio; a transport
    that acted on it uses that transcription instead of starting another (and must still
    report it under ``ticket``).  ``language``: the stream's language state, for the engine.
    """

    ticket: int
    utterance: Utterance
    stream_index: int
    analyses: frozenset[str] = frozenset()
    claims: int | None = None
    language: LanguageRequest | None = None


@dataclass(frozen=True, eq=False)
class Speculate(_UtteranceAudio):
    """Optional: transcribe ``utterance`` now, before its endpoint is confirmed.

    The VAD's tentative utterance (:attr:`~whisper_streaming.pipeline.vad.VadSegmenter.tentative`):
    its audio is final, and the endpoint follows ``silence_frames * frame_ms - trailing_ms``
    later unless speech resumes.  Later either a
    :class:`Transcribe` with ``claims`` = this key takes the result over, or
    :class:`CancelSpeculation` says it will never be needed.  A transport may ignore it
    (e.g. when no worker is idle); nothing is reported back for a speculation itself.
    """

    key: int
    utterance: Utterance
    stream_index: int
    analyses: frozenset[str] = frozenset()
    language: LanguageRequest | None = None


@dataclass(frozen=True, eq=False)
class DecodePartial(_UtteranceAudio):
    """Optional: decode the utterance in progress (its audio so far) for a partial hypothesis.

    Only for a stream that asked for partials.  The transport runs it only when no confirmed
    utterance waits and enough workers are idle, as a cheap decode, and reports back with
    :meth:`Session.partial_done` (with how long the decode took) or
    :meth:`Session.partial_refused` (no room now: it is offered again with more audio).  At
    most one per stream is outstanding.
    """

    key: int
    utterance: Utterance
    stream_index: int
    language: LanguageRequest | None = None


@dataclass(frozen=True)
class CancelSpeculation:
    """The speculation ``key`` will not be claimed (speech resumed, or the stream ended otherwise)."""

    key: int


@dataclass(frozen=True)
class StreamStarted:
    """A stream began; its ``%s`` audio is at ``sample_rate_hz`` (see :class:`StreamAudio`)."""

    stream_index: int
    user_id: str
    sample_rate_hz: int = audio_format.DEFAULT_SAMPLE_RATE_HZ


@dataclass(frozen=True)
class StreamAudio:
    """Audio accepted for the current stream, decoded to s16le at the stream's rate, e.g. for PCM saving."""

    pcm: bytes


@dataclass(frozen=True)
class StreamEnded:
    stream_index: int


@dataclass(frozen=True)
class StatusRequested:
    """Answer with a :class:`~whisper_streaming.pipeline.commands.StatusReport` (the runtime knows the server-wide status).

    ``limited``: the session has not shown a valid token yet (tokens on): only the limited
    status (the server is up; no counters, no session details).
    """

    limited: bool = False


@dataclass(frozen=True)
class Close:
    """Close the connection (after sending everything before this action)."""

    reason: str


@dataclass(frozen=True)
class LoadVoices:
    """Load these saved voices (``%o speakers=alice,bob``; config ``speakers.dir``) and report them
    with :meth:`Session.voices_loaded`."""

    names: tuple[str, ...]


Action = Union[Deliver, Transcribe, Speculate, DecodePartial, CancelSpeculation, StreamStarted, StreamAudio, StreamEnded, StatusRequested,
               Close, LoadVoices]


@dataclass
class _Slot:
    outputs: list[Output]
    ticket: int | None = None  # pending while not None
    start_s: float = 0.0
    end_s: float = 0.0
    stream_index: int = -1
    analyses: frozenset[str] = frozenset()  # the stream's
    tracker: LanguageTracker | None = None  # the stream's
    duration_s: float = 0.0  # of the utterance's audio
    clear_if_empty: bool = False  # partials were shown for it: no text ends with an empty partial
    labeler: SpeakerBook | None = None  # the stream's speaker labels: results get one when delivered, in order
    auto: bool = False  # labeler clusters (auto labels) rather than identifies enrolled names
    enroll: str | None = None  # on a stream's StreamFinished slot: the name its voice sample enrols


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
        self.stream_options = self.options.stream_defaults  # for the following streams
        self.authenticated = self.options.tokens is None  # tokens off: nothing to show
        self._analyses: frozenset[str] = frozenset()  # the open stream's
        self._language = LanguageTracker(self.options.default_language, self.options.language_policy)  # the open stream's
        self._segmenter_rate = self.options.vad.sample_rate_hz  # the open stream's
        self._segmenter: VadSegmenter | None = None
        self._speculation: Speculate | None = None  # the open stream's outstanding one
        self._tickets = itertools.count()
        self._outputs: deque[_Slot] = deque()
        self._pending: dict[int, _Slot] = {}
        self._close_when_drained: str | None = None
        self._close_error: ErrorReason | None = None  # the failure delivered just before that close
        self._stream_samples = 0
        self._stream_limit: int | None = None  # max_stream_samples at the open stream's rate
        self._encoding = audio_format.DEFAULT_ENCODING  # the open stream's
        self._audio_s = 0.0
        # partial hypotheses of the open stream (when it asked for them)
        self._partials = False
        self._partial: DecodePartial | None = None  # outstanding
        self._partial_next = 0  # stream sample from which the next partial may be offered
        self._agreement = StablePrefix()
        # speakers (issue 15): the session's enrolled and loaded voices; the open stream's labels and sample
        self.speakers = SpeakerBook(self.options.speaker_policy)
        self._labeler: SpeakerBook | None = None
        self._auto = False
        self._enroll: str | None = None
        self._samples: dict[int, list[VoicePrint]] = {}  # per enrolment stream: its utterances' voices
        self._agreement_index = -1  # the utterance the agreement (and what was shown) belongs to
        self._shown_index = -1  # the last utterance a partial was delivered for
        self._last_submitted_index = -1  # of the open stream
        # statistics for logs and status
        self.audio_samples = 0
        self.utterances = 0
        self.results_sent = 0
        self.partials_sent = 0
        self.partials_dropped = 0  # decoded, but their utterance had ended
        self.close_reason: str | None = None

    # ------------------------------------------------------------------ inputs

    @property
    def pending_transcriptions(self) -> int:
        return len(self._pending)

    @property
    def audio_s(self) -> float:
        """Seconds of audio received (over all streams, each at its own rate)."""
        return self._audio_s

    def handle(self, command: Command) -> list[Action]:
        """Handle one command from the peer; returns the actions to carry out in order.

        After :meth:`shutdown` (or once closed) input is ignored: the stream was already finished.
        """
        if self.state is SessionState.CLOSED or self._close_when_drained is not None:
            return []
        if isinstance(command, AudioChunk):  # the hot path first
            if self.state is not SessionState.STREAMING:
                return self._error(ErrorReason.AUDIO_BEFORE_BEGIN, "audio before the stream began")
            assert self._segmenter is not None
            pcm = command.data
            if self._encoding == audio_format.DEFAULT_ENCODING:
                if len(pcm) % 2:
                    return self._error(ErrorReason.ODD_PCM_LENGTH, f"PCM s16le needs an even byte count, got {len(pcm)}")
            else:
                pcm = audio_format.decode(pcm, self._encoding).astype("<i2").tobytes()
            limit = self._stream_limit
            too_long = limit is not None and self._stream_samples + len(pcm) // 2 >= limit
            if too_long:
                pcm = pcm[: 2 * (limit - self._stream_samples)]  # type: ignore[operator]
            self._stream_samples += len(pcm) // 2
            self.audio_samples += len(pcm) // 2
            self._audio_s += len(pcm) / 2 / self._segmenter_rate
            actions: list[Action] = [StreamAudio(pcm)]
            for u in self._segmenter.feed(pcm):
                actions += self._submit(u)
            actions += self._speculate()
            actions += self._offer_partial()
            if too_long:
                actions += self._finish_stream()
                self._close_when_drained = self._close_error = ErrorReason.STREAM_TOO_LONG
                actions += self._drain()
            return actions
        if isinstance(command, RequestStatus):
            return [StatusRequested(limited=not self.authenticated)]
        if isinstance(command, Identify):
            if self.user_id is not None:
                return self._error(ErrorReason.DUPLICATE_USER, "a second user id")
            self.user_id = command.user_id
            self.state = SessionState.READY
            return self._emit(Welcomed(self.options.welcome_message))
        if isinstance(command, BeginStream):
            if self.state is SessionState.AWAIT_USER:
                return self._error(ErrorReason.BEGIN_BEFORE_USER, "begin before the user id")
            if self.state is SessionState.STREAMING:
                return self._error(ErrorReason.ALREADY_STREAMING, "begin while a stream is open")
            if not self.authenticated:
                return self._error(ErrorReason.UNAUTHORIZED, "begin without a valid token")
            opts = self.stream_options
            if opts.enroll is not None:
                if opts.enroll in self.speakers.names:
                    return self._error(ErrorReason.DUPLICATE_SPEAKER, "this name is enrolled already")
                self.stream_options = replace(opts, enroll=None)  # a voice sample is one stream
            self.state = SessionState.STREAMING
            self.stream_index += 1
            self._stream_samples = 0
            self._analyses = opts.analyses
            self._speakers_for_stream(opts)
            wanted = self.stream_options.language
            fixed = self.options.default_language if wanted is None else (None if wanted == "auto" else wanted)
            self._language = LanguageTracker(fixed, self.options.language_policy)
            vad = self.options.vad
            rate = self.stream_options.sample_rate
            if rate != vad.sample_rate_hz:
                vad = replace(vad, sample_rate_hz=rate)
            limit = self.options.max_stream_samples
            self._stream_limit = None if limit is None else limit * rate // self.options.vad.sample_rate_hz
            self._encoding = self.stream_options.encoding
            self._segmenter_rate = rate
            self._segmenter = self._segmenter_factory(vad)
            self._partials = self.stream_options.partials
            self._partial_next = 0
            self._agreement, self._agreement_index, self._shown_index, self._last_submitted_index = StablePrefix(), -1, -1, -1
            assert self.user_id is not None
            return [StreamStarted(self.stream_index, self.user_id, rate)]
        if isinstance(command, FinishStream):
            if self.state is not SessionState.STREAMING:
                return self._error(ErrorReason.FINISH_BEFORE_BEGIN, "finish without an open stream")
            return self._finish_stream()
        if isinstance(command, SetOptions):
            return self._set_options(command)
        return self._error(ErrorReason.UNEXPECTED_PACKET, f"{type(command).__name__} is not a command")

    def protocol_error(self, exc: RemoteProtocolError) -> list[Action]:
        """The door's codec rejected the peer's bytes: :class:`SessionFailed` with its reason, close."""
        if self.state is SessionState.CLOSED:
            return []
        return self._error(exc.reason, exc.detail)

    def timeout(self) -> list[Action]:
        """Nothing from the peer for the door's idle timeout."""
        if self.state is SessionState.CLOSED:
            return []
        return self._error(ErrorReason.TIMEOUT, "no packet within the socket timeout")

    def shutdown(self, reason: str = "server shutdown") -> list[Action]:
        """Finish an open stream as if the peer finished it (results, then ``StreamFinished``), then close.

        Used when the server stops and when the peer half-closes (EOF) its side.
        """
        if self.state is SessionState.CLOSED or self._close_when_drained is not None:
            return []
        actions = self._finish_stream() if self.state is SessionState.STREAMING else []
        self._close_when_drained = reason
        return actions + self._drain()

    def transcription_done(self, ticket: int, text: str, annotations: Mapping[str, Any] | None = None, language: str = "",
                           language_probability: float = 0.0, *, transcript: Transcript | None = None) -> list[Action]:
        """The transcript of ``ticket`` arrived; empty text gives no result.

        ``annotations`` (per analysis name) go into the :class:`FinalResult`, only those the
        utterance's stream asked for; ``language`` is the language it was decoded in, detected
        with ``language_probability``: it may become the stream's kept language.
        ``transcript``: the engine's whole transcript, carried to the result (segments).
        """
        slot = self._pending.pop(ticket, None)
        if slot is None or self.state is SessionState.CLOSED:
            return []
        if slot.tracker is not None and text.strip():  # noise or hold music must not set the language
            slot.tracker.observe(language, language_probability, slot.duration_s)
        text = sanitize_text(text).strip()
        if text:
            kept = {k: v for k, v in (annotations or {}).items() if k in slot.analyses and v is not None}
            voice = kept.get(SPEAKER)
            if slot.stream_index in self._samples:  # a voice sample: its voice is enrolled, its results carry no label
                kept.pop(SPEAKER, None)
                if isinstance(voice, VoicePrint):
                    self._samples[slot.stream_index].append(voice)
            elif slot.labeler is None:
                kept.pop(SPEAKER, None)
            slot.outputs.append(FinalResult(slot.start_s, slot.end_s, text, slot.stream_index, language, transcript, kept))
        elif slot.clear_if_empty:  # partials were shown, and no %R will replace them
            slot.outputs.append(PartialHypothesis(slot.start_s, slot.end_s, "", "", slot.stream_index))
        slot.ticket = None
        return self._drain()

    def speculation_done(self, key: int, text: str) -> list[Action]:
        """The speculative decode ``key`` gave ``text``.  When it ends a sentence
        (:func:`ends_sentence`) and the segmenter has ``sentence_end_silence_frames``, the
        utterance ends after that shorter pause (semantic endpointing, as voice systems close a
        turn sooner after a complete sentence); if the pause is that long already, the
        :class:`Transcribe` that claims the speculation is returned now.  Otherwise nothing."""
        spec = self._speculation
        if (self.state is not SessionState.STREAMING or spec is None or spec.key != key or self._segmenter is None
                or self._close_when_drained is not None or not ends_sentence(text)):
            return []
        actions: list[Action] = []
        for u in self._segmenter.end_early(spec.utterance):
            actions += self._submit(u)
        return actions

    def partial_done(self, key: int, text: str, decode_s: float) -> list[Action]:
        """The partial decode ``key`` gave ``text`` in ``decode_s`` seconds: deliver a
        :class:`~whisper_streaming.core.results.PartialHypothesis` (stable prefix by
        LocalAgreement-2) unless its utterance has ended meanwhile (then it is dropped)."""
        spec = self._partial
        if spec is None or spec.key != key:
            return []
        self._partial = None
        u = spec.utterance
        if self.state is not SessionState.STREAMING or spec.stream_index != self.stream_index or u.index <= self._last_submitted_index:
            self.partials_dropped += 1
            return []
        end_sample = u.audio_start_sample + len(u.samples)
        self._partial_next = end_sample + int(self.options.partial_policy.next_after_s(decode_s) * u.sample_rate_hz)
        if u.index != self._agreement_index:
            self._agreement, self._agreement_index = StablePrefix(), u.index
        stable, unstable = self._agreement.update(sanitize_text(text).strip())
        if not (stable or unstable) and self._shown_index != u.index:
            return []  # nothing heard yet, nothing shown yet
        self._shown_index = u.index
        self.partials_sent += 1
        return self._emit(PartialHypothesis(u.start_s, end_sample / u.sample_rate_hz, stable, unstable, spec.stream_index))

    def partial_refused(self, key: int) -> list[Action]:
        """The partial decode ``key`` did not run (no idle worker), failed, or was withdrawn: offer
        one again after ``retry_after_s`` more audio, unless its utterance has ended meanwhile (the
        driver withdraws a partial still running at its utterance's endpoint): then it counts as
        dropped, as in :meth:`partial_done`, and the next utterance's partials keep their schedule."""
        spec = self._partial
        if spec is None or spec.key != key:
            return []
        self._partial = None
        u = spec.utterance
        if self.state is not SessionState.STREAMING or spec.stream_index != self.stream_index or u.index <= self._last_submitted_index:
            self.partials_dropped += 1
            return []
        end_sample = u.audio_start_sample + len(u.samples)
        self._partial_next = end_sample + int(self.options.partial_policy.retry_after_s * u.sample_rate_hz)
        return []

    def transcription_failed(self, ticket: int, reason: ErrorReason = ErrorReason.ASR_FAILED) -> list[Action]:
        """The transcription of ``ticket`` failed after its retry: this session alone ends."""
        if self._pending.pop(ticket, None) is None:
            return []
        return self._error(reason, "transcription failed")

    # ------------------------------------------------------------------ internals

    def _set_options(self, command: SetOptions) -> list[Action]:
        if self.state is SessionState.AWAIT_USER:
            return self._error(ErrorReason.OPTIONS_BEFORE_USER, "options before the user id")
        if self.state is SessionState.STREAMING:
            return self._error(ErrorReason.OPTIONS_WHILE_STREAMING, "options while a stream is open")
        tokens = self.options.tokens
        if tokens is not None:
            token = next((value for key, value in command.pairs if key == TOKEN_OPTION), None)
            if token is not None:
                if not tokens.verify(token):
                    return self._error(ErrorReason.UNAUTHORIZED, "wrong token")
                self.authenticated = True
            elif not self.authenticated:
                return self._error(ErrorReason.UNAUTHORIZED, "options before a valid token")
        try:
            self.stream_options, accepted = negotiate(self.stream_options, command.pairs, self.options.option_policy)
        except RemoteProtocolError as exc:
            return self._error(exc.reason, exc.detail)
        actions = self._emit(OptionsSet(accepted))
        wanted = tuple(n for n in self.stream_options.saved_speakers if n not in self.speakers.names)
        if wanted and any(key == "speakers" for key, _ in command.pairs):
            actions.append(LoadVoices(wanted))
        return actions

    def _submit(self, utterance: Utterance) -> list[Action]:
        actions: list[Action] = []
        claims = None
        language = self._language.request()
        spec, self._speculation = self._speculation, None
        if spec is not None:
            # a speculation started before the stream's language was kept decoded without it
            if _same_audio(spec.utterance, utterance) and language.same_language(spec.language):
                claims = spec.key
            else:
                actions.append(CancelSpeculation(spec.key))
        ticket = next(self._tickets)
        slot = _Slot([], ticket, utterance.start_s, utterance.end_s, self.stream_index, self._analyses,
                     tracker=self._language, duration_s=utterance.duration_s, clear_if_empty=self._shown_index == utterance.index,
                     labeler=self._labeler, auto=self._auto)
        self._last_submitted_index = utterance.index
        self._partial_next = 0  # the next utterance's first partial comes after first_after_s
        self._outputs.append(slot)
        self._pending[ticket] = slot
        self.utterances += 1
        actions.append(Transcribe(ticket, utterance, self.stream_index, analyses=self._analyses, claims=claims, language=language))
        return actions

    def _speculate(self) -> list[Action]:
        """Offer the segmenter's tentative utterance once; withdraw an offer it no longer makes."""
        assert self._segmenter is not None
        tentative = self._segmenter.tentative
        spec = self._speculation
        language = self._language.request()
        if spec is not None and tentative is not None and _same_audio(spec.utterance, tentative) and language.same_language(spec.language):
            return []
        actions: list[Action] = []
        if spec is not None:
            actions.append(CancelSpeculation(spec.key))
            self._speculation = None
        if tentative is not None:
            self._speculation = Speculate(next(self._tickets), tentative, self.stream_index, analyses=self._analyses, language=language)
            actions.append(self._speculation)
        return actions

    def _offer_partial(self) -> list[Action]:
        """Offer a partial decode of the utterance in progress when the policy says one is due."""
        if not self._partials or self._partial is not None:
            return []
        segmenter = self._segmenter
        assert segmenter is not None
        if not segmenter.in_speech or segmenter.samples_received < self._partial_next:
            return []
        if self._speculation is not None:  # the speech has ended (trailing silence): the final's turn
            return []
        u = segmenter.in_progress()
        if u is None:  # too little speech yet, or steady noise: look again in 0.1 s of audio
            self._partial_next = segmenter.samples_received + self._segmenter_rate // 10
            return []
        first = u.speech_start_sample + int(self.options.partial_policy.first_after_s * u.sample_rate_hz)
        if u.audio_start_sample + len(u.samples) < first:
            self._partial_next = first  # not before first_after_s of the utterance
            return []
        self._partial = DecodePartial(next(self._tickets), u, self.stream_index, language=self._language.request())
        return [self._partial]

    def _finish_stream(self) -> list[Action]:
        assert self._segmenter is not None
        actions: list[Action] = []
        for u in self._segmenter.flush():
            actions += self._submit(u)
        if self._speculation is not None:
            actions.append(CancelSpeculation(self._speculation.key))
            self._speculation = None
        self._segmenter = None
        self.state = SessionState.READY
        actions.append(StreamEnded(self.stream_index))
        self._outputs.append(_Slot([StreamFinished(self.stream_index, self._analyses)], stream_index=self.stream_index, enroll=self._enroll))
        self._analyses = frozenset()
        self._enroll, self._labeler, self._auto = None, None, False
        return actions + self._drain()

    # ------------------------------------------------------------------ speakers

    def _speakers_for_stream(self, opts: StreamOptions) -> None:
        """The open stream's speaker work: a voice sample (``enroll``), auto labels, the
        session's enrolled names, or nothing; the speaker analysis goes with its utterances."""
        self._enroll, self._labeler, self._auto = opts.enroll, None, False
        if opts.enroll is not None:
            self._samples[self.stream_index] = []
        elif opts.speakers == SPEAKERS_AUTO:
            self._labeler, self._auto = SpeakerBook(self.options.speaker_policy), True  # labels within the stream
        elif opts.speakers != SPEAKERS_OFF and self.speakers.names:
            self._labeler = self.speakers
        if self._enroll is not None or self._labeler is not None:
            self._analyses = self._analyses | {SPEAKER}

    def _labelled(self, result: FinalResult, slot: _Slot) -> FinalResult:
        """``result`` with its voiceprint replaced by the speaker it matches (in delivery order, so
        auto labels are numbered as the results go out)."""
        voice = result.annotations.get(SPEAKER)
        if not isinstance(voice, VoicePrint) or slot.labeler is None:
            return result
        try:
            match: SpeakerMatch = slot.labeler.auto(voice) if slot.auto else slot.labeler.identify(voice)
        except UsageError:  # a saved voice of another length (another embedding model): no label, not a crash
            return replace(result, annotations={k: v for k, v in result.annotations.items() if k != SPEAKER})
        return replace(result, annotations={**result.annotations, SPEAKER: match})

    def _enrol(self, stream_index: int, name: str) -> SpeakerEnrolled:
        """Enrol the voice sample of stream ``stream_index`` under ``name``.

        Raises:
            EnrollmentError: too little speech (``ENROLL_TOO_SHORT``), or the name was enrolled meanwhile.
        """
        voices = self._samples.pop(stream_index, [])
        if not voices:
            raise EnrollmentError(ErrorReason.ENROLL_TOO_SHORT, "no speech in the voice sample")
        voice = merge_voiceprints(voices)
        self.speakers.enroll(name, voice)
        return SpeakerEnrolled(stream_index, name, round(voice.speech_s, 2), voice)

    def voices_loaded(self, found: Mapping[str, VoicePrint | None]) -> list[Action]:
        """The saved voices a :class:`LoadVoices` asked for (None: no such voice): they label the
        following streams; a missing one ends the session (``UNKNOWN_SPEAKER``)."""
        if self.state is SessionState.CLOSED:
            return []
        missing = sorted(name for name, voice in found.items() if voice is None)
        if missing:
            return self._error(ErrorReason.UNKNOWN_SPEAKER, f"no saved voice named {missing[0]!r}")
        for name, voice in found.items():
            if voice is not None and name not in self.speakers.names:
                try:
                    self.speakers.load(name, voice)
                except UsageError:  # saved by another embedding model (another vector length)
                    return self._error(ErrorReason.UNKNOWN_SPEAKER, f"the saved voice {name!r} does not fit this server's speaker model")
        return []

    def _emit(self, output: Output) -> list[Action]:
        self._outputs.append(_Slot([output]))
        return self._drain()

    def _drain(self) -> list[Action]:
        actions: list[Action] = []
        while self._outputs and self._outputs[0].ticket is None:
            slot = self._outputs.popleft()
            if slot.enroll is not None:  # the end of a voice sample: enrol it before its StreamFinished
                try:
                    actions.append(Deliver(self._enrol(slot.stream_index, slot.enroll)))
                except EnrollmentError as exc:
                    return actions + self._error(exc.reason, exc.detail)
            for output in slot.outputs:
                if isinstance(output, FinalResult):
                    self.results_sent += 1
                    output = self._labelled(output, slot)
                actions.append(Deliver(output))
        if self._close_when_drained is not None and not self._outputs:
            self.state = SessionState.CLOSED
            self.close_reason = self._close_when_drained
            if self._close_error is not None:
                actions.append(Deliver(SessionFailed(self._close_error)))
            actions.append(Close(self._close_when_drained))
        return actions

    def _error(self, reason: ErrorReason, detail: str) -> list[Action]:
        self.state = SessionState.CLOSED
        self.close_reason = f"{reason}: {detail}" if detail else reason
        self._outputs.clear()
        self._pending.clear()
        self._segmenter = None
        actions: list[Action] = []
        if self._speculation is not None:
            actions.append(CancelSpeculation(self._speculation.key))
            self._speculation = None
        return actions + [Deliver(SessionFailed(reason)), Close(self.close_reason)]


def _same_audio(a: Utterance, b: Utterance) -> bool:
    """Whether two utterances of one stream have the same audio (a speculation can be claimed)."""
    return a.index == b.index and a.audio_start_sample == b.audio_start_sample and len(a.samples) == len(b.samples)
