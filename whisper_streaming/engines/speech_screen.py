"""A second look at an utterance before it is decoded: is there speech in it at all?

WebRTC VAD, which cuts the stream into utterances, calls any loud periodic sound voiced: hold
music, DTMF and other tones, coloured noise.  Whisper, handed such an utterance, writes
something (measured on synthetic hold music, pygame's ``house_lo`` loop and a DTMF sequence:
``1-2-3-4-4-4-4-4-4-4-``, ``🐬🐬🐬``, ``⚡️``, ``NON``, ``T-POP P-POP``) and spends up to three
quarters of a second of a worker per second of audio on it (fallback temperatures).  A call on hold is
minutes of that.  The VAD's steady-noise screen (``vad.min_dynamic_range_db``) catches
stationary noise and pure tones only; music, DTMF and pink noise fluctuate.

:class:`SpeechScreen` asks a speech/non-speech classifier trained for that, Silero VAD
(https://github.com/snakers4/silero-vad, the v6 ONNX model that faster-whisper ships and uses
for its own ``vad_filter``), for its per-window speech probabilities over the whole utterance,
and calls the utterance speech when windows (32 ms each at 16 kHz) adding up to at least
``min_speech_ms`` score above ``probability``.  :class:`ScreenedEngine` wraps any
:class:`~whisper_streaming.engines.base.AsrEngine` and returns an empty transcript, without
decoding, for an utterance the screen calls non-speech.

Measured (``docs/benchmarks.md``, "Hold music, tones and DTMF"), each utterance's loudest
frames first brought to -20 dBFS (Silero is not level-invariant: at -65 dBFS the speech of
``tel`` scored at most 0.13 without it):

* every utterance the server's VAD cuts from the 16 generalization variants of
  ``shared/data/speech/en`` and ``tel``, five more (quiet Opus, quiet 8 kHz mu-law, clipped, mains
  hum, noisy MP3), the Korean, meeting and 60 s talk files: 693 utterances, of which every one
  Whisper writes text for has at least 7 windows above 0.3 (the closest: a quiet "Hello." in
  7.7 s of a meeting recording, a 0.8 s "Okay.");
* 15 utterances of synthetic hold music, a music loop and two sound effects, DTMF, ringback and
  busy tones, pink comfort noise: at most 3 windows above 0.3 (and white noise, pink noise and
  mains hum of ``bench/noise_cost.py``: no window above 0.5);
* single words cut out of running speech (567, the en and tel files) score lower: 11 of the 339
  words of 0.25 s or more have fewer than 5 windows above 0.3 ("fellow", "She").  Utterances
  shorter than ``min_audio_s`` (1.5 s: a one-word answer is 0.7-1.2 s with the VAD's pre-roll
  and trailing audio) are therefore never screened; Whisper's own no-speech rule for short
  fragments (:func:`~whisper_streaming.engines.decoding.is_non_speech_fragment`) judges them.

Cost: about 2.9 ms of one core per second of audio scored (onnxruntime, one thread), about 2 %
of a base-model decode; an utterance whose first second already holds speech is scored on that
second only (:data:`PREFIX_S`), which brings the average on speech to about 0.9 ms per second of
audio.  Plus about 30 MB of memory per worker process for onnxruntime.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.base import SAMPLE_RATE_HZ, AsrEngine, BatchDecode, SpeechScreenOptions, takes_should_stop
from whisper_streaming.errors import AsrError

__all__ = [
    "SpeechScreenOptions",  # defined in engines.base (EngineOptions carries it), re-exported
    "SpeechDetector",
    "SileroSpeechDetector",
    "ScreenVerdict",
    "SpeechScreen",
    "ScreenedEngine",
    "normalize_level",
    "PREFIX_S",
]

log = logging.getLogger(__name__)

LEVEL_FRAME_SAMPLES = 480
"""Frames of 30 ms at 16 kHz for :func:`normalize_level`'s level measure."""


