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

__all__ = ["StreamResampler", "ENCODINGS", "SAMPLE_RATES_HZ", "ASR_SAMPLE_RATE_HZ", "DEFAULT_ENCODING", "DEFAULT_SAMPLE_RATE_HZ", "decode", "encode", "resample"]

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


class StreamResampler:
    """Resamples one stream of s16le mono PCM chunk by chunk (``soxr.ResampleStream``, HQ).

    The filter delays its output by a few milliseconds: the first chunks may give fewer samples
    (or none); :meth:`flush` returns what is left at the end of the stream.  Chunks need not be
    sample aligned: an odd byte waits for the next chunk.
    """

    def __init__(self, from_hz: int, to_hz: int = ASR_SAMPLE_RATE_HZ) -> None:
        self.from_hz, self.to_hz = from_hz, to_hz
        self._stream = soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16", quality="HQ")
        self._odd = b""

    def process(self, pcm: bytes) -> bytes:
        """s16le at ``from_hz`` in, s16le at ``to_hz`` out (possibly empty)."""
        data = self._odd + bytes(pcm)
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        if not usable:
            return b""
        out = self._stream.resample_chunk(np.frombuffer(data[:usable], dtype="<i2"), last=False)
        return np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        """The delayed tail; the resampler is finished afterwards."""
        self._odd = b""
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return np.asarray(out, dtype="<i2").tobytes()
