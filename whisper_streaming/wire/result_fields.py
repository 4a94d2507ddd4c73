"""The sentiment and speaker annotations as ``%R`` fields, both ways (the V1.0 protocol's rendering).

The codec (:mod:`~whisper_streaming.wire.protocol`) carries fields as opaque ``key=value``
pairs; this module says what the annotations look like there::

    sentiment=negative score=0.912          (score with 3 decimals)
    sentiment=unsupported language=ko
    speaker=alice speaker_score=0.812       (an enrolled name, unknown, or S1, S2... with %o speakers=auto)

Both may be in one field (sentiment first).

A reader ignores keys it does not know.  Used by the server's wire adapter
(:mod:`~whisper_streaming.wire.tcp_session`) and by the client library.
"""

from __future__ import annotations

from whisper_streaming.analyzers.sentiment import LABELS, SENTIMENT, UNSUPPORTED, Sentiment
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch
from whisper_streaming.errors import ErrorReason, RemoteProtocolError, UsageError
from whisper_streaming.wire.protocol import ResultFields

__all__ = ["SENTIMENT_KEY", "SPEAKER_KEY", "sentiment_fields", "sentiment_from_fields", "speaker_fields", "speaker_from_fields"]

SPEAKER_KEY = SPEAKER

SENTIMENT_KEY = SENTIMENT


def sentiment_fields(sentiment: Sentiment) -> ResultFields:
    """``(("sentiment", label), ("score", "0.912"))`` or ``(("sentiment", "unsupported"), ("language", code))``."""
    if sentiment.label == UNSUPPORTED:
        return ((SENTIMENT_KEY, UNSUPPORTED), ("language", sentiment.language or "und"))
    return ((SENTIMENT_KEY, sentiment.label), ("score", f"{sentiment.score:.3f}"))


def sentiment_from_fields(fields: ResultFields) -> Sentiment | None:
    """The sentiment the fields carry; None when they carry none.

    Raises:
        RemoteProtocolError: ``BAD_RESULT``: a ``sentiment`` key with a bad label, score or language.
    """
    values = dict(fields)
    if SENTIMENT_KEY not in values:
        return None
    label = values[SENTIMENT_KEY]
    try:
        if label == UNSUPPORTED:
            return Sentiment(UNSUPPORTED, None, values["language"])
        if label in LABELS:
            return Sentiment(label, float(values["score"]))
    except (KeyError, ValueError, UsageError):
        pass
    text = " ".join(f"{k}={v}" for k, v in fields)
    raise RemoteProtocolError(ErrorReason.BAD_RESULT, f"bad sentiment field {text[:60]!r}")


def speaker_fields(match: SpeakerMatch) -> ResultFields:
    """``(("speaker", label), ("speaker_score", "0.812"))``."""
    return ((SPEAKER_KEY, match.label), ("speaker_score", f"{match.score:.3f}"))


def speaker_from_fields(fields: ResultFields) -> SpeakerMatch | None:
    """The speaker the fields carry; None when they carry none.

    Raises:
        RemoteProtocolError: ``BAD_RESULT``: a ``speaker`` key with an empty label or a bad score.
    """
    values = dict(fields)
    label = values.get(SPEAKER_KEY)
    if label is None:
        return None
    try:
        score = float(values.get("speaker_score", "0"))
    except ValueError:
        score = float("nan")
    if not label or not 0.0 <= score <= 1.0:
        raise RemoteProtocolError(ErrorReason.BAD_RESULT, f"bad speaker field {label[:40]!r}")
    return SpeakerMatch(label, score)
