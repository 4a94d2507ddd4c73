"""The ``openai-whisper`` engine: OpenAI's reference Whisper implementation (PyTorch).

Interchangeable with :class:`~whisper_streaming.engines.faster_whisper.FasterWhisperEngine`: same
:class:`~whisper_streaming.engines.faster_whisper.EngineOptions`, same :class:`~whisper_streaming.engines.faster_whisper.Transcript`.
``torch`` and ``whisper`` are imported when the engine is built (in the worker process), so
importing this package never needs them.

``EngineOptions.model`` is a ``.pt`` checkpoint path or an openai-whisper model name (``tiny``
... ``large-v3``, downloaded by openai-whisper into ``~/.cache/whisper`` when online).  With
``model.size: base`` the server passes the bundled base model converted from CTranslate2
(:func:`whisper_streaming.models.resolve.converted_bundled_base`).

Decoding is ``whisper.transcribe()`` itself (the reference decoding, with its temperature
fallback and hallucination guards), with :class:`~whisper_streaming.engines.faster_whisper.DecodeOptions` mapped
onto its arguments: ``beam_size`` at temperature 0, ``best_of`` 5 when sampling (as
faster-whisper's default), fp16 only on CUDA.  With ``language=None`` the language is
detected first, on the same 30 s mel window ``transcribe()`` would use, so the probability
can be reported; then ``transcribe()`` decodes with that language.
``encoder_window_pad_s`` does not apply: openai-whisper always encodes a 30 s window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import logging
import os

import numpy as np

from whisper_streaming.engines.base import SAMPLE_RATE_HZ, BatchDecode, EngineOptions

from whisper_streaming.core.transcript import Transcript, TranscriptSegment, TranscriptWord
from whisper_streaming.engines.segment_trim import joined_text
from whisper_streaming.errors import AsrError, TranscriptionStopped, UsageError
from whisper_streaming.core.language import LanguageRequest, choose_language

__all__ = ["OpenAIWhisperEngine", "BEST_OF"]

log = logging.getLogger(__name__)

BEST_OF = 5
"""Candidates sampled at temperature > 0 (openai-whisper CLI and faster-whisper default)."""


class OpenAIWhisperEngine:
    """openai-whisper (PyTorch) engine.

    Raises:
        AsrError: from construction if torch/openai-whisper are missing or the model cannot be
            loaded (an unknown name, a name that must be downloaded while offline, a bad file).
    """

    name = "openai-whisper"

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        try:
            import torch
            import whisper
        except ImportError as exc:
            raise AsrError(
                f"the openai-whisper engine needs torch and openai-whisper ({exc}); "
                "install them: pip install -r requirements.txt && pip install --no-deps -r requirements-openai-whisper.txt"
            ) from exc
        self._torch, self._whisper = torch, whisper
        if options.cpu_threads > 0:
            torch.set_num_threads(options.cpu_threads)
        device = options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.fp16 = device.startswith("cuda") and options.compute_type != "float32"
        if options.encoder_window_pad_s is not None:
            log.info("encoder_window_pad_s does not apply to openai-whisper (it always encodes 30 s)")
        model = options.model
        if not os.path.isfile(model) and model not in whisper.available_models():
            raise AsrError(
                f"cannot load openai-whisper model {model!r}: not a checkpoint file nor one of "
                f"{', '.join(whisper.available_models())}"
            )
        try:
            self._model = whisper.load_model(model, device=device)
        except Exception as exc:  # noqa: BLE001 - torch, urllib, pickle raise many kinds
            raise AsrError(f"cannot load openai-whisper model {model!r}: {exc}") from exc
        self._model.eval()

    def _language(self, audio: np.ndarray, request: LanguageRequest) -> tuple[str, float]:
        if request.fixed is not None:
            return request.fixed, 1.0
        if not self._model.is_multilingual:
            return "en", 1.0
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        mel = log_mel_spectrogram(audio, self._model.dims.n_mels, padding=N_SAMPLES)
        dtype = self._torch.float16 if self.fp16 else self._torch.float32
        segment = pad_or_trim(mel, N_FRAMES).to(self._model.device).to(dtype)  # as transcribe() does
        _, probs = self._model.detect_language(segment)
        code, probability = choose_language(request, {k: float(v) for k, v in probs.items()}, len(audio) / SAMPLE_RATE_HZ,
                                            self.options.language_policy)
        assert code is not None
        return code, probability

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        """See :meth:`whisper_streaming.engines.base.AsrEngine.transcribe` (the language rule is the same;
        the decoding guards of :mod:`whisper_streaming.engines.decoding` are the faster-whisper engine's only).
        ``minimal``: greedy, the first temperature only.  ``batch``: the request's prompt and
        temperature, and words (openai-whisper's ``word_timestamps``) when asked.  ``should_stop``
        is polled once, after the language detection (its own encoder pass) and before the
        decode, raising :class:`~whisper_streaming.errors.TranscriptionStopped`."""
        request = language or LanguageRequest(fixed=self.options.decode.language)
        d = self.options.decode
        if minimal:
            d = replace(d, beam_size=1, temperatures=d.temperatures[:1])
        if batch is not None:
            d = replace(d, initial_prompt=batch.initial_prompt or d.initial_prompt,
                        temperatures=(batch.temperature,) if batch.temperature is not None else d.temperatures)
        words = batch is not None and batch.word_timestamps
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise UsageError("audio must be a 1-D float32 array")
        try:
            with self._torch.inference_mode():
                language, probability = self._language(audio, request)
                if should_stop is not None and should_stop():
                    raise TranscriptionStopped("withdrawn by the caller")
                result = self._whisper.transcribe(
                    self._model,
                    audio,
                    verbose=None,
                    language=language,
                    task="transcribe",
                    temperature=tuple(d.temperatures),
                    beam_size=d.beam_size if d.beam_size > 1 else None,  # None: greedy, as faster-whisper's 1
                    best_of=BEST_OF,
                    compression_ratio_threshold=d.compression_ratio_threshold,
                    logprob_threshold=d.log_prob_threshold,
                    no_speech_threshold=d.no_speech_threshold,
                    condition_on_previous_text=d.condition_on_previous_text,
                    initial_prompt=d.initial_prompt,
                    word_timestamps=words,
                    fp16=self.fp16,
                )
        except TranscriptionStopped:
            raise
        except Exception as exc:  # noqa: BLE001
            raise AsrError(f"openai-whisper failed: {exc}") from exc
        segments = tuple(
            TranscriptSegment(
                float(s["start"]), float(s["end"]), s["text"], float(s["avg_logprob"]),
                float(s["no_speech_prob"]), float(s["compression_ratio"]),
                tuple(TranscriptWord(float(w["start"]), float(w["end"]), w["word"], float(w["probability"])) for w in s.get("words") or ()),
            )
            for s in result["segments"]
        )
        text = joined_text(segments)
        return Transcript(text, result.get("language") or language, probability, segments, len(audio) / SAMPLE_RATE_HZ)
