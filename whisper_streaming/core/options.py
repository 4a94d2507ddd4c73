"""Per-session stream options negotiated with ``%o`` / ``%O`` (pure; no I/O).

A client that wants more than the original protocol sends ``%o`` after ``%u`` and outside a
stream; the options apply to every following stream of the connection.  Data is UTF-8
``key=value`` pairs separated by ``;`` (``sentiment=1``).  The server answers ``%O`` with the
options it accepted and their *effective* values in the same form (``sentiment=0`` when the
server cannot do sentiment).  Unknown keys are ignored and left out of ``%O``, so a newer client
can tell what an older server supports.

Known keys (:data:`OPTIONS`): ``sentiment`` (``0``/``1``), ``partials`` (``0``/``1``), ``sample_rate`` (``8000``/``16000``),
``encoding`` (``pcm_s16le``/``mulaw``/``alaw``) and ``language``: a Whisper language code
(:data:`WHISPER_LANGUAGE_CODES`, matched case-insensitively, answered in lower case, e.g.
``language=EN`` -> ``%O`` ``language=en``) or ``auto`` (detect the language per stream).  A
session that never sends ``language`` gets the server's default (config ``model.language``);
there is no wire value for "back to the server's default".  :func:`normalize_language` is the
same check for other callers (the CLI, config validation).  Speakers (issue 15): ``enroll``
(a name: the next stream is that speaker's voice sample) and ``speakers`` (``auto``, ``off``, or
saved voices ``alice,bob``); a bad name ends the session with ``BAD_SPEAKER_NAME``.

``token`` (:data:`TOKEN_OPTION`) is not a stream option but the session's access token (config
``auth``, :mod:`whisper_streaming.core.auth`): the session checks it, it is never applied to
:class:`StreamOptions`, never echoed in ``%O`` (an ``%o`` of only a token is answered by an
empty ``%O``) and never logged (:func:`redact_pairs`; the ``repr`` of ``%o`` packets and
``SetOptions`` commands hides it).  A server without tokens ignores it like any unknown key.

Adding an option: add a field to :class:`StreamOptions`
and an :class:`OptionSpec` to :data:`OPTIONS`; the codec, the session and the client pick it up.

Errors are :class:`~whisper_streaming.errors.RemoteProtocolError` with reason ``BAD_OPTION``
(the server sends it in ``%E``): a malformed pair (from :func:`parse_pairs`, in the codec) or an
invalid value for a known key (from :func:`negotiate`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ, SAMPLE_RATES_HZ
from whisper_streaming.core.speakers import check_speaker_name
from whisper_streaming.errors import ErrorReason, RemoteProtocolError

__all__ = [
    "StreamOptions",
    "OptionSpec",
    "OPTIONS",
    "OptionPairs",
    "EffectivePolicy",
    "parse_pairs",
    "format_pairs",
    "negotiate",
    "encode_value",
    "decode_accepted",
    "WHISPER_LANGUAGE_CODES",
    "LANGUAGE_AUTO",
    "normalize_language",
    "TOKEN_OPTION",
    "redact_pairs",
]

OptionPairs = tuple[tuple[str, str], ...]
"""``key=value`` pairs in the order they were sent."""

EffectivePolicy = Mapping[str, Callable[[Any], Any]]
"""Per key, what the server makes of a requested (validated) value: e.g. ``sentiment`` -> always
False on a server without a sentiment engine.  Keys without a policy keep the requested value."""

_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
_BAD_VALUE_CHARS = re.compile(r"[;=\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StreamOptions:
    """The options in force for a stream (captured at ``%b``).

    ``sentiment``: each ``%R`` carries a sentiment field and ``%S`` precedes ``%F``.
    ``sample_rate``: the Hz of the stream's ``%s`` audio (8000 or 16000).
    ``encoding``: the encoding of the stream's ``%s`` audio (``pcm_s16le``, ``mulaw``, ``alaw``).
    ``language``: the language Whisper transcribes the stream in: a lower-case Whisper language
    code (``en``, ``ko``; one of :data:`WHISPER_LANGUAGE_CODES`), ``"auto"``
    (:data:`LANGUAGE_AUTO`: detect it per stream), or ``None``: the server's default (config
    ``model.language``, which may itself be detection).  Wire key ``language``.
    ``partials``: the stream gets ``%P`` partial hypotheses of the utterance in progress (the
    server answers ``partials=0`` when it cannot: partials off in config, or one worker).
    ``enroll``: the next stream is a sample of this speaker's voice (3-5 s of speech), enrolled
    under this name when it finishes; applies to one stream only (wire key ``enroll``).
    ``speakers``: how results are labelled with a speaker: None (the default) with the names
    enrolled in this session, if any; ``"auto"`` with ``S1``, ``S2``... by clustering within the
    stream; ``"off"`` never; or saved voices to load by name (``"alice,bob"``, config
    ``speakers.dir``), then as the default (wire key ``speakers``).
    """

    sentiment: bool = False
    sample_rate: int = DEFAULT_SAMPLE_RATE_HZ
    encoding: str = "pcm_s16le"
    language: str | None = None
    partials: bool = False
    enroll: str | None = None
    speakers: str | None = None

    @property
    def analyses(self) -> frozenset[str]:
        """The analyses (analyzer names) these options ask for on each utterance.

        Each analysis a stream can ask for has its ``%o`` key here; the name is the analyzer's
        (``"sentiment"`` is :data:`whisper_streaming.analyzers.sentiment.SENTIMENT`, checked by a test:
        this layer cannot import the analyzers).
        """
        return frozenset({"sentiment"}) if self.sentiment else frozenset()

    @property
    def saved_speakers(self) -> tuple[str, ...]:
        """The saved voices ``speakers`` names (empty for None, ``auto``, ``off``)."""
        if self.speakers in (None, SPEAKERS_AUTO, SPEAKERS_OFF):
            return ()
        return tuple(self.speakers.split(","))


def _parse_bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


def _format_bool(value: Any) -> str:
    return "1" if value else "0"


_SAMPLE_RATES = SAMPLE_RATES_HZ
_ENCODINGS = ("pcm_s16le", "mulaw", "alaw")


def _parse_sample_rate(text: str) -> int:
    if text not in {str(r) for r in _SAMPLE_RATES}:
        raise ValueError(f"must be one of {', '.join(map(str, _SAMPLE_RATES))}")
    return int(text)


def _parse_encoding(text: str) -> str:
    if text not in _ENCODINGS:
        raise ValueError(f"must be one of {', '.join(_ENCODINGS)}")
    return text


# Whisper's language codes, in the order of openai/whisper ``whisper/tokenizer.py`` ``LANGUAGES``
# (its keys; openai-whisper 20250625).  faster-whisper 1.2.1 has the same set as the private
# ``faster_whisper.tokenizer._LANGUAGE_CODES``; tests/test_options.py checks both, so drift is
# caught.  Kept here so that the options (and the client) do not import either engine.
WHISPER_LANGUAGE_CODES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)  # fmt: skip
"""Every language code Whisper knows (lower case)."""

LANGUAGE_AUTO = "auto"
"""The ``language`` value that asks for detection (per stream)."""

_LANGUAGES = frozenset(WHISPER_LANGUAGE_CODES) | {LANGUAGE_AUTO}


def normalize_language(text: str) -> str:
    """A language as given (``"EN"``, ``"ko"``, ``"Auto"``) -> its canonical form (``"en"``, ``"ko"``, ``"auto"``).

    Accepts a Whisper language code (:data:`WHISPER_LANGUAGE_CODES`) or ``auto``, in any case;
    nothing else (no language names, no surrounding spaces, not empty).

    Raises:
        ValueError: not a string, or not a Whisper language code (nor ``auto``).
    """
    if not isinstance(text, str):
        raise ValueError(f"must be a string (a Whisper language code or {LANGUAGE_AUTO}), not {type(text).__name__}")
    code = text.lower()
    if not text.isascii() or code not in _LANGUAGES:
        raise ValueError(f"not a Whisper language code (e.g. en, ko) nor {LANGUAGE_AUTO}")
    return code


def _format_language(value: Any) -> str:
    if value is None:  # the server's default: there is no wire value for it
        raise ValueError("None (the server's default) has no wire value; send a code or auto")
    return str(value)


@dataclass(frozen=True)
class OptionSpec:
    """One known key: the :class:`StreamOptions` field it sets and its wire value syntax.

    ``parse`` raises ``ValueError`` for an invalid value; ``format`` is its inverse.
    ``field`` None: a secret the session itself reads from the pairs (``token``): not applied
    to :class:`StreamOptions`, not echoed in ``%O``, its value never in an error or a log.
    """

    key: str
    field: str | None
    parse: Callable[[str], Any]
    format: Callable[[Any], str]

    @property
    def secret(self) -> bool:
        return self.field is None


TOKEN_OPTION = "token"
"""The ``%o`` key of the access token (config ``auth``)."""

SPEAKERS_AUTO = "auto"
SPEAKERS_OFF = "off"
MAX_SAVED_SPEAKERS = 16
"""The most saved voices one ``speakers=`` may load."""


def _parse_enroll(text: str) -> str:
    return check_speaker_name(text)


def _format_optional(value: Any) -> str:
    if value is None:  # nothing asked; a server that cannot do it answers an empty value (negotiate)
        raise ValueError("None has no wire value")
    return str(value)


def _parse_speakers(text: str) -> str | None:
    if text == "":  # back to the default (the session's enrolled names, if any)
        return None
    if text in (SPEAKERS_AUTO, SPEAKERS_OFF):
        return text
    names = [check_speaker_name(n) for n in text.split(",")]
    if len(set(names)) != len(names) or len(names) > MAX_SAVED_SPEAKERS:
        raise ValueError(f"names must differ, at most {MAX_SAVED_SPEAKERS}")
    return ",".join(names)


OPTIONS: dict[str, OptionSpec] = {
    "sentiment": OptionSpec("sentiment", "sentiment", _parse_bool, _format_bool),
    "sample_rate": OptionSpec("sample_rate", "sample_rate", _parse_sample_rate, str),
    "encoding": OptionSpec("encoding", "encoding", _parse_encoding, str),
    "language": OptionSpec("language", "language", normalize_language, _format_language),
    "partials": OptionSpec("partials", "partials", _parse_bool, _format_bool),
    "enroll": OptionSpec("enroll", "enroll", _parse_enroll, _format_optional),
    "speakers": OptionSpec("speakers", "speakers", _parse_speakers, _format_optional),
    TOKEN_OPTION: OptionSpec(TOKEN_OPTION, None, str, str),
}
"""Registry of the keys this server understands."""


def _bad(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorReason.BAD_OPTION, detail)


def parse_pairs(text: str) -> OptionPairs:
    """``"a=1;b=2"`` -> ``(("a", "1"), ("b", "2"))``; ``""`` -> ``()``.

    Syntax only (known or not): a key is ``[a-z][a-z0-9_]*`` (at most 32 characters), a value
    any text without ``;``, ``=`` or control characters (it may be empty); no empty item, no
    key twice.

    Raises:
        RemoteProtocolError: ``BAD_OPTION``.
    """
    if text == "":
        return ()
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, item in enumerate(text.split(";"), start=1):
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):  # not quoted: it may be a token sent without "token="
            raise _bad(f"option {number} is malformed (expected key=value)")
        if _BAD_VALUE_CHARS.search(value):
            raise _bad(f"option {key}: value contains ';', '=' or a control character")
        if key in seen:
            raise _bad(f"option {key} given twice")
        seen.add(key)
        pairs.append((key, value))
    return tuple(pairs)


def format_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """Inverse of :func:`parse_pairs` (does not validate)."""
    return ";".join(f"{k}={v}" for k, v in pairs)


def negotiate(current: StreamOptions, pairs: OptionPairs, policy: EffectivePolicy | None = None) -> tuple[StreamOptions, OptionPairs]:
    """Apply the client's ``pairs`` to ``current``.

    Returns the new options and the ``%O`` answer: each known key with its effective value
    (after ``policy``), in the order sent; unknown keys are left out.

    Raises:
        RemoteProtocolError: ``BAD_OPTION`` for an invalid value of a known key (nothing applied).
    """
    changes: dict[str, Any] = {}
    accepted: list[tuple[str, str]] = []
    for key, text in pairs:
        spec = OPTIONS.get(key)
        if spec is None or spec.secret:  # unknown, or the token (the session reads it itself)
            continue
        try:
            value = spec.parse(text)
        except ValueError as exc:
            raise _bad(f"option {key}={text[:20]!r}: {exc}") from None
        if policy is not None and key in policy:
            value = policy[key](value)
        changes[spec.field] = value
        accepted.append((key, "" if value is None else spec.format(value)))  # None: refused by the server's policy
    return replace(current, **changes), tuple(accepted)


def redact_pairs(pairs: Iterable[tuple[str, str]]) -> OptionPairs:
    """``pairs`` with the value of every secret key (``token``) replaced by ``***`` (for reprs and logs)."""
    return tuple((k, "***" if k in OPTIONS and OPTIONS[k].secret else v) for k, v in pairs)


def encode_value(key: str, value: Any) -> str:
    """A client-side value -> wire text: known keys through their spec, others: bools as 0/1, else ``str``.

    Does not validate (the server does), except that a value with no wire form raises
    ``ValueError`` (``language=None``).
    """
    spec = OPTIONS.get(key)
    if spec is not None:
        return spec.format(value)
    return _format_bool(value) if isinstance(value, bool) else str(value)


def decode_accepted(pairs: OptionPairs) -> dict[str, Any]:
    """``%O`` pairs -> ``{key: value}``, typed for known keys (``sentiment`` -> bool), text otherwise."""
    out: dict[str, Any] = {}
    for key, text in pairs:
        spec = OPTIONS.get(key)
        try:
            out[key] = spec.parse(text) if spec is not None else text
        except (ValueError, RemoteProtocolError):  # e.g. ``enroll=`` (refused): check_speaker_name raises EnrollmentError
            out[key] = text
    return out
