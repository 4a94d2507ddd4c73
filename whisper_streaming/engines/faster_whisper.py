"""ASR engines behind one small interface.

An engine turns one utterance (float32 mono 16 kHz samples) into a :class:`Transcript`.
Engines are created inside worker processes by :func:`create_engine` from picklable
:class:`EngineOptions`, load their model once, and are called many times.

Engines here:

* ``faster-whisper`` -- CTranslate2 Whisper (https://github.com/SYSTRAN/faster-whisper),
  int8 on CPU by default.  ``transcribe()`` there returns a *lazy* generator; it is consumed
  inside :meth:`FasterWhisperEngine.transcribe` so the work happens in the worker.
* ``openai-whisper`` -- OpenAI's reference implementation on PyTorch
  (:class:`whisper_streaming.engines.openai_whisper.OpenAIWhisperEngine`, imported only when built).

Hallucination guards are Whisper's own decoding rules (openai/whisper ``transcribe.py``):
a segment whose ``no_speech_prob`` exceeds ``no_speech_threshold`` while its
``avg_logprob`` is below ``log_prob_threshold`` is dropped as silence; a decode whose gzip
``compression_ratio`` exceeds ``compression_ratio_threshold`` (repetition loop) or whose
``avg_logprob`` is below ``log_prob_threshold`` is retried at the next temperature.
We never condition on previous text by default (a known source of runaway repetition).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from whisper_streaming.engines.decoding import AttemptOutcome, Attempts, DecodeBudget, DecodeLimits, cut_echo_kept, cut_loops_kept, is_non_speech_fragment, run_attempts
from whisper_streaming.engines.segment_trim import joined_text, trim_segments
from whisper_streaming.core.transcript import Transcript, TranscriptSegment, TranscriptWord
from whisper_streaming.engines.base import SAMPLE_RATE_HZ, AsrEngine, BatchDecode, DecodeOptions, EngineOptions, pcm16_to_float32
from whisper_streaming.errors import AsrError, TranscriptionStopped, UsageError
from whisper_streaming.core.language import LanguagePolicy, LanguageRequest, choose_language, detect_first, prefer_switch, recheck_language

__all__ = ["FasterWhisperEngine", "MINIMAL_WINDOW_PAD_S", "MIN_FOLLOW_WINDOW_S", "content_frames", "trim_window_padding"]

log = logging.getLogger(__name__)




def content_frames(features: np.ndarray) -> int:
    """Frames up to and including the last non-zero one of a log-mel window (shape ``(...,
    n_mels, frames)``, zero-padded by ``pad_or_trim``): the audio the window holds, at 100
    frames per second."""
    voiced = np.flatnonzero(np.any(features != 0, axis=-2).reshape(-1, features.shape[-1]).any(axis=0))
    return int(voiced[-1]) + 1 if voiced.size else 0


MIN_FOLLOW_WINDOW_S = 0.25
"""A later window of one decode holding less audio than this is not decoded.  Such a window is
the rest of the audio after the last timestamp of the window before: for a final, the VAD's
trailing non-speech (``vad.trailing_ms``, 180 ms); for a partial, a word cut off.  Whisper fills
it with its stock hallucinations: `` You`` on the 0.16 s left of a 6.72 s utterance over a GSM
06.10 line (``bench/variants.py gsm``, tel: the only later window with text among 909
utterances of 36 generalization sessions), and in whole-file decodes loops up to the token
limit (`` I'm sorry I'm sorry ...`` on 70 ms, `` new, new, new, ...`` on 20 ms).  faster-whisper
drops a window's unfinished last segment and decodes it again in the later window, so a
refused window could hold the end of a word: up to 70 ms before a final's last voiced frame
(``vad.trailing_ms`` is 180 ms), more with a shorter ``trailing_ms``, and a final cut at the
length cap has no trailing audio.  Measured, none was lost: the 909 finals above, cap-cut ones
included, gave the same words with and without the rule."""


class _ShortLaterWindow(Exception):
    """Raised from ``encode()`` for a later window under :data:`MIN_FOLLOW_WINDOW_S`: it ends
    faster-whisper's window loop after the segments of the window before were yielded."""

    def __init__(self, frames: int) -> None:
        super().__init__(f"a later window of {frames * 10} ms")


