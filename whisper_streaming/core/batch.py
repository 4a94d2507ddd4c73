"""The result of a batch (whole-file) analysis: pure values, rendered by
:mod:`whisper_streaming.batch.formats` and produced by :mod:`whisper_streaming.batch.service`.

Times are seconds from the start of the file.  The JSON shapes follow OpenAI's
``/v1/audio/transcriptions`` ``verbose_json`` (``segments``, ``words``), with this project's
additions (``speaker``, ``features``, ``speakers``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AcousticFeatures", "SpeakerTurn", "BatchWord", "BatchSegment", "SpeakerSummary", "StageTiming", "BatchResult"]


@dataclass(frozen=True)
class AcousticFeatures:
    """Acoustic features of one segment's audio (:mod:`whisper_streaming.analyzers.acoustic`).

    ``rms_dbfs``: ``20 * log10(rms)``, the RMS level in dB relative to full-scale amplitude 1.0
    (the RMS of a full-scale square wave: a full-scale sine is -3.01 dBFS, a sine of peak -20 dBFS
    is -23.01 dBFS); ``f0_median_hz``/``f0_min_hz``/``f0_max_hz``: the median and the 5th/95th
    percentiles of the fundamental frequency over the voiced frames (None when no frame is
    voiced); ``voiced_fraction``: voiced pitch frames over all of them; ``spectral_centroid_hz`` and
    ``spectral_rolloff_hz`` (85 % of the energy below it): means over frames;
    ``mfcc_mean``: the 13 MFCCs averaged over frames.
    """

    rms_dbfs: float
    f0_median_hz: float | None
    f0_min_hz: float | None
    f0_max_hz: float | None
    voiced_fraction: float
    spectral_centroid_hz: float
    spectral_rolloff_hz: float
    mfcc_mean: tuple[float, ...]


@dataclass(frozen=True)
class SpeakerTurn:
    """``speaker`` (``SPEAKER_00``, ``SPEAKER_01``, ...) speaks from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    speaker: str


@dataclass(frozen=True)
class BatchWord:
    """One word with its times; ``word`` keeps Whisper's leading space (as OpenAI's API)."""

    word: str
    start_s: float
    end_s: float
    probability: float
    speaker: str | None = None


@dataclass(frozen=True)
class BatchSegment:
    """One transcribed segment of the file."""

    id: int
    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[BatchWord, ...] = ()
    speaker: str | None = None
    features: AcousticFeatures | None = None


@dataclass(frozen=True)
class SpeakerSummary:
    """One speaker found by diarization: total speech in seconds and the number of segments."""

    id: str
    total_speech_s: float
    segments: int


@dataclass(frozen=True)
class StageTiming:
    """Wall-clock seconds one stage of a batch job took, and its real-time factor (seconds per
    second of audio)."""

    stage: str
    seconds: float
    rtf: float


@dataclass(frozen=True)
class BatchResult:
    """A whole file's analysis.  ``speakers``/``turns`` are empty without diarization."""

    language: str
    duration_s: float
    text: str
    segments: tuple[BatchSegment, ...]
    speakers: tuple[SpeakerSummary, ...] = ()
    turns: tuple[SpeakerTurn, ...] = ()
    timings: tuple[StageTiming, ...] = ()
