"""The real faster-whisper engine never encodes a 30 s window for a short utterance.

A decode whose last segment is unfinished (the audio ends mid-word, as a partial hypothesis's
always does) makes faster-whisper seek to the last timestamp and decode the rest in a second
window.  Before the fix that second window was Whisper's full 30 s: a minimal decode of 3 s of
speech cost 1.9 s instead of 0.4 s on one thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.app.wiring import engine_options_from_config
from whisper_streaming.config.loader import load_config
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.engines.faster_whisper import MINIMAL_WINDOW_PAD_S, FasterWhisperEngine
from whisper_streaming.errors import TranscriptionStopped

DATA = Path(__file__).resolve().parent.parent / "data"


class _EncoderSpy:
    """Wraps the CTranslate2 model; records the frames of every encoder input."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.frames: list[int] = []

    def encode(self, features: Any, *args: Any, **kwargs: Any) -> Any:
        self.frames.append(int(features.shape[-1]))
        return self._model.encode(features, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    options = engine_options_from_config(load_config(None))
    return FasterWhisperEngine(options)


@pytest.mark.parametrize("seconds", [3, 6])
def test_minimal_decode_of_speech_cut_mid_word_stays_on_the_trimmed_window(engine: FasterWhisperEngine, seconds: int) -> None:
    audio, rate = sf.read(DATA / "librispeech_test-clean_1995-1837-0001.wav", dtype="float32")
    assert rate == 16000
    cut = np.ascontiguousarray(audio[: seconds * rate])
    spy = _EncoderSpy(engine._model.model)
    engine._model.model = spy
    try:
        transcript = engine.transcribe(cut, language=LanguageRequest(fixed="en"), minimal=True)
    finally:
        engine._model.model = spy._model
    window = (seconds + int(MINIMAL_WINDOW_PAD_S)) * 100
    assert len(spy.frames) >= 2, spy.frames  # the utterance's window, then a later one for the word cut off
    assert max(spy.frames) <= window, spy.frames
    assert transcript.text.lower().startswith("it was the first great sorrow")


class _CountingExtractor:
    """Wraps faster-whisper's FeatureExtractor; counts the log-mel computations."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_one_log_mel_per_utterance_and_the_same_text(engine: FasterWhisperEngine) -> None:
    """The engine computes an utterance's log-mel once; faster-whisper's own call is answered from memory."""
    audio, _ = sf.read(DATA / "librispeech_test-clean_1995-1837-0001.wav", dtype="float32")
    cut = np.ascontiguousarray(audio[: 5 * 16000])
    remembered = engine._model.feature_extractor
    counting = _CountingExtractor(remembered._inner)
    remembered._inner = counting
    try:
        transcript = engine.transcribe(cut, language=LanguageRequest(fixed="en"))
        assert counting.calls == 1
        assert remembered._remembered is None  # nothing held after the call
        remembered.remember = lambda *args: None  # type: ignore[method-assign]  # as before: computed again by faster-whisper
        plain = engine.transcribe(cut, language=LanguageRequest(fixed="en"))
        assert counting.calls == 3
    finally:
        remembered._inner = counting._inner
        del remembered.remember
    assert transcript.text == plain.text and transcript.text.lower().startswith("it was the first great sorrow")
    assert [s.avg_logprob for s in transcript.segments] == [s.avg_logprob for s in plain.segments]


def test_a_withdrawn_call_stops_after_the_encoder_and_an_unwithdrawn_one_is_unchanged(engine: FasterWhisperEngine) -> None:
    """``should_stop`` true after the encoder pass: no decode runs (TranscriptionStopped); false at
    every poll: the same transcript as a call without it."""
    audio, _ = sf.read(DATA / "librispeech_test-clean_1995-1837-0001.wav", dtype="float32")
    cut = np.ascontiguousarray(audio[: 5 * 16000])
    plain = engine.transcribe(cut, language=LanguageRequest(fixed="en"))
    polls: list[int] = []
    kept = engine.transcribe(cut, language=LanguageRequest(fixed="en"), should_stop=lambda: polls.append(1) is not None)
    assert polls and kept.text == plain.text and [s.avg_logprob for s in kept.segments] == [s.avg_logprob for s in plain.segments]
    spy = _EncoderSpy(engine._model.model)
    engine._model.model = spy
    generated: list[int] = []
    real_generate = spy._model.generate
    spy.generate = lambda *a, **k: generated.append(1) or real_generate(*a, **k)  # type: ignore[attr-defined]
    try:
        with pytest.raises(TranscriptionStopped):
            engine.transcribe(cut, language=LanguageRequest(fixed="en"), should_stop=lambda: True)
    finally:
        engine._model.model = spy._model
    assert len(spy.frames) == 1 and generated == []  # encoded once, never decoded
    assert engine._model.feature_extractor._remembered is None  # nothing held after a stopped call
