"""Engines by name (``model.engine``): the plug-in registry.

* ``faster-whisper`` -- :class:`~whisper_streaming.engines.faster_whisper.FasterWhisperEngine`.
* ``openai-whisper`` -- :class:`~whisper_streaming.engines.openai_whisper.OpenAIWhisperEngine`
  (torch imported only when built).
"""

from __future__ import annotations

from typing import Callable

from whisper_streaming.engines.base import AsrEngine, EngineOptions
from whisper_streaming.engines.faster_whisper import FasterWhisperEngine
from whisper_streaming.engines.speech_screen import ScreenedEngine, SileroSpeechDetector, SpeechScreen
from whisper_streaming.errors import UsageError

__all__ = ["ENGINES", "create_engine"]


def _openai_whisper_engine(options: EngineOptions) -> AsrEngine:
    """Build :class:`~whisper_streaming.engines.openai_whisper.OpenAIWhisperEngine` (imports torch lazily)."""
    from whisper_streaming.engines.openai_whisper import OpenAIWhisperEngine

    return OpenAIWhisperEngine(options)


ENGINES: dict[str, Callable[[EngineOptions], AsrEngine]] = {
    "faster-whisper": FasterWhisperEngine,
    "openai-whisper": _openai_whisper_engine,
}
"""Engine name (``model.engine`` in the config) -> constructor."""


def create_engine(options: EngineOptions) -> AsrEngine:
    """Build the engine named by ``options.engine``, behind a
    :class:`~whisper_streaming.engines.speech_screen.ScreenedEngine` (Silero) when
    ``options.speech_screen`` is set.

    Raises:
        UsageError: unknown engine name.
        AsrError: the model (or the screen's) failed to load.
    """
    try:
        factory = ENGINES[options.engine]
    except KeyError:
        raise UsageError(f"unknown engine {options.engine!r}; known: {', '.join(ENGINES)}") from None
    engine = factory(options)
    if options.speech_screen is not None:
        return ScreenedEngine(engine, SpeechScreen(SileroSpeechDetector(), options.speech_screen))
    return engine
