"""Acoustic features of a segment's audio with librosa: level, pitch, spectral shape, MFCC.

:func:`acoustic_features` fills :class:`whisper_streaming.core.batch.AcousticFeatures` for one
mono float32 signal; :func:`segment_features` does it for every span of a file (the batch API's
``segments[].features``).  What each number is:

* ``rms_dbfs``: ``20 * log10(rms)`` of all the samples, dB relative to full-scale amplitude 1.0
  (so a sine of peak -20 dBFS is -23.01 dBFS, a full-scale sine -3.01 dBFS); digital silence is
  floored at :data:`RMS_FLOOR_DBFS` (JSON has no -inf).
* pitch: ``librosa.yin`` (de Cheveigné & Kawahara 2002) from :data:`F0_MIN_HZ` to
  :data:`F0_MAX_HZ`, 64 ms frames (1024 samples at 16 kHz; yin's window is half of it) every
  10 ms.  ``librosa.pyin`` was 22-38 times slower (6.5-8.7 s per minute of speech on 2 cores:
  over a minute for a 10-minute file; docs/benchmarks.md "Acoustic features and media decoding"), so yin it is, with our
  own voicing decision, as yin returns an estimate for every frame: a frame is voiced when its
  normalized autocorrelation at yin's period is at least :data:`VOICING_THRESHOLD` (Praat's
  default voicing threshold, Boersma 1993) and its RMS is within :data:`SILENCE_RELATIVE_DB` of
  the segment's loudest frame (after Praat's silence threshold, 0.03 of the global peak) and above
  :data:`VOICED_FLOOR_DBFS`.  ``f0_median_hz`` is the median over voiced frames,
  ``f0_min_hz``/``f0_max_hz`` their 5th and 95th percentiles (robust to the odd octave error of a
  single frame); all None when no frame is voiced or the signal is shorter than one pitch frame.
  ``voiced_fraction``: voiced frames over all pitch frames (silence included).
* ``spectral_centroid_hz``, ``spectral_rolloff_hz`` (``roll_percent`` 0.85): librosa's, on one
  magnitude STFT with librosa's defaults (``n_fft`` 2048, hop 512, Hann window, centred), and
  the plain mean over all its frames (no weighting by energy: a frame of digital silence counts
  as 0 Hz).
* ``mfcc_mean``: the 13 MFCCs of ``librosa.feature.mfcc`` with its defaults (the same STFT, 128
  Slaney mel bands, ``power_to_db`` with ``top_db`` 80, DCT-II ortho), averaged over frames.

The F0 range, 65-400 Hz: speaking F0 of adult men is about 85-180 Hz and of women 165-255 Hz
(Baken, *Clinical Measurement of Speech and Voice*, 1987); 65 Hz (C2, the floor of librosa's pyin example) keeps
low and creaky voices.  On the 31 English speech files of ``../shared/data/speech/en``, a 50-800 Hz
search put 5.6 % of the voiced frames above 400 Hz, and its 95th percentile at 500-700 Hz in the
files of men whose median is near 100 Hz: octave errors, which the 400 Hz ceiling removes.
Against ``librosa.pyin`` (65-400 Hz) on the same files, the per-file median F0 differs by 1.8 %
(median over files) and the voiced fraction by -0.02 on average; the 95th percentile differs by
4 % in the median file but by much more in a few noisy ones (yin's octave errors).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import librosa
import numpy as np
import numpy.typing as npt

from whisper_streaming.core.batch import AcousticFeatures
from whisper_streaming.errors import UsageError

__all__ = [
    "F0_MIN_HZ",
    "F0_MAX_HZ",
    "PITCH_FRAME_S",
    "PITCH_HOP_S",
    "VOICING_THRESHOLD",
    "SILENCE_RELATIVE_DB",
    "VOICED_FLOOR_DBFS",
    "RMS_FLOOR_DBFS",
    "N_MFCC",
    "acoustic_features",
    "segment_features",
    "warm_compiled",
]

log = logging.getLogger(__name__)

F0_MIN_HZ = 65.0
F0_MAX_HZ = 400.0
PITCH_FRAME_S = 0.064
"""yin's frame (1024 samples at 16 kHz; its difference window is half of it, 32 ms, which holds
two periods of 65 Hz)."""
PITCH_HOP_S = 0.010
VOICING_THRESHOLD = 0.45
"""Normalized autocorrelation at the period for a voiced frame (Praat ``To Pitch (ac)`` voicing threshold)."""
SILENCE_RELATIVE_DB = -30.0
"""A frame quieter than the segment's loudest frame by more than this is unvoiced (Praat's silence
threshold 0.03 = -30 dB, here on frame RMS)."""
VOICED_FLOOR_DBFS = -60.0
"""A frame with RMS below this is unvoiced however periodic (hum and dither in pauses)."""
RMS_FLOOR_DBFS = -120.0
"""``rms_dbfs`` of digital silence (and the floor of every level)."""
N_MFCC = 13
ROLL_PERCENT = 0.85
_N_FFT = 2048  # librosa.feature.* defaults
_HOP = 512
_N_MELS = 128
_LOW_PERCENTILE, _HIGH_PERCENTILE = 5.0, 95.0


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate_hz: int) -> npt.NDArray[np.float32]:
    """librosa.filters.mel with melspectrogram's defaults, built once per rate (not per segment)."""
    return librosa.filters.mel(sr=sample_rate_hz, n_fft=_N_FFT, n_mels=_N_MELS).astype(np.float32)


