"""The faster-whisper engine's feature-extractor memory: only an identical call is answered from it."""

from __future__ import annotations

import numpy as np

from whisper_streaming.engines.faster_whisper import _RememberedFeatures


class _Extractor:
    sampling_rate = 16000

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int | None]] = []

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None) -> np.ndarray:
        self.calls.append((len(waveform), padding, chunk_length))
        return np.full((80, len(waveform) // 160), float(len(self.calls)), dtype=np.float32)


def test_the_remembered_waveform_is_answered_from_memory_and_others_are_computed() -> None:
    inner = _Extractor()
    fe = _RememberedFeatures(inner)
    audio = np.zeros(16000, dtype=np.float32)
    first = fe(audio)
    fe.remember(audio, first)
    assert fe(audio) is first and len(inner.calls) == 1
    assert fe(audio.copy()) is not first  # equal samples, another array: computed
    assert fe(audio, padding=0) is not first and fe(audio, chunk_length=30) is not first
    assert inner.calls[1:] == [(16000, 160, None), (16000, 0, None), (16000, 160, 30)]
    assert fe.sampling_rate == 16000  # attributes are the wrapped extractor's


def test_forgetting_computes_again() -> None:
    inner = _Extractor()
    fe = _RememberedFeatures(inner)
    audio = np.zeros(3200, dtype=np.float32)
    fe.remember(audio, fe(audio))
    fe.remember(None)
    fe(audio)
    assert len(inner.calls) == 2
