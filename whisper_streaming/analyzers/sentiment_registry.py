"""Sentiment engines by name (``sentiment.engine``) and the sentiment :class:`Analyzer`.

* ``vader`` -- :class:`~whisper_streaming.analyzers.sentiment.VaderEngine`.
* ``transformers`` -- :class:`~whisper_streaming.analyzers.sentiment_hf.TransformersEngine`
  (transformers imported only when built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from whisper_streaming.analyzers.base import AnalyzerSpec
from whisper_streaming.analyzers.sentiment import SENTIMENT, Sentiment, SentimentEngine, SentimentOptions, VaderEngine, analyze
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import UsageError

__all__ = ["SENTIMENT", "SENTIMENT_ENGINES", "create_sentiment_engine", "SentimentAnalyzer", "sentiment_analyzer_spec"]

def _transformers_engine(options: SentimentOptions) -> SentimentEngine:
    """Build :class:`~whisper_streaming.analyzers.sentiment_hf.TransformersEngine` (imports transformers lazily)."""
    from whisper_streaming.analyzers.sentiment_hf import TransformersEngine

    return TransformersEngine(options)


SENTIMENT_ENGINES: dict[str, Callable[[SentimentOptions], SentimentEngine]] = {
    "vader": VaderEngine,
    "transformers": _transformers_engine,
}
"""``sentiment.engine`` in the config -> constructor (``none`` builds nothing)."""


def create_sentiment_engine(options: SentimentOptions) -> SentimentEngine:
    """Build the engine named by ``options.engine``.

    Raises:
        UsageError: unknown engine name.
        SentimentError: the model cannot be loaded.
    """
    try:
        factory = SENTIMENT_ENGINES[options.engine]
    except KeyError:
        raise UsageError(f"unknown sentiment engine {options.engine!r}; known: {', '.join(SENTIMENT_ENGINES)}") from None
    return factory(options)


class SentimentAnalyzer:
    """The sentiment of a final transcript, as an :class:`~whisper_streaming.analyzers.base.Analyzer`.

    Gives None for an empty transcript; a text in a language the engine does not support gets
    ``Sentiment("unsupported", language=...)`` (:func:`~whisper_streaming.analyzers.sentiment.analyze`).

    Raises:
        SentimentError: the engine failed on this text (the worker logs it and sends no sentiment).
    """

    name = SENTIMENT

    def __init__(self, options: SentimentOptions, *, engine_factory: Callable[[SentimentOptions], SentimentEngine] = create_sentiment_engine) -> None:
        self.engine = engine_factory(options)

    def analyze(self, audio: np.ndarray, transcript: Transcript) -> Sentiment | None:
        if not transcript.text.strip():
            return None
        return analyze(self.engine, transcript.text, transcript.language)


@dataclass(frozen=True)
class _SentimentFactory:
    engine_factory: Callable[[SentimentOptions], SentimentEngine]

    def __call__(self, options: SentimentOptions) -> SentimentAnalyzer:
        return SentimentAnalyzer(options, engine_factory=self.engine_factory)


def sentiment_analyzer_spec(options: SentimentOptions,
                            engine_factory: Callable[[SentimentOptions], SentimentEngine] = create_sentiment_engine) -> AnalyzerSpec:
    """The picklable recipe a worker builds its :class:`SentimentAnalyzer` from.

    ``engine_factory`` must be picklable (a module-level function); tests inject fakes here.
    """
    return AnalyzerSpec(SENTIMENT, _SentimentFactory(engine_factory), options)
