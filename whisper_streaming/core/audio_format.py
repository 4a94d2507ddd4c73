"""Per-stream audio formats negotiated with ``%o`` (pure; no I/O).

A stream's ``%s`` payloads are in the caller's ``encoding`` (``pcm_s16le``, ``mulaw``, ``alaw``)
at the caller's ``sample_rate`` (8000 or 16000 Hz).  The server decodes them to int16 at the
caller's rate (the VAD runs there, so result times are seconds of the caller's audio) and
resamples each cut utterance to 16 kHz for Whisper (:func:`resample`, soxr VHQ, whole
utterance at once: no streaming state).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from whisper_streaming.core import g711

__all__ = ["ENCODINGS", "SAMPLE_RATES_HZ", "ASR_SAMPLE_RATE_HZ", "DEFAULT_ENCODING", "DEFAULT_SAMPLE_RATE_HZ", "decode", "encode", "resample"]

ENCODINGS = (g711.PCM_S16LE, g711.MULAW, g711.ALAW)
ASR_SAMPLE_RATE_HZ = 16000
"""Whisper's input rate (openai/whisper ``audio.py`` ``SAMPLE_RATE``): every utterance is resampled to it.
The one place the package defines 16 kHz; every other default refers to this."""
SAMPLE_RATES_HZ = (8000, ASR_SAMPLE_RATE_HZ)
"""The rates a stream's audio may come at (``%o sample_rate``)."""
DEFAULT_ENCODING = g711.PCM_S16LE
DEFAULT_SAMPLE_RATE_HZ = ASR_SAMPLE_RATE_HZ
"""The V1.0 protocol's PCM rate: a stream that negotiates nothing."""


def decode(data: bytes, encoding: str) -> npt.NDArray[np.int16]:
    """Wire bytes of ``encoding`` -> int16 samples (a new array).

    Raises:
        UsageError: unknown encoding, or an odd byte count for ``pcm_s16le``.
    """
    return g711.decode_samples(data, encoding)


def encode(samples: npt.NDArray[np.int16], encoding: str) -> bytes:
    """int16 samples -> wire bytes of ``encoding``."""
    return g711.encode_samples(samples, encoding)


def resample(samples: npt.NDArray[np.int16], from_hz: int, to_hz: int = ASR_SAMPLE_RATE_HZ) -> npt.NDArray[np.int16]:
    """int16 mono samples from ``from_hz`` to ``to_hz`` (soxr VHQ); the same array when the rates match."""
    if from_hz == to_hz:
        return samples
    if len(samples) == 0:
        return np.zeros(0, dtype=np.int16)
    out = soxr.resample(np.asarray(samples, dtype=np.int16), from_hz, to_hz, quality="VHQ")
    return np.asarray(out, dtype=np.int16)
