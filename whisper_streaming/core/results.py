"""What the pipeline gives a peer or a sink for one utterance: the final hypothesis (pure values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whisper_streaming.core.transcript import Transcript

__all__ = ["FinalResult", "PartialHypothesis"]


@dataclass(frozen=True)
class FinalResult:
    """The final hypothesis of one utterance.

    ``start_s``/``end_s``: seconds of the stream's audio (from its begin) where the utterance's
    speech starts and ends (the times ``%R`` carries).  ``text``: the transcript, sanitized (no
    control characters) and stripped; never empty.  ``stream_index``: the stream of the session
    (0, 1, ...).  ``language``: the code it was decoded in ("" when unknown).  ``transcript``:
    the engine's whole transcript (segments; times from the start of the utterance audio), None
    when the backend gave only text.  ``annotations``: per analysis name, what the analyzers the
    stream asked for gave (e.g. ``"sentiment"`` -> a
    :class:`~whisper_streaming.analyzers.sentiment.Sentiment`).
    """

    start_s: float
    end_s: float
    text: str
    stream_index: int = 0
    language: str = ""
    transcript: Transcript | None = field(default=None, compare=False, repr=False)
    annotations: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PartialHypothesis:
    """A partial hypothesis of the utterance in progress (only for a stream that asked for them).

    ``start_s``: the utterance's speech start, seconds from the stream's begin (the same as its
    later :class:`FinalResult`); ``end_s``: the end of the audio this hypothesis covers.
    ``stable``: the committed prefix (within one utterance it only grows); ``unstable``: the
    rest of the newest decode.  Both empty: the utterance ended with no text (a display clears
    its line).  The utterance's :class:`FinalResult` supersedes it.
    """

    start_s: float
    end_s: float
    stable: str
    unstable: str
    stream_index: int = 0