class SpeechDetector(Protocol):
    """A per-window speech classifier over 16 kHz mono float32 audio."""

    window_samples: int
    """Samples per window (512 for Silero at 16 kHz: 32 ms)."""

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each whole window of ``audio`` (shape ``(n,)``, float32 in
        [-1, 1]): shape ``(n // window_samples,)``, float, each in [0, 1].  Causal: the
        probabilities of a prefix of ``audio`` are those of the same windows of ``audio``."""
        ...


class SileroSpeechDetector:
    """Silero VAD v6 as faster-whisper ships it (``faster_whisper/assets/silero_vad_v6.onnx``,
    run by ``faster_whisper.vad.get_vad_model()`` on onnxruntime with one thread): 512-sample
    windows at 16 kHz, each with 64 samples of the previous window as context (the last
    window's own last 64 samples are zeroed first: faster-whisper's choice, so it scores a
    little differently as the last window than inside a longer run).

    Raises:
        AsrError: from construction, when the model or onnxruntime cannot be loaded.
    """

    window_samples = 512

    def __init__(self) -> None:
        try:
            from faster_whisper.vad import get_vad_model

            self._model = get_vad_model()
        except Exception as exc:  # noqa: BLE001 - ImportError, onnxruntime's own errors
            raise AsrError(f"cannot load the Silero VAD model for the speech screen: {exc}") from exc

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        n = len(audio) // self.window_samples * self.window_samples
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        # a copy: faster-whisper 1.2.1 zeroes the last 64 samples of the array it is given
        # (the last window's context, written through a view), and the caller's must stay intact
        return np.asarray(self._model(np.array(audio[:n], dtype=np.float32))).reshape(-1)


def normalize_level(audio: np.ndarray, target_dbfs: float = -20.0, max_gain_db: float = 50.0) -> tuple[np.ndarray, float]:
    """``audio`` (float32, shape ``(n,)``, full scale 1.0) scaled so that its loudest 30 ms frames
    (the 95th percentile of the frame RMS levels, dBFS) sit at ``target_dbfs``, with a gain in
    ``[-max_gain_db, max_gain_db]`` dB, clipped to [-1, 1]; and the gain in dB.  Audio shorter
    than a frame is returned unchanged (gain 0)."""
    frames = len(audio) // LEVEL_FRAME_SAMPLES
    if frames == 0:
        return audio, 0.0
    x = audio[: frames * LEVEL_FRAME_SAMPLES].astype(np.float64).reshape(frames, LEVEL_FRAME_SAMPLES)
    levels_db = 10.0 * np.log10(np.mean(x * x, axis=1) + 1e-20)
    gain_db = float(np.clip(target_dbfs - np.percentile(levels_db, 95), -max_gain_db, max_gain_db))
    scaled = np.clip(audio * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)
    return scaled, gain_db


@dataclass(frozen=True)
class ScreenVerdict:
    """The screen's call on one utterance: ``speech``; ``speech_windows`` of ``windows`` scored
    above the threshold; ``gain_db`` applied first; ``screen_s`` seconds it took."""

    speech: bool
    speech_windows: int
    windows: int
    gain_db: float
    screen_s: float


class SpeechScreen:
    """Judges whether an utterance holds speech (:class:`SpeechScreenOptions`)."""

    def __init__(self, detector: SpeechDetector, options: SpeechScreenOptions | None = None) -> None:
        self.detector = detector
        self.options = options or SpeechScreenOptions()
        window_ms = 1000 * detector.window_samples / SAMPLE_RATE_HZ
        self.min_speech_windows = max(1, math.ceil(self.options.min_speech_ms / window_ms - 1e-9))
        """Windows above the threshold an utterance needs to count as speech."""

    def judge(self, audio: np.ndarray) -> ScreenVerdict | None:
        """The verdict on ``audio`` (16 kHz mono float32, shape ``(n,)``); None when it is
        shorter than ``min_audio_s`` (not screened).

        The first :data:`PREFIX_S` is scored first, and an utterance whose speech already
        shows there is called speech without scoring the rest (a prefix's windows score as the
        same windows of the whole utterance: the detector is causal, and the level gain is the
        whole utterance's), so the verdict is the one the whole utterance would get.
        ``windows`` in the verdict: the windows counted last.

        A detector that raises does not stop the decode: the error is logged and the verdict
        is None (not screened), as for a short utterance."""
        o = self.options
        if len(audio) < o.min_audio_s * SAMPLE_RATE_HZ:
            return None
        t0 = time.perf_counter()
        try:
            return self._judge(audio, t0)
        except Exception:  # noqa: BLE001 - a broken screen must not cost the utterance its decode
            log.exception("speech screen failed; the utterance is decoded unscreened")
            return None

    def _judge(self, audio: np.ndarray, t0: float) -> ScreenVerdict:
        o = self.options
        scaled, gain_db = normalize_level(audio, o.target_dbfs, o.max_gain_db)
        window = self.detector.window_samples
        prefix = int(PREFIX_S * SAMPLE_RATE_HZ) // window * window
        if len(scaled) >= 2 * prefix:  # most speech shows in its first second: spare scoring the rest
            # one window more than the prefix, dropped: the detector scores a run's last window
            # differently (SileroSpeechDetector), the prefix's last must score as in the whole
            p = self.detector.probabilities(scaled[: prefix + window])[: prefix // window]
            hits = int(np.count_nonzero(p > o.probability))
            if hits >= self.min_speech_windows:
                return ScreenVerdict(True, hits, int(p.size), gain_db, time.perf_counter() - t0)
        p = self.detector.probabilities(scaled)
        hits = int(np.count_nonzero(p > o.probability))
        return ScreenVerdict(hits >= self.min_speech_windows, hits, int(p.size), gain_db, time.perf_counter() - t0)


PREFIX_S = 1.0
""":meth:`SpeechScreen.judge` scores this much of an utterance of at least twice as long first
(rounded down to whole windows)."""


class ScreenedEngine:
    """An :class:`~whisper_streaming.engines.base.AsrEngine` that screens each streaming
    utterance (and partial) with a :class:`SpeechScreen` before handing it to ``inner``.

    An utterance called non-speech is not decoded: the transcript is empty, with
    ``no_speech_screened`` set, ``attempts`` 0, and no language (``""``, probability 0: nothing
    was decoded, and the session never lets an empty result set a language).  Batch decodes
    (``batch`` given) are never screened.  ``screened`` counts the calls screened out
    (utterances, speculations, partials); every other attribute read is ``inner``'s.
    """

    def __init__(self, inner: AsrEngine, screen: SpeechScreen) -> None:
        self._inner = inner
        self.screen = screen
        self.screened = 0
        self._inner_stops = takes_should_stop(inner)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def inner(self) -> AsrEngine:
        """The wrapped engine (to patch or inspect it: attribute reads reach it, writes do not)."""
        return self._inner

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name == "_inner":  # copy/pickle probe these before __init__ ran
            raise AttributeError(name)
        return getattr(self._inner, name)

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        """See :meth:`whisper_streaming.engines.base.AsrEngine.transcribe`."""
        if batch is None:
            verdict = self.screen.judge(audio)
            if verdict is not None and not verdict.speech:
                self.screened += 1
                log.debug("utterance of %.2f s screened as non-speech (%d of %d windows)", len(audio) / SAMPLE_RATE_HZ,
                          verdict.speech_windows, verdict.windows)
                return Transcript("", "", 0.0, (), len(audio) / SAMPLE_RATE_HZ, attempts=0,
                                  no_speech_screened=True, decode_s=verdict.screen_s)
        extra: dict[str, object] = {}
        if minimal:
            extra["minimal"] = True
        if batch is not None:
            extra["batch"] = batch
        if should_stop is not None and self._inner_stops:
            extra["should_stop"] = should_stop
        return self._inner.transcribe(audio, language=language, **extra)  # type: ignore[arg-type]
