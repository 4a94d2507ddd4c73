"""Reading audio files as 16 kHz mono s16 PCM for streaming (soundfile + soxr).

Raw ``.pcm``/``.raw`` files are taken as headerless s16le at 16 kHz mono (the wire format).
Anything libsndfile reads (WAV, FLAC, OGG ...) is mixed down to mono and resampled with
soxr's VHQ mode (https://python-soxr.readthedocs.io), never by naive decimation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.errors import UsageError

__all__ = ["RAW_SUFFIXES", "load_pcm16"]

RAW_SUFFIXES = (".pcm", ".raw", ".s16")


def load_pcm16(path: str | os.PathLike[str], *, sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ) -> np.ndarray:
    """Read ``path`` as int16 mono samples at ``sample_rate_hz``; shape ``(n,)``.

    Raises:
        UsageError: the file is missing, unreadable, or an odd-sized raw file.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such audio file: {p}")
    if p.suffix.lower() in RAW_SUFFIXES:
        data = p.read_bytes()
        if len(data) % 2:
            raise UsageError(f"{p}: raw PCM must be s16le (even byte count)")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    import soundfile
    import soxr

    try:
        audio, rate = soundfile.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise UsageError(f"cannot read {p}: {exc}") from exc
    mono = audio.mean(axis=1)
    if rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz, quality="VHQ")
    return (np.clip(mono, -1.0, 32767 / 32768) * 32768.0).round().astype(np.int16)