def trim_window_padding(features: np.ndarray, pad_frames: int, frames_per_s: int = 100) -> np.ndarray:
    """Cut the zero padding of a log-mel window down to ``pad_frames`` after its last non-zero frame.

    ``features``: shape ``(..., n_mels, frames)`` as ``WhisperModel.generate_segments`` hands it
    to ``encode()``: the rest of the audio, zero-padded to 3000 frames by ``pad_or_trim``
    (faster-whisper's log-mel values are ``(log10 + 4) / 4`` of a clamped spectrum, so a real
    frame is all-zero only in theory).  The window kept is rounded up to whole seconds
    (``frames_per_s``), at least one second, never longer than the input.
    """
    content = content_frames(features)
    frames = -(-(content + pad_frames) // frames_per_s) * frames_per_s
    return features[..., : min(features.shape[-1], max(frames, frames_per_s))]


class _RememberedFeatures:
    """faster-whisper's ``FeatureExtractor``, answering a call on the waveform it holds the log-mel
    of (``remember``) from memory instead of computing it again.

    ``WhisperModel.transcribe`` computes the log-mel of its whole input; the engine has already
    computed it to encode the (trimmed) window, and each decode attempt would compute it once
    more (numpy STFT: each computation about 1.5 % of an engine call on one thread, measured with
    cProfile over 12 files).  Only an identical call is answered from memory: the same array
    object, faster-whisper's default ``padding`` (160 samples) and no ``chunk_length``; every
    attribute is the wrapped extractor's.
    """

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self._remembered: tuple[np.ndarray, np.ndarray] | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def remember(self, waveform: np.ndarray | None, features: np.ndarray | None = None) -> None:
        """Hold ``features`` as the log-mel of ``waveform`` (None: forget)."""
        self._remembered = None if waveform is None or features is None else (waveform, features)

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None) -> np.ndarray:
        held = self._remembered
        if held is not None and waveform is held[0] and padding == 160 and chunk_length is None:
            return held[1]
        return self._inner(waveform, padding=padding, chunk_length=chunk_length)  # type: ignore[operator]


def _trimmed_model_class():  # type: ignore[no-untyped-def]
    """A ``WhisperModel`` subclass whose next ``encode()`` can be primed with a precomputed output,
    whose later windows in the same call are trimmed (``_follow_pad_frames``), and whose
    feature extractor can answer from memory (:class:`_RememberedFeatures`)."""
    from faster_whisper import WhisperModel

    class _PrimedWhisperModel(WhisperModel):  # type: ignore[misc]
        _primed = None
        _follow_pad_frames: int | None = None
        _decoding = False  # inside FasterWhisperEngine._attempt
        _primed_used = False  # the decode's first window took the primed output: later encodes are later windows

        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.feature_extractor = _RememberedFeatures(self.feature_extractor)

        def encode(self, features):  # type: ignore[no-untyped-def]
            primed, self._primed = self._primed, None
            if primed is not None:
                self._primed_used = True
                return primed
            if self._decoding and self._primed_used:
                # a later window of the decode: too short to hold a word, it is not decoded
                # (MIN_FOLLOW_WINDOW_S); a first window is never refused
                frames = content_frames(features)
                if frames < MIN_FOLLOW_WINDOW_S * 100:
                    raise _ShortLaterWindow(frames)
            if self._follow_pad_frames is not None:
                # A decode whose last segment is unfinished (audio cut mid-word, as a partial
                # always is) makes faster-whisper seek to the last timestamp and decode the rest
                # in a new window, zero-padded to 30 s: an encoder pass of 1.4 s on one thread
                # for the last second of speech.  Encode it on the same trimmed window instead.
                features = trim_window_padding(features, self._follow_pad_frames)
            return super().encode(features)

    return _PrimedWhisperModel


