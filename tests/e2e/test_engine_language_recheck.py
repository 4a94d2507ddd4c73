"""The real faster-whisper engine skips the language detector for a kept language unless the
decode doubts it, and then follows a real switch (``LanguagePolicy.recheck_below_log_prob``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.app.wiring import engine_options_from_config
from whisper_streaming.config.loader import load_config
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.engines.faster_whisper import FasterWhisperEngine

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    return FasterWhisperEngine(engine_options_from_config(load_config(None)))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio, rate = sf.read(DATA / "librispeech_dev-clean_1272-128104-0000.wav", dtype="float32")
    assert rate == 16000
    return np.ascontiguousarray(audio)


def _counts(engine: FasterWhisperEngine) -> tuple[int, int, int]:
    return engine.language_detections, engine.language_rechecks, engine.language_redecodes


def test_a_kept_language_the_decode_trusts_is_not_detected_again(engine: FasterWhisperEngine, speech: np.ndarray) -> None:
    fixed = engine.transcribe(speech, language=LanguageRequest(fixed="en"))
    before = _counts(engine)
    kept = engine.transcribe(speech, language=LanguageRequest(kept="en", confirmed=True))
    assert _counts(engine) == before  # no detector run at all
    assert kept.language == "en" and kept.text == fixed.text
    assert kept.text.lower().startswith("mister quilter") or "quilter" in kept.text.lower()
    # with no kept language yet, or one not yet confirmed, the detector runs before the decode
    detected = engine.transcribe(speech, language=LanguageRequest())
    unconfirmed = engine.transcribe(speech, language=LanguageRequest(kept="en"))
    assert engine.language_detections == before[0] + 2 and engine.language_rechecks == before[1]
    assert detected.language == unconfirmed.language == "en" and detected.text == unconfirmed.text == fixed.text


def test_a_doubted_kept_language_is_checked_and_a_real_switch_decoded_again(speech: np.ndarray) -> None:
    # English speech on a stream that kept Korean.  Recheck after every decode (threshold 0:
    # any segment scores below it), so the test does not hang on how Whisper scores English
    # decoded as Korean.
    options = engine_options_from_config(load_config(None))
    # a generous time budget: the decode again must not be refused on a loaded machine
    options = replace(options, language_policy=replace(options.language_policy, recheck_below_log_prob=0.0),
                      limits=replace(options.limits, budget_base_s=60.0))
    engine = FasterWhisperEngine(options)
    fixed = engine.transcribe(speech, language=LanguageRequest(fixed="en"))
    switched = engine.transcribe(speech, language=LanguageRequest(kept="ko", confirmed=True))
    assert _counts(engine) == (1, 1, 1)  # one detector run, after the decode, and one decode again
    assert switched.language == "en" and switched.language_probability > 0.5
    assert switched.text == fixed.text and switched.attempts >= 2
    # a short utterance can never replace the kept language: no check, decoded as kept
    short = engine.transcribe(np.ascontiguousarray(speech[: int(1.5 * 16000)]), language=LanguageRequest(kept="ko", confirmed=True))
    assert _counts(engine) == (1, 1, 1) and short.language == "ko"
    # the old rule (null): the detector runs before every decode
    old = FasterWhisperEngine(replace(options, language_policy=replace(options.language_policy, recheck_below_log_prob=None)))
    again = old.transcribe(speech, language=LanguageRequest(kept="ko", confirmed=True))
    assert _counts(old) == (1, 0, 0) and again.language == "en" and again.text == fixed.text


def test_a_switch_with_no_time_left_keeps_the_text_and_says_so(speech: np.ndarray) -> None:
    # the detector replaces the confirmed language, but the budget has no room for a second
    # decode: the first text stays, in the kept language with its (low) probability, as time limited
    options = engine_options_from_config(load_config(None))
    options = replace(options, language_policy=replace(options.language_policy, recheck_below_log_prob=0.0),
                      limits=replace(options.limits, budget_base_s=0.001, budget_per_audio_s=0.0))
    engine = FasterWhisperEngine(options)
    kept = engine.transcribe(speech, language=LanguageRequest(kept="ko", confirmed=True))
    assert _counts(engine) == (1, 1, 0)
    assert kept.language == "ko" and kept.language_probability < 0.1 and kept.timed_out


@pytest.fixture(scope="module")
def reverberant() -> np.ndarray:
    """The last 4 s of a shipped LibriSpeech sentence ("...the fantasy, the hopes, the dreams
    built around it") in a reverberant room (bench/variants.py's impulse response, RT60 0.9 s,
    direct-to-reverberant -8 dB, seed 1): Whisper's detector calls it Welsh (0.61) over English (0.37)."""
    from bench.variants import reverberate

    x, rate = sf.read(DATA / "librispeech_test-clean_1995-1837-0001.wav", dtype="float64")
    y, _ = reverberate(x, rate, 0.9, -8.0, np.random.default_rng(1))
    return np.ascontiguousarray(y[-4 * rate:].astype(np.float32))