def _dbfs(level: float) -> float:
    return float(max(20.0 * np.log10(level) if level > 0 else RMS_FLOOR_DBFS, RMS_FLOOR_DBFS))


def _pitch(y: npt.NDArray[np.float32], sample_rate_hz: int) -> tuple[npt.NDArray[np.float64], int]:
    """(f0 of the voiced frames in Hz, number of pitch frames); ``([], 0)`` for a signal shorter than one frame."""
    frame_length = int(round(PITCH_FRAME_S * sample_rate_hz))
    hop = max(1, int(round(PITCH_HOP_S * sample_rate_hz)))
    window = frame_length // 2
    if y.size < frame_length or sample_rate_hz / F0_MIN_HZ >= frame_length - window - 1:
        return np.zeros(0), 0
    f0 = librosa.yin(y, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sample_rate_hz, frame_length=frame_length,
                     hop_length=hop, center=True, pad_mode="constant")
    # the frames yin saw (center=True, constant padding), as (frame_length, n_frames)
    frames = librosa.util.frame(np.pad(y, frame_length // 2), frame_length=frame_length, hop_length=hop)
    frames = frames[:, : f0.size]
    period = np.clip(np.rint(sample_rate_hz / f0).astype(np.int64), 1, frame_length - window)
    head = frames[:window]
    lagged = np.take_along_axis(frames, period[None, :] + np.arange(window)[:, None], axis=0)
    energy = np.sqrt(np.einsum("ij,ij->j", head, head, dtype=np.float64) * np.einsum("ij,ij->j", lagged, lagged, dtype=np.float64))
    periodicity = np.einsum("ij,ij->j", head, lagged, dtype=np.float64) / np.maximum(energy, 1e-20)
    frame_rms = np.sqrt(np.mean(np.square(head, dtype=np.float64), axis=0))
    loud_enough = (frame_rms > 0) & (frame_rms >= 10 ** (VOICED_FLOOR_DBFS / 20))
    loud_enough &= frame_rms >= frame_rms.max() * 10 ** (SILENCE_RELATIVE_DB / 20)
    voiced = (periodicity >= VOICING_THRESHOLD) & loud_enough & np.isfinite(f0)
    return f0[voiced].astype(np.float64), int(f0.size)


def acoustic_features(samples: npt.NDArray[np.floating], sample_rate_hz: int) -> AcousticFeatures:
    """The acoustic features of one mono signal (see the module docstring for each definition).

    ``samples``: shape ``(n,)``, float (float32 is used; full scale 1.0), any length: an empty or
    very short signal (under one 64 ms pitch frame) gives ``f0_*`` None and ``voiced_fraction`` 0,
    an empty one also the level floor and zeros for the spectral features.
    ``sample_rate_hz``: the rate (16000 for the batch API; the spectral features use librosa's
    default 2048-sample STFT at any rate).

    Raises:
        UsageError: ``samples`` is not one-dimensional, or ``sample_rate_hz`` is not positive.
    """
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise UsageError(f"samples must have shape (n,), not {y.shape}")
    if sample_rate_hz <= 0:
        raise UsageError(f"sample_rate_hz must be positive, not {sample_rate_hz}")
    if y.size == 0:
        return AcousticFeatures(rms_dbfs=RMS_FLOOR_DBFS, f0_median_hz=None, f0_min_hz=None, f0_max_hz=None,
                                voiced_fraction=0.0, spectral_centroid_hz=0.0, spectral_rolloff_hz=0.0,
                                mfcc_mean=(0.0,) * N_MFCC)
    y = y if np.all(np.isfinite(y)) else np.nan_to_num(y)
    rms_dbfs = _dbfs(float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))))

    voiced_f0, n_pitch_frames = _pitch(y, sample_rate_hz)
    if voiced_f0.size:
        f0_median, f0_low, f0_high = (float(v) for v in (np.median(voiced_f0), *np.percentile(voiced_f0, [_LOW_PERCENTILE, _HIGH_PERCENTILE])))
    else:
        f0_median = f0_low = f0_high = None
    voiced_fraction = voiced_f0.size / n_pitch_frames if n_pitch_frames else 0.0

    # one magnitude STFT for centroid, rolloff and MFCC (librosa.feature's defaults); a signal
    # shorter than n_fft is zero-padded to it (librosa would warn and pad the same way)
    y_stft = y if y.size >= _N_FFT else np.pad(y, (0, _N_FFT - y.size))
    magnitude = np.abs(librosa.stft(y_stft, n_fft=_N_FFT, hop_length=_HOP))
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sample_rate_hz, n_fft=_N_FFT, hop_length=_HOP)
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=sample_rate_hz, n_fft=_N_FFT, hop_length=_HOP, roll_percent=ROLL_PERCENT)
    mel_power = _mel_basis(sample_rate_hz) @ np.square(magnitude)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel_power), n_mfcc=N_MFCC)
    return AcousticFeatures(
        rms_dbfs=rms_dbfs,
        f0_median_hz=f0_median,
        f0_min_hz=f0_low,
        f0_max_hz=f0_high,
        voiced_fraction=float(voiced_fraction),
        spectral_centroid_hz=float(np.mean(centroid)),
        spectral_rolloff_hz=float(np.mean(rolloff)),
        mfcc_mean=tuple(float(v) for v in np.mean(mfcc, axis=1)),
    )


