"""The ASR engine interface and its picklable options.

An engine turns one utterance (float32 mono 16 kHz samples) into a
:class:`~whisper_streaming.core.transcript.Transcript`.  Engines are created inside worker
processes by :func:`whisper_streaming.engines.registry.create_engine` from picklable
:class:`EngineOptions`, load their model once, and are called many times.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.core.language import LanguagePolicy, LanguageRequest
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.decoding import DecodeLimits
from whisper_streaming.errors import UsageError

__all__ = ["SAMPLE_RATE_HZ", "DecodeOptions", "BatchDecode", "SpeechScreenOptions", "EngineOptions", "AsrEngine", "takes_should_stop",
           "pcm16_to_float32"]

SAMPLE_RATE_HZ = ASR_SAMPLE_RATE_HZ
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
class BatchDecode:
    """How to decode one chunk of a file for the batch API (picklable; None for streaming).

    ``word_timestamps``: words with times (faster-whisper ``word_timestamps=True``: alignment
    heads and dynamic time warping over the cross-attention, openai/whisper ``timing.py``);
    ``initial_prompt``: Whisper's prompt for this chunk; ``temperature``: one temperature
    instead of the engine's fallback ladder (None: the ladder).  A batch chunk is always decoded
    on Whisper's full 30 s window (chunks are up to 30 s long; the word alignment is checked
    there), never the trimmed one.
    """

    word_timestamps: bool = False
    initial_prompt: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class SpeechScreenOptions:
    """When an utterance counts as speech for the speech screen
    (:mod:`whisper_streaming.engines.speech_screen`, whose docstring gives the measurements).

    ``min_audio_s``: shorter utterances are not screened (always decoded).  ``probability``:
    a window is speech when the detector scores it above this (0..1).  ``min_speech_ms``: the
    utterance is speech when its speech windows add up to at least this (rounded up to whole
    windows: 160 ms is 5 of Silero's 32 ms windows).  ``target_dbfs`` and ``max_gain_db``:
    :func:`whisper_streaming.engines.speech_screen.normalize_level` before the detector.
    """

    min_audio_s: float = 1.5
    probability: float = 0.3
    min_speech_ms: int = 160
    target_dbfs: float = -20.0
    max_gain_db: float = 50.0

    def __post_init__(self) -> None:
        if not self.min_audio_s >= 0:
            raise UsageError(f"min_audio_s must be >= 0, got {self.min_audio_s!r}")
        if not 0.0 <= self.probability < 1.0:
            raise UsageError(f"probability must be in [0, 1), got {self.probability!r}")
        if self.min_speech_ms < 1:
            raise UsageError(f"min_speech_ms must be >= 1, got {self.min_speech_ms!r}")


@dataclass(frozen=True)
class EngineOptions:
    """Everything a worker needs to build its engine (picklable).

    ``model`` is a resolved model: a local CTranslate2 directory or a model name (faster-whisper),
    a ``.pt`` checkpoint or a model name (openai-whisper).
    """

    engine: str = "faster-whisper"
    model: str = "base"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    encoder_window_pad_s: float | None = None  # None: Whisper's full 30 s window
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    retry_window_pad_s: float | None = None  # the window of a retry after a suspect trimmed decode and of its fallbacks (None: 30 s)
    language_policy: LanguagePolicy = field(default_factory=LanguagePolicy)
    speech_screen: SpeechScreenOptions | None = None  # None: every utterance is decoded (engines/speech_screen.py)


@runtime_checkable
class AsrEngine(Protocol):
    """The engine interface: load once in ``__init__``, then transcribe many utterances."""

    name: str

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        """Transcribe ``audio``: float32, shape ``(n,)``, mono, 16 kHz, values in [-1, 1].

        ``language``: the stream's language state (:class:`~whisper_streaming.core.language.LanguageRequest`;
        None: detect, unless the engine's options fix a language).  ``minimal``: the cheapest
        decode the engine has (one greedy attempt, no fallback, half the token bound) -- the
        backend asks for it when it retries an utterance whose first decode hung, so a retry
        never costs what the first try did (issue 19).  Callers pass it only when true, so an
        engine without the keyword still serves every first try.  ``batch``: a chunk of a file
        (:class:`BatchDecode`); passed only for batch jobs, so an engine without the keyword
        still serves every stream.  ``should_stop``: polled between the stages of the call
        (after the encoder, before each further decode attempt); once it returns true the
        engine gives up the call (a speculation that resumed speech withdrew: its decode would
        be thrown away).  A worker passes it only to an engine whose ``transcribe`` takes it.

        Raises:
            AsrError: the engine failed on this input.
            TranscriptionStopped: ``should_stop`` returned true.
        """
        ...


def takes_should_stop(engine: AsrEngine) -> bool:
    """Whether ``engine.transcribe`` accepts ``should_stop`` (an engine without it runs every job to its end)."""
    try:
        return "should_stop" in inspect.signature(engine.transcribe).parameters
    except (TypeError, ValueError):
        return False


def pcm16_to_float32(pcm: bytes | np.ndarray) -> np.ndarray:
    """s16le bytes or an int16 array -> float32 array in [-1, 1), shape ``(n,)``."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    return samples.astype(np.float32) / 32768.0
