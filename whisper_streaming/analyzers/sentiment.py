"""Sentiment of a final transcript, behind one small interface.

An engine turns text into a :class:`Sentiment`: a label (``positive``, ``negative``,
``neutral``) and a score in [0, 1], the confidence of that label.  :func:`analyze` first checks
the transcript's language: text in a language the engine does not support gets
``Sentiment("unsupported", language=...)`` instead of an invented score.  Engines are built
once per ASR worker process
(:func:`whisper_streaming.analyzers.sentiment_registry.create_sentiment_engine`), like the ASR
engines, and run behind the :class:`~whisper_streaming.analyzers.base.Analyzer` interface
(:class:`~whisper_streaming.analyzers.sentiment_registry.SentimentAnalyzer`).

Engines:

* ``vader`` (:class:`VaderEngine`) -- VADER, the lexicon- and rule-based model of C. J. Hutto
  and E. Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social
  Media Text", ICWSM 2014; the ``vaderSentiment`` package ships its English lexicon, so it
  needs no download.  The label follows the thresholds its README recommends on the
  normalized ``compound`` score c in [-1, 1]: positive if c >= t, negative if c <= -t, else
  neutral, with t = ``neutral_threshold`` (0.05).  Score: |c| for positive and negative (how
  strongly polar), 1 - |c| for neutral (how far from polar).
* ``transformers`` -- a Hugging Face text-classification model
  (:mod:`whisper_streaming.analyzers.sentiment_hf`; imported only when that engine is built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from whisper_streaming.errors import SentimentError, UsageError

__all__ = [
    "SENTIMENT",
    "POSITIVE",
    "NEGATIVE",
    "NEUTRAL",
    "UNSUPPORTED",
    "LABELS",
    "UNKNOWN_LANGUAGE",
    "DEFAULT_HF_MODEL",
    "Sentiment",
    "SentimentOptions",
    "SentimentEngine",
    "VaderEngine",
    "analyze",
]

SENTIMENT = "sentiment"
"""The analysis name: what a stream asks for (``StreamOptions.analyses``), the key of its annotation."""
POSITIVE, NEGATIVE, NEUTRAL = "positive", "negative", "neutral"
LABELS = (POSITIVE, NEGATIVE, NEUTRAL)
"""The labels an engine gives, in the order the summary lists them."""
UNSUPPORTED = "unsupported"
"""Not a label: the text's language is not one the engine supports."""
UNKNOWN_LANGUAGE = "und"
"""ISO 639-2 "undetermined", for a transcript without a language code."""
DEFAULT_HF_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"
"""The original analyzer's classifier (DistilBERT fine-tuned on SST-2, English, 2 labels)."""


@dataclass(frozen=True)
class Sentiment:
    """The sentiment of one result.

    ``label`` is one of :data:`LABELS` with ``score`` in [0, 1], or :data:`UNSUPPORTED` with
    ``score`` None and ``language`` the code the engine does not support.

    Raises:
        UsageError: an unknown label, or a score missing, out of range or given for ``unsupported``.
    """

    label: str
    score: float | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        if self.label == UNSUPPORTED:
            if self.score is not None or not self.language:
                raise UsageError("an unsupported sentiment has a language and no score")
        elif self.label in LABELS:
            if self.score is None or not 0.0 <= self.score <= 1.0:
                raise UsageError(f"sentiment score must be in [0, 1], got {self.score!r}")
        else:
            raise UsageError(f"unknown sentiment label {self.label!r}")

    @property
    def supported(self) -> bool:
        return self.label != UNSUPPORTED


@dataclass(frozen=True)
class SentimentOptions:
    """What a worker needs to build its sentiment engine (picklable).

    ``languages``: codes the engine accepts; None = the engine's default (:meth:`default_languages`).
    ``threads``: torch threads for ``transformers`` (0: torch's default). ``device``: ``cpu`` or ``cuda``.
    """

    engine: str = "vader"
    model: str = DEFAULT_HF_MODEL
    languages: tuple[str, ...] | None = None
    neutral_threshold: float = 0.05
    threads: int = 0
    device: str = "cpu"

    def default_languages(self) -> frozenset[str] | None:
        """``vader``: English; ``transformers``: English for the default SST-2 model, else any (None)."""
        if self.languages is not None:
            return frozenset(self.languages)
        if self.engine == "vader" or self.model == DEFAULT_HF_MODEL:
            return frozenset({"en"})
        return None


@runtime_checkable
class SentimentEngine(Protocol):
    """Load once in ``__init__``, then classify many texts.

    ``languages``: the language codes it supports (None: any).
    """

    name: str
    languages: frozenset[str] | None

    def classify(self, text: str) -> Sentiment:
        """Label and score of ``text`` (non-empty).

        Raises:
            SentimentError: the engine failed on this text.
        """
        ...


class VaderEngine:
    """VADER (Hutto & Gilbert 2014) from the ``vaderSentiment`` package. See the module docstring."""

    name = "vader"

    def __init__(self, options: SentimentOptions) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        if not 0.0 < options.neutral_threshold < 1.0:
            raise UsageError("neutral_threshold must be in (0, 1)")
        self.threshold = options.neutral_threshold
        self.languages = options.default_languages()
        self._analyzer = SentimentIntensityAnalyzer()

    def classify(self, text: str) -> Sentiment:
        try:
            compound = float(self._analyzer.polarity_scores(text)["compound"])
        except Exception as exc:  # noqa: BLE001 - a lexicon lookup bug must not kill the worker
            raise SentimentError(f"vader failed: {exc}") from exc
        compound = max(-1.0, min(1.0, compound))
        if compound >= self.threshold:
            return Sentiment(POSITIVE, compound)
        if compound <= -self.threshold:
            return Sentiment(NEGATIVE, -compound)
        return Sentiment(NEUTRAL, 1.0 - abs(compound))


def analyze(engine: SentimentEngine, text: str, language: str | None) -> Sentiment:
    """The sentiment of ``text`` in ``language`` (a Whisper code such as ``en``; empty: unknown).

    Unsupported language -> ``Sentiment("unsupported", language=...)``; the engine is not called.
    """
    code = (language or "").strip().lower() or UNKNOWN_LANGUAGE
    if engine.languages is not None and code not in engine.languages:
        return Sentiment(UNSUPPORTED, None, code)
    return engine.classify(text)