class FasterWhisperEngine:
    """faster-whisper (CTranslate2) engine.

    Two changes to ``WhisperModel.transcribe`` make a short utterance cheap, without touching
    decoding:

    * **one encoder pass.** With ``language=None`` faster-whisper 1.2 runs the encoder once to
      detect the language and again to decode.  We encode once, detect the language from that
      output (``ctranslate2.models.Whisper.detect_language``), then hand the same output to the
      decoder by priming ``encode()``.
    * **a trimmed encoder window** (``encoder_window_pad_s`` not ``None``): Whisper always
      encodes 30 s (3000 mel frames) however short the audio.  CTranslate2 accepts a shorter
      input, so we encode the utterance plus ``encoder_window_pad_s`` of padding, rounded up to
      a second (whisper.cpp's ``audio_ctx`` is the same idea).  On a short window Whisper
      sometimes stops early or says the utterance twice; such a decode is redone on a wider
      window, the utterance plus ``retry_window_pad_s`` (None: the full 30 s), and its
      temperature fallbacks use that window too (``full_window_retries`` counts the wider
      encodings).  Other temperature fallbacks stay on the trimmed window.  When a decode's
      last segment is unfinished, faster-whisper decodes the rest of the audio in a second
      window; that one is trimmed the same way (:func:`trim_window_padding`), not padded to 30 s.

    Decoding itself is guarded (:mod:`whisper_streaming.engines.decoding`): each decode may generate
    at most :meth:`DecodeLimits.tokens_for` tokens; the temperature fallback of Whisper's
    ``transcribe()`` runs here, one temperature per attempt, with a loop as one more reason to
    fall back and a time budget checked before each attempt; a text that still loops has its
    repeated tail cut, and one that writes a sentence again after itself in less time than
    saying it twice takes keeps one copy (:func:`~whisper_streaming.engines.decoding.find_echo`).  A short utterance whose decode says no speech is dropped.  The
    language follows :func:`~whisper_streaming.core.language.choose_language`; when the detector
    replaces the stream's kept language for an utterance, the new language's decode (first
    temperature only) is kept if the model trusts it (no segment below
    ``recheck_below_log_prob``), and otherwise only if it beats a decode in the kept language
    (:func:`~whisper_streaming.core.language.prefer_switch`).  Minimal decodes are never
    compared: they keep the stream's language when it has one.

    Raises:
        AsrError: from construction if the model cannot be loaded.
    """

    name = "faster-whisper"

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.full_window_retries = 0
        self.language_detections = 0  # detector runs (before a decode, or after one as a recheck)
        self.language_rechecks = 0  # detector runs after a decode in the kept language (recheck_language)
        self.language_redecodes = 0  # utterances decoded in both the kept and a newly detected language (prefer_switch)
        self.language_switches_refused = 0  # of those, the ones whose new language's decode the model trusted less
        self.short_windows_skipped = 0  # later windows shorter than MIN_FOLLOW_WINDOW_S, not decoded
        try:
            self._model = _trimmed_model_class()(
                options.model,
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.cpu_threads,
                num_workers=1,
            )
        except Exception as exc:  # noqa: BLE001 - CTranslate2/HF raise many kinds
            raise AsrError(f"cannot load faster-whisper model {options.model!r}: {exc}") from exc
        self._eot = self._model.hf_tokenizer.token_to_id("<|endoftext|>")  # special tokens and timestamps follow it

    def _encode(self, audio: np.ndarray, pad_s: float | None, detect: bool) -> tuple[object, dict[str, float] | None]:
        """Encoder output for the (trimmed or full) window, and the language probabilities when ``detect``."""
        from faster_whisper.audio import pad_or_trim

        fe = self._model.feature_extractor
        features = fe(audio)  # answered from memory after the first window of a call
        fe.remember(audio, features)
        content = features.shape[-1] - 1  # as in WhisperModel.generate_segments
        frames = fe.nb_max_frames
        if pad_s is not None and content < frames:
            per_s = fe.sampling_rate // fe.hop_length  # 100 frames per second
            frames = min(frames, -(-(content + int(pad_s * per_s)) // per_s) * per_s)
        encoder_output = self._model.encode(pad_or_trim(features[:, :content], frames))  # not primed: a real pass
        return encoder_output, self._detect(encoder_output) if detect else None

    def _detect(self, encoder_output: object) -> dict[str, float] | None:
        """Language code -> probability from an encoder output (CTranslate2's
        ``Whisper.detect_language``: one decoder step); None for an English-only model."""
        if not self._model.model.is_multilingual:
            return None
        self.language_detections += 1
        return {token[2:-2]: p for token, p in self._model.model.detect_language(encoder_output)[0]}

    def _count_short_window(self, short: _ShortLaterWindow) -> None:
        self.short_windows_skipped += 1
        log.debug("not decoded: %s", short)

    def _attempt(self, audio: np.ndarray, encoded: object, language: str | None, temperature: float,
                 max_tokens: int, suspect_check: bool, started: float, d: DecodeOptions,
                 window_pad_s: float | None = None, words: bool = False) -> AttemptOutcome[tuple[TranscriptSegment, ...]]:
        """One decode of ``audio`` from ``encoded`` with the decoding options ``d``; ``elapsed_s``
        counts from ``started`` (the encoding of a new window included, so the budget sees what
        the attempt cost).  ``window_pad_s``: the padding of ``encoded``'s trimmed window, used
        for any later window of the same decode too (None: Whisper's 30 s)."""
        t0 = started
        self._model._primed = encoded
        self._model._follow_pad_frames = None if window_pad_s is None else int(window_pad_s * 100)
        # a short later window is refused only after the primed first window was taken; with no
        # language, faster-whisper's own detection would take it first (not done: the engine
        # always names the language of a multilingual model)
        self._model._decoding = language is not None or not self._model.model.is_multilingual
        self._model._primed_used = False
        try:
            segments, _ = self._model.transcribe(
                audio,
                language=language,
                beam_size=d.beam_size,
                temperature=[temperature],
                no_speech_threshold=d.no_speech_threshold,
                log_prob_threshold=d.log_prob_threshold,
                compression_ratio_threshold=d.compression_ratio_threshold,
                condition_on_previous_text=d.condition_on_previous_text,
                initial_prompt=d.initial_prompt,
                vad_filter=False,
                without_timestamps=False,
                max_new_tokens=max_tokens,
                word_timestamps=words,
            )
            decoded, tokens, weighted, weights = [], 0, 0.0, 0
            for s in _until_short_window(segments, self._count_short_window):  # consume the lazy generator here, in the worker
                seg_words = tuple(TranscriptWord(float(w.start), float(w.end), w.word, float(w.probability)) for w in (s.words or ()))
                decoded.append(TranscriptSegment(s.start, s.end, s.text, s.avg_logprob, s.no_speech_prob, s.compression_ratio, seg_words))
                n = sum(1 for t in s.tokens if t < self._eot)  # text tokens, not timestamps
                tokens += n
                weighted += s.avg_logprob * max(n, 1)
                weights += max(n, 1)
        finally:
            self._model._primed = None
            self._model._follow_pad_frames = None
            self._model._decoding = self._model._primed_used = False
        segs = tuple(decoded)
        text = joined_text(segs)
        duration_s = len(audio) / SAMPLE_RATE_HZ
        suspect = suspect_check and (_looks_truncated(segs, tokens, duration_s) or _looks_repeated(segs))
        if not segs:  # every segment judged silence: nothing to fall back from
            return AttemptOutcome(segs, "", 0.0, 0.0, 1.0, time.perf_counter() - t0)
        return AttemptOutcome(
            segs,
            text,
            weighted / weights,
            max(s.compression_ratio for s in segs),
            segs[0].no_speech_prob,
            time.perf_counter() - t0,
            suspect,
        )

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        """See :meth:`whisper_streaming.engines.base.AsrEngine.transcribe`.  ``minimal``: greedy
        (beam 1), the first temperature only, no wider-window retry, half the token bound, an
        encoder window of the utterance plus :data:`MINIMAL_WINDOW_PAD_S`.  ``batch``: Whisper's
        full window, the request's prompt and temperature, word timestamps when asked.
        ``should_stop`` is polled after the encoder pass and before each further attempt
        (CTranslate2's ``generate`` cannot be interrupted), raising
        :class:`~whisper_streaming.errors.TranscriptionStopped`."""
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise UsageError("audio must be a 1-D float32 array")
        t0 = time.perf_counter()
        o, d = self.options, self.options.decode
        if minimal:
            d = replace(d, beam_size=1, temperatures=d.temperatures[:1])
        if batch is not None:
            d = replace(d, initial_prompt=batch.initial_prompt if batch.initial_prompt else d.initial_prompt,
                        temperatures=(batch.temperature,) if batch.temperature is not None else d.temperatures)
        words = batch is not None and batch.word_timestamps
        duration_s = len(audio) / SAMPLE_RATE_HZ
        request = language if language is not None else LanguageRequest(fixed=d.language)
        pad_s = None if batch is not None else o.encoder_window_pad_s
        if minimal and pad_s is not None:
            pad_s = min(pad_s, MINIMAL_WINDOW_PAD_S)
        budget = DecodeBudget(o.limits.budget_s(duration_s))
        max_tokens = o.limits.tokens_for(duration_s)
        if minimal:
            max_tokens = max(1, max_tokens // 2)
        policy = o.language_policy
        try:
            first_encoded, probabilities = self._encode(audio, pad_s, detect=detect_first(request, policy))
            _check_stop(should_stop)
            code, probability = choose_language(request, probabilities, duration_s, policy)

            def detected(language_code: str | None) -> float:
                """The detector's probability of ``language_code`` (0 when it did not run)."""
                return probabilities.get(language_code, 0.0) if probabilities and language_code else 0.0

            if minimal and request.fixed is None and request.kept is not None and code != request.kept:
                # a minimal decode (a partial, or a final retried after a hung worker) never
                # changes the stream's language: a change must win on a full decode
                # (prefer_switch), which a minimal one never runs.  A reverberant English
                # partial was shown in Chinese before its final came back in English.
                code, probability = request.kept, detected(request.kept)
            encoded: dict[float | None, object] = {pad_s: first_encoded}

            retry = o.retry_window_pad_s
            # the redo must see a wider window than the first decode; else Whisper's 30 s one
            retry_window = retry if retry is not None and pad_s is not None and retry > pad_s else None
            outcomes: list[AttemptOutcome[tuple[TranscriptSegment, ...]]] = []

            def attempt(kind: str, temperature: float) -> Callable[[], AttemptOutcome[tuple[TranscriptSegment, ...]] | None]:
                def run() -> AttemptOutcome[tuple[TranscriptSegment, ...]] | None:
                    if kind != "first":
                        _check_stop(should_stop)
                    started = time.perf_counter()
                    if kind == "first":
                        window = pad_s
                    elif kind == "retry":  # the trimmed window's own failure: stopped early, said it twice
                        if not outcomes[0].suspect:
                            return None
                        window = retry_window
                    else:  # a temperature fallback: on the window of the last trusted decode
                        window = retry_window if outcomes[0].suspect else pad_s
                    if window not in encoded:
                        if window != pad_s:
                            self.full_window_retries += 1
                        encoded[window] = self._encode(audio, window, detect=False)[0]
                    out = self._attempt(audio, encoded[window], code, temperature, max_tokens,
                                        suspect_check=window == pad_s and pad_s is not None and not minimal,
                                        started=started, d=d, window_pad_s=window, words=words)
                    outcomes.append(out)
                    return out

                run.applies = lambda: kind != "retry" or bool(outcomes and outcomes[0].suspect)  # type: ignore[attr-defined]
                return run

            def decode(first_temperature_only: bool = False) -> Attempts[tuple[TranscriptSegment, ...]]:
                outcomes.clear()
                temps = d.temperatures or (0.0,)
                plan = [attempt("first", temps[0])]
                if pad_s is not None and not minimal:
                    plan.append(attempt("retry", temps[0]))
                if not first_temperature_only:
                    plan += [attempt("fallback", t) for t in temps[1:]]
                return run_attempts(
                    plan,
                    budget,
                    log_prob_threshold=d.log_prob_threshold,
                    compression_ratio_threshold=d.compression_ratio_threshold,
                    no_speech_threshold=d.no_speech_threshold,
                )

            def score(r: Attempts[tuple[TranscriptSegment, ...]]) -> float | None:
                """A decode's confidence for :func:`prefer_switch`: None for no text, a loop or an
                over-compressed text (which Whisper decodes confidently), else its mean token log-probability."""
                c = r.chosen
                if not c.result or r.looped or c.compression_ratio > d.compression_ratio_threshold:
                    return None
                return c.avg_logprob

            # The detector (run before this decode: the kept language is not confirmed yet) replaces
            # the stream's kept language for this utterance.  Decode in the new language on the
            # first temperature; a decode the model trusts is followed (a wrong first detection is
            # replaced so), a doubtful one is compared with a decode in the kept language.
            refused = False  # a switch of language refused (prefer_switch): Transcript.language_switch_refused
            proposed = (not minimal and request.fixed is None and request.kept is not None and code is not None
                        and code != request.kept and policy.recheck_below_log_prob is not None)
            result = decode(first_temperature_only=proposed)
            attempts, loops_seen, timed_out = result.attempts, result.loops_seen, result.timed_out
            worst = min((seg.avg_logprob for seg in result.chosen.result), default=None)
            # a minimal decode (a partial, or a final retried after a hung worker) is never rechecked
            # or compared: the language stays the kept one, or the detected one when none is kept
            if not minimal and probabilities is None and recheck_language(request, duration_s, worst, policy):
                # the confirmed language was not checked before the decode, and the decode doubts it
                _check_stop(should_stop)
                self.language_rechecks += 1
                probabilities = self._detect(first_encoded)
                checked, checked_p = choose_language(request, probabilities, duration_s, policy)
                if checked == code:
                    probability = checked_p
                elif not budget.allows(result.chosen.elapsed_s):
                    timed_out = True  # no time to decode it again: the kept language's text, counted as time limited
                    probability = probabilities.get(code, 0.0) if probabilities else probability
                else:
                    _check_stop(should_stop)
                    self.language_redecodes += 1
                    kept = (result, code, detected(code))
                    code, probability = checked, checked_p
                    result = decode(first_temperature_only=True)  # compared, not trusted: no fallbacks
                    attempts += result.attempts
                    loops_seen += result.loops_seen
                    timed_out = timed_out or result.timed_out
                    if not prefer_switch(score(result), score(kept[0])):
                        self.language_switches_refused += 1
                        refused = True
                        result, code, probability = kept
            elif proposed and (score(result) is None or worst is None or worst < policy.recheck_below_log_prob):
                # (proposed: the threshold is set) the new language's decode is doubtful: compare
                # it with a decode in the kept language
                if not budget.allows(result.chosen.elapsed_s):
                    timed_out = True  # no time for the kept language: the new language's text, counted as time limited
                else:
                    _check_stop(should_stop)
                    self.language_redecodes += 1
                    switched = (result, code, probability)
                    code, probability = request.kept, detected(request.kept)
                    result = decode()
                    attempts += result.attempts
                    loops_seen += result.loops_seen
                    timed_out = timed_out or result.timed_out
                    if prefer_switch(score(switched[0]), score(result)):
                        result, code, probability = switched
                    else:
                        self.language_switches_refused += 1
                        refused = True
        except TranscriptionStopped:
            raise
        except Exception as exc:  # noqa: BLE001
            raise AsrError(f"faster-whisper failed: {exc}") from exc
        finally:
            self._model.feature_extractor.remember(None)  # hold no utterance past its call
        chosen = result.chosen
        text, segments = chosen.text, chosen.result
        kept_chars: tuple[int, ...] = tuple(range(len(text)))  # positions in chosen.text of text's characters
        if result.looped:
            text, kept_chars = cut_loops_kept(text)
        # judged on the whole text: an echo is one more sign of a fragment with no speech
        dropped = is_non_speech_fragment(text, duration_s, chosen.no_speech_prob, d.no_speech_threshold, o.limits)
        echo_cut = False
        if dropped:
            text, segments = "", ()
        else:
            echoed, echo_kept = cut_echo_kept(text, duration_s, o.limits)  # a sentence written again after itself
            echo_cut = echoed != text
            text, kept_chars = echoed, tuple(kept_chars[i] for i in echo_kept)
            if text != chosen.text:  # the segments (batch SRT, JSON, words) lose what the text lost
                if joined_text(segments) == chosen.text:
                    segments = trim_segments(segments, kept_chars)
                else:  # never expected: the text is built from the segments
                    log.warning("segments do not join to the decoded text; left uncut")
        return Transcript(
            text,
            code or "",
            probability,
            segments,
            duration_s,
            attempts=attempts,
            loops_seen=loops_seen,
            loop_cut=result.looped or echo_cut,
            timed_out=timed_out,
            dropped_no_speech=dropped,
            decode_s=time.perf_counter() - t0,
            language_switch_refused=refused,
        )


MINIMAL_WINDOW_PAD_S = 1.0
"""The encoder window of a minimal decode (partials, a retry after a hang): the utterance plus at
most this much padding, rounded up to a second (``encoder_window_pad_s`` is 4 s for finals).
The encoder's cost grows with its window: a partial of 3 s of audio encodes 4 s instead of 7."""

MIN_TOKENS_PER_S = 1.5
"""A trimmed-window decode with fewer text tokens per second of audio (minus the endpointing
silence and pre-roll) is redone with the full window; read speech runs at 3-5 tokens/s."""


def _until_short_window(segments: Iterable[Any], skipped: Callable[[_ShortLaterWindow], None]) -> Iterator[Any]:
    """faster-whisper's segments, ending where it would decode a later window shorter than
    :data:`MIN_FOLLOW_WINDOW_S` (``encode()`` raises :class:`_ShortLaterWindow`, passed to ``skipped``)."""
    it = iter(segments)
    while True:
        try:
            segment = next(it)
        except StopIteration:
            return
        except _ShortLaterWindow as short:
            skipped(short)
            return
        yield segment


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TranscriptionStopped("withdrawn by the caller")


def _looks_truncated(segments: tuple[TranscriptSegment, ...], tokens: int, duration_s: float) -> bool:
    """Whisper on a short window sometimes stops early ("The pencils" for "The pencils have
    all been used."): too few tokens for the audio.  No text at all is not truncation."""
    speech_s = max(duration_s - 0.8, 0.5)
    return bool(segments) and tokens < MIN_TOKENS_PER_S * speech_s


REPEATED_NGRAM_WORDS = 5
"""A trimmed-window decode in which some run of this many words occurs twice is redone with
the full window.  Measured: on a 5 s Harvard-sentence utterance (``shared/data/speech/tel``)
the trimmed window gave both sentences twice (12 extra words, the corpus WER went from 1.6 %
to 7.7 %); the full window does not.  A speaker who really repeats five words in one
utterance only costs a second decode (whose result is then used)."""


def _looks_repeated(segments: tuple[TranscriptSegment, ...]) -> bool:
    """Some run of :data:`REPEATED_NGRAM_WORDS` words occurs twice, or the whole text is one
    phrase of two or more words said two or more times (:func:`_said_over`)."""
    words = re.findall(r"\w+", " ".join(s.text for s in segments).lower())
    n = REPEATED_NGRAM_WORDS
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams)) or _said_over(words)


def _said_over(words: list[str]) -> bool:
    """The whole text is one phrase of at least two words, repeated (``10 of cloves. 10 of
    cloves.`` for a 1.3 s "ten of clubs" at -65 dBFS: the short phrase escapes the five-word
    rule, and the loop guard wants three copies).  Measured over the 17 generalization sessions
    (``bench/generalization.py``): it fires on that one utterance only, whose wider-window redo
    is not repeated (en level-65 WER 0.074 -> 0.064); every other transcript is unchanged.  A
    speaker who really says a phrase twice costs a second decode, whose result is used."""
    n = len(words)
    if len(set(words)) < 2:  # one word over and over is the loop guard's (three or more) or a real "no, no"
        return False
    return any(n % k == 0 and all(words[i] == words[i % k] for i in range(k, n)) for k in range(2, n // 2 + 1))
