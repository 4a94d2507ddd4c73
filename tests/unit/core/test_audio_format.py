"""Per-stream audio formats: G.711 decode, 8 kHz -> 16 kHz resampling (audio_format.py)."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_streaming.core import audio_format

from whisper_streaming.core import g711
from whisper_streaming.errors import UsageError


def sine(freq_hz: float, rate: int, seconds: float = 1.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_decode_round_trips_within_companding_error(encoding: str) -> None:
    x = sine(440, 8000)
    wire = audio_format.encode(x, encoding)
    assert len(wire) == len(x)
    y = audio_format.decode(wire, encoding)
    assert y.dtype == np.int16 and len(y) == len(x)
    # G.711 keeps ~12 bits: the error is a few percent of the amplitude at most
    assert np.max(np.abs(y.astype(np.int32) - x)) < 8000 * 0.04
    np.testing.assert_array_equal(audio_format.decode(b"\xff\x7f", "mulaw"), [0, 0])  # both mu-law zeros
    assert audio_format.decode(b"\xd5", "alaw")[0] == g711.ALAW_DECODE_TABLE[0xD5]


def test_pcm_s16le_decode_and_odd_length() -> None:
    np.testing.assert_array_equal(audio_format.decode(b"\x01\x00\xff\xff", "pcm_s16le"), [1, -1])
    with pytest.raises(UsageError):
        audio_format.decode(b"\x01", "pcm_s16le")
    with pytest.raises(UsageError):
        audio_format.decode(b"\x01", "opus")


def test_8k_to_16k_length_and_content() -> None:
    x = sine(440, 8000, seconds=2.0)
    y = audio_format.resample(x, 8000)
    assert y.dtype == np.int16 and len(y) == 2 * len(x)
    assert peak_hz(y, 16000) == pytest.approx(440, abs=1)
    # same level; nothing above the 4 kHz band of the caller's audio
    mid = slice(1000, -1000)
    assert np.sqrt(np.mean(y[mid].astype(np.float64) ** 2)) == pytest.approx(8000 / np.sqrt(2), rel=0.02)
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spectrum[freqs > 4100].max() < spectrum.max() * 1e-3


def test_resample_identity_and_empty() -> None:
    x = sine(300, 16000, seconds=0.1)
    assert audio_format.resample(x, 16000) is x
    assert len(audio_format.resample(np.zeros(0, dtype=np.int16), 8000)) == 0
