"""ASR engines behind one small interface.

An engine turns one utterance (float32 mono 16 kHz samples) into a :class:`Transcript`.
Engines are created inside worker processes by :func:`create_engine` from picklable
:class:`EngineOptions`, load their model once, and are called many times.

Engines here:

* ``faster-whisper`` -- CTranslate2 Whisper (https://github.com/SYSTRAN/faster-whisper),
  int8 on CPU by default.  ``transcribe()`` there returns a *lazy* generator; it is consumed
  inside :meth:`FasterWhisperEngine.transcribe` so the work happens in the worker.

Hallucination guards are Whisper's own decoding rules (openai/whisper ``transcribe.py``):
a segment whose ``no_speech_prob`` exceeds ``no_speech_threshold`` while its
``avg_logprob`` is below ``log_prob_threshold`` is dropped as silence; a decode whose gzip
``compression_ratio`` exceeds ``compression_ratio_threshold`` (repetition loop) or whose
``avg_logprob`` is below ``log_prob_threshold`` is retried at the next temperature.
We never condition on previous text by default (a known source of runaway repetition).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .errors import AsrError, UsageError

__all__ = [
    "SAMPLE_RATE_HZ",
    "DecodeOptions",
    "EngineOptions",
    "TranscriptSegment",
    "Transcript",
    "AsrEngine",
    "FasterWhisperEngine",
    "ENGINES",
    "create_engine",
    "pcm16_to_float32",
]

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
"""Whisper's input sample rate (openai/whisper ``audio.py`` ``SAMPLE_RATE``)."""


@dataclass(frozen=True)
class DecodeOptions:
    """Per-utterance decoding options shared by every engine.

    Defaults follow openai/whisper's ``transcribe()`` except ``condition_on_previous_text``.
    """

    language: str | None = None
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0
    compression_ratio_threshold: float | None = 2.4
    condition_on_previous_text: bool = False
    initial_prompt: str | None = None


@dataclass(frozen=True)
class EngineOptions:
    """Everything a worker needs to build its engine (picklable).

    ``model`` is a resolved model: a local CTranslate2 directory or a model name.
    """

    engine: str = "faster-whisper"
    model: str = "base"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass(frozen=True)
class TranscriptSegment:
    """One decoded segment; times in seconds from the start of the utterance audio."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class Transcript:
    """The final hypothesis for one utterance.

    ``text`` is the segments' text joined and stripped; empty when every segment was
    judged silence/hallucination.  ``language`` is an ISO 639-1 code (as Whisper reports).
    """

    text: str
    language: str
    language_probability: float
    segments: tuple[TranscriptSegment, ...]
    audio_duration_s: float


@runtime_checkable
class AsrEngine(Protocol):
    """The engine interface: load once in ``__init__``, then transcribe many utterances."""

    name: str

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Transcribe ``audio``: float32, shape ``(n,)``, mono, 16 kHz, values in [-1, 1].

        Raises:
            AsrError: the engine failed on this input.
        """
        ...


def pcm16_to_float32(pcm: bytes | np.ndarray) -> np.ndarray:
    """s16le bytes or an int16 array -> float32 array in [-1, 1), shape ``(n,)``."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    return samples.astype(np.float32) / 32768.0


class FasterWhisperEngine:
    """faster-whisper (CTranslate2) engine.

    Raises:
        ModelError/AsrError: from construction if the model cannot be loaded.
    """

    name = "faster-whisper"

    def __init__(self, options: EngineOptions) -> None:
        from faster_whisper import WhisperModel  # heavy import, only inside workers

        self.options = options
        try:
            self._model = WhisperModel(
                options.model,
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.cpu_threads,
                num_workers=1,
            )
        except Exception as exc:  # noqa: BLE001 - CTranslate2/HF raise many kinds
            raise AsrError(f"cannot load faster-whisper model {options.model!r}: {exc}") from exc

    def transcribe(self, audio: np.ndarray) -> Transcript:
        d = self.options.decode
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise UsageError("audio must be a 1-D float32 array")
        try:
            segments, info = self._model.transcribe(
                audio,
                language=d.language,
                beam_size=d.beam_size,
                temperature=list(d.temperatures),
                no_speech_threshold=d.no_speech_threshold,
                log_prob_threshold=d.log_prob_threshold,
                compression_ratio_threshold=d.compression_ratio_threshold,
                condition_on_previous_text=d.condition_on_previous_text,
                initial_prompt=d.initial_prompt,
                vad_filter=False,
                without_timestamps=False,
            )
            decoded = tuple(
                TranscriptSegment(s.start, s.end, s.text, s.avg_logprob, s.no_speech_prob, s.compression_ratio)
                for s in segments  # consume the lazy generator here, in the worker
            )
        except Exception as exc:  # noqa: BLE001
            raise AsrError(f"faster-whisper failed: {exc}") from exc
        text = " ".join(s.text.strip() for s in decoded if s.text.strip())
        return Transcript(text, info.language, info.language_probability, decoded, len(audio) / SAMPLE_RATE_HZ)


ENGINES: dict[str, Callable[[EngineOptions], AsrEngine]] = {"faster-whisper": FasterWhisperEngine}
"""Engine name (``model.engine`` in the config) -> constructor."""


def create_engine(options: EngineOptions) -> AsrEngine:
    """Build the engine named by ``options.engine``.

    Raises:
        UsageError: unknown engine name.
        AsrError: the model failed to load.
    """
    try:
        factory = ENGINES[options.engine]
    except KeyError:
        raise UsageError(f"unknown engine {options.engine!r}; known: {', '.join(ENGINES)}") from None
    return factory(options)
