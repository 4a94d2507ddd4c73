"""The sentiment annotation as ``%R`` fields, both ways (the V1.0 protocol's rendering of it).

The codec (:mod:`~whisper_streaming.wire.protocol`) carries fields as opaque ``key=value``
pairs; this module says what the sentiment looks like there::

    sentiment=negative score=0.912          (score with 3 decimals)
    sentiment=unsupported language=ko

A reader ignores keys it does not know.  Used by the server's wire adapter
(:mod:`~whisper_streaming.wire.tcp_session`) and by the client library.
"""

from __future__ import annotations

from whisper_streaming.analyzers.sentiment import LABELS, SENTIMENT, UNSUPPORTED, Sentiment
from whisper_streaming.errors import ErrorReason, RemoteProtocolError, UsageError
from whisper_streaming.wire.protocol import ResultFields

__all__ = ["SENTIMENT_KEY", "sentiment_fields", "sentiment_from_fields"]

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
