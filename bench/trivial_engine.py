"""An ASR engine that answers at once, for measuring what a backend adds around the engine.

:func:`make_engine` is a picklable engine factory (``PoolOptions.engine_factory``): a
``spawn``-ed worker process imports this module by name (``bench.trivial_engine``), so the
benchmark must run from the repository root (``python -m bench....``).  The engine does no work:
``transcribe`` returns a fixed one-segment transcript as long as the audio, as a real engine
returns for a short sentence, so the answer that travels back is of a realistic size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.core.transcript import Transcript, TranscriptSegment
from whisper_streaming.engines.base import SAMPLE_RATE_HZ, BatchDecode, EngineOptions

__all__ = ["TrivialEngine", "make_engine", "TEXT"]

TEXT = "the quick brown fox jumps over the lazy dog"
"""The text of every transcript."""


class TrivialEngine:
    """Answers :data:`TEXT` at once, whatever the audio (``options`` are ignored)."""

    name = "trivial"

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        """A transcript of :data:`TEXT` spanning ``audio`` (float32 at 16 kHz); takes no time."""
        duration_s = len(audio) / SAMPLE_RATE_HZ
        segment = TranscriptSegment(0.0, duration_s, TEXT, -0.2, 0.01, 1.2)
        return Transcript(TEXT, "en", 1.0, (segment,), duration_s)


def make_engine(options: EngineOptions) -> TrivialEngine:
    """A picklable engine factory: a :class:`TrivialEngine`."""
    return TrivialEngine(options)