def test_a_switch_the_decode_does_not_trust_more_is_refused(reverberant: np.ndarray) -> None:
    # a policy under which the detector proposes the switch here (the kept language's
    # probability 0.37 is under redetect_below 0.9, a margin for other CPUs' int8 kernels: it is
    # the top language, Welsh 0.61 over English, that proposes it); default time budgets
    options = engine_options_from_config(load_config(None))
    options = replace(options, language_policy=replace(options.language_policy, redetect_below=0.9))
    # the references on the first temperature only, as the compared decode runs (the fallbacks
    # sample at random and their time budget depends on the machine's load)
    first_only = FasterWhisperEngine(replace(options, decode=replace(options.decode, temperatures=options.decode.temperatures[:1])))
    english = first_only.transcribe(reverberant, language=LanguageRequest(fixed="en"))
    welsh = first_only.transcribe(reverberant, language=LanguageRequest(fixed="cy"))
    assert "fantasy" in english.text.lower() and "fantasy" not in welsh.text.lower()
    assert max(s.avg_logprob for s in welsh.segments) < min(s.avg_logprob for s in english.segments)
    # confirmed, rechecked after every decode: decoded in English, then in Welsh, and the Welsh refused
    recheck_always = FasterWhisperEngine(replace(options, language_policy=replace(options.language_policy, recheck_below_log_prob=0.0)))
    confirmed = recheck_always.transcribe(reverberant, language=LanguageRequest(kept="en", confirmed=True))
    assert (recheck_always.language_rechecks, recheck_always.language_redecodes, recheck_always.language_switches_refused) == (1, 1, 1)
    assert confirmed.language == "en" and confirmed.text == english.text and not confirmed.timed_out
    assert confirmed.language_switch_refused and not english.language_switch_refused
    assert 0.1 < confirmed.language_probability < 0.9  # the detector's doubt (0.37 here) is passed on, not 1.0
    # not yet confirmed (default recheck threshold): detected first, decoded in Welsh, which the
    # model doubts, then in English, and English kept
    engine = FasterWhisperEngine(options)
    unconfirmed = engine.transcribe(reverberant, language=LanguageRequest(kept="en"))
    assert (engine.language_redecodes, engine.language_switches_refused) == (1, 1)
    assert unconfirmed.language == "en" and unconfirmed.text == english.text and not unconfirmed.timed_out
    assert unconfirmed.language_switch_refused


def test_a_switch_the_decode_trusts_is_followed_without_a_second_decode(engine: FasterWhisperEngine, speech: np.ndarray) -> None:
    # a wrong first detection (Korean kept, not confirmed) on English speech: the detector says
    # English, the English decode has no doubtful segment, so it is kept at once
    fixed = engine.transcribe(speech, language=LanguageRequest(fixed="en"))
    before = engine.language_redecodes
    replaced = engine.transcribe(speech, language=LanguageRequest(kept="ko"))
    assert engine.language_redecodes == before
    assert replaced.language == "en" and replaced.language_probability > 0.5 and replaced.text == fixed.text
    assert not replaced.language_switch_refused


def test_a_minimal_decode_never_changes_the_streams_language(reverberant: np.ndarray, speech: np.ndarray) -> None:
    # the policy of the refusal test above: the detector proposes Welsh over the kept English.
    # A partial (minimal decode) never runs the comparison, so it stays in the kept language
    # instead of showing the proposed one before its final.
    options = engine_options_from_config(load_config(None))
    engine = FasterWhisperEngine(replace(options, language_policy=replace(options.language_policy, redetect_below=0.9)))
    partial = engine.transcribe(reverberant, language=LanguageRequest(kept="en"), minimal=True)
    assert engine.language_detections == 1  # not confirmed: detected, and its probability passed on
    assert partial.language == "en" and 0.1 < partial.language_probability < 0.9
    assert "fantasy" in partial.text.lower()
    # the same holds for a wrong kept language: only a final can replace it
    wrong = engine.transcribe(speech, language=LanguageRequest(kept="ko"), minimal=True)
    assert wrong.language == "ko" and wrong.language_probability < 0.1
    # with nothing kept yet, a minimal decode detects and follows the detector
    fresh = engine.transcribe(speech, language=LanguageRequest(), minimal=True)
    assert fresh.language == "en" and "quilter" in fresh.text.lower()