def segment_features(samples: npt.NDArray[np.floating], sample_rate_hz: int,
                     spans_s: Sequence[tuple[float, float]]) -> list[AcousticFeatures]:
    """:func:`acoustic_features` of each ``(start_s, end_s)`` span of ``samples``, in order.

    Each span is computed on its own slice (no context from outside it), so a result equals the
    single call on that slice; the work is proportional to the total span length (0.4-1 s per
    minute of speech on 2 cores, docs/benchmarks.md), with the mel filter bank built once per
    rate.  Spans are clipped to the signal; an empty or reversed span gets the empty signal's
    features.

    Raises:
        UsageError: as :func:`acoustic_features`, or a span with a non-finite time.
    """
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise UsageError(f"samples must have shape (n,), not {y.shape}")
    out = []
    for start_s, end_s in spans_s:
        if not (np.isfinite(start_s) and np.isfinite(end_s)):
            raise UsageError(f"span times must be finite, not ({start_s}, {end_s})")
        start = min(max(int(round(start_s * sample_rate_hz)), 0), y.size)
        end = min(max(int(round(end_s * sample_rate_hz)), start), y.size)
        out.append(acoustic_features(y[start:end], sample_rate_hz))
    return out


def warm_compiled() -> None:
    """Compile librosa's numba functions that :func:`acoustic_features` uses, or load them from
    numba's on-disk cache, in this process.

    librosa compiles its numba functions (``guvectorize``/``jit`` with explicit signatures and
    ``cache=True``) when its submodules are first imported, and writes them to a cache next to its
    sources (or under ``NUMBA_CACHE_DIR``).  Two processes that compile the same function at the
    same moment can leave a cache index that names the other's machine code, and a process that
    loads it later crashes (numba/numba#10128, librosa/librosa#1998).  The install step runs this
    once (``make install``), so that later processes only read the cache; the batch analysis
    process runs it when it starts.  One feature extraction of a voiced tone in noise and one of
    a signal shorter than a pitch frame load every submodule involved
    (``tests/unit/analyzers/test_acoustic.py`` checks that nothing is compiled afterwards, at
    other rates, dtypes, strides and lengths).  About 30 s with an empty cache on 2 cores, 3-4 s
    with a warm one (mostly importing librosa).
    """
    rate_hz = 16000
    t = np.arange(rate_hz, dtype=np.float32) / rate_hz
    rng = np.random.default_rng(0)
    tone = (0.1 * np.sin(2 * np.pi * 150.0 * t) + 0.01 * rng.standard_normal(rate_hz)).astype(np.float32)
    acoustic_features(tone, rate_hz)
    acoustic_features(tone[:100], rate_hz)
