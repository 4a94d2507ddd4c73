"""A later window too short to hold a word is not decoded (``MIN_FOLLOW_WINDOW_S``).

faster-whisper decodes the audio after the last timestamp of a window in a window of its own.
The fake model below plays faster-whisper's part: the first window is the primed encoder
output; the later one goes through the engine's ``encode()`` override (as
``WhisperModel.generate_segments`` calls it) after the first window's segments were yielded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from whisper_streaming.engines.base import DecodeOptions
from whisper_streaming.engines.faster_whisper import MIN_FOLLOW_WINDOW_S, FasterWhisperEngine, _trimmed_model_class, content_frames

EOT = 50257


@dataclass
class _Segment:  # the fields of faster_whisper.transcribe.Segment the engine reads
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float = 1.2
    tokens: tuple[int, ...] = (1, 2, 3)
    words: Any = None


class _FakeCT2:
    device = "cpu"

    def __init__(self) -> None:
        self.encoded_frames: list[int] = []

    def encode(self, features: Any, to_cpu: bool = False) -> str:
        self.encoded_frames.append(int(np.asarray(features).shape[-1]))
        return "later window"


def _engine(later_window_frames: int, later_text: str) -> tuple[FasterWhisperEngine, _FakeCT2]:
    class _FakeWhisper(_trimmed_model_class()):  # type: ignore[misc]
        def __init__(self) -> None:  # no weights: WhisperModel.__init__ is not run
            self.model = _FakeCT2()

        def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, None]:
            duration_s = len(audio) / 16000

            def segments() -> Any:
                assert self.encode(np.zeros((80, 3000), np.float32)) == "primed"  # the first window
                cut = duration_s - later_window_frames / 100
                yield _Segment(0.0, cut, " She called his name many times.", -0.41, 0.04)
                later = np.zeros((80, 3000), np.float32)
                later[:, :later_window_frames] = -0.5  # the rest of the audio, then pad_or_trim's zeros
                assert self.encode(later) == "later window"
                yield _Segment(cut, cut + 2.0, later_text, -1.13, 0.5)

            return segments(), None

    engine = object.__new__(FasterWhisperEngine)
    engine._model = _FakeWhisper()
    engine._eot = EOT
    engine.short_windows_skipped = 0
    return engine, engine._model.model


def _attempt(engine: FasterWhisperEngine, duration_s: float) -> Any:
    audio = np.zeros(int(duration_s * 16000), np.float32)
    return engine._attempt(audio, "primed", "en", 0.0, 100, suspect_check=False, started=time.perf_counter(),
                           d=DecodeOptions(), window_pad_s=4.0)


def test_a_later_window_too_short_for_a_word_is_not_decoded() -> None:
    # tel over GSM 06.10: " You" on the 0.16 s left after the last timestamp of a 6.72 s utterance
    engine, ct2 = _engine(16, " You")
    out = _attempt(engine, 6.72)
    assert out.text == "She called his name many times."
    assert [s.text for s in out.result] == [" She called his name many times."]
    assert engine.short_windows_skipped == 1
    assert ct2.encoded_frames == []  # no encoder pass, no decode for it
    assert engine._model._decoding is False  # nothing carried past the decode


def test_an_encode_outside_a_decode_is_never_refused() -> None:
    engine, ct2 = _engine(16, " You")
    short = np.zeros((80, 100), np.float32)
    short[:, :10] = -0.5  # 0.1 s of audio: an utterance's own (first) window, as FasterWhisperEngine._encode asks
    assert engine._model.encode(short) == "later window"
    assert ct2.encoded_frames == [100]
    # inside a decode, a window encoded before the primed output was taken is a first window too
    engine._model._decoding = True
    assert engine._model.encode(short) == "later window"
    assert ct2.encoded_frames == [100, 100]


@pytest.mark.parametrize("frames", [int(MIN_FOLLOW_WINDOW_S * 100), 100])
def test_a_later_window_long_enough_for_a_word_keeps_its_text(frames: int) -> None:
    engine, ct2 = _engine(frames, " Like?")
    out = _attempt(engine, 7.11)
    assert out.text == "She called his name many times. Like?"
    assert engine.short_windows_skipped == 0 and len(ct2.encoded_frames) == 1


def test_content_frames_is_the_audio_before_the_zero_padding() -> None:
    window = np.zeros((80, 3000), np.float32)
    assert content_frames(window) == 0
    window[3, 15] = -0.9
    assert content_frames(window) == 16
    assert content_frames(window[None]) == 16  # batched


# ---------------------------------------------------------------- a minimal decode's language


def _language_engine(probabilities: dict[str, float], text: str = "the fantasy, the hopes") -> tuple[FasterWhisperEngine, list[str | None]]:
    """An engine whose encoder "detects" ``probabilities`` and whose decode records its language
    and writes ``text``."""
    from types import SimpleNamespace

    from whisper_streaming.core.transcript import TranscriptSegment
    from whisper_streaming.engines.base import EngineOptions
    from whisper_streaming.engines.decoding import AttemptOutcome

    engine = object.__new__(FasterWhisperEngine)
    engine.options = EngineOptions(encoder_window_pad_s=4.0, retry_window_pad_s=10.0)
    for counter in ("full_window_retries", "language_detections", "language_rechecks", "language_redecodes",
                    "language_switches_refused", "short_windows_skipped"):
        setattr(engine, counter, 0)
    engine._model = SimpleNamespace(feature_extractor=SimpleNamespace(remember=lambda *a: None))
    decoded_in: list[str | None] = []

    def encode(audio: np.ndarray, pad_s: float | None, detect: bool) -> tuple[str, dict[str, float] | None]:
        if detect:
            engine.language_detections += 1
        return "encoded", dict(probabilities) if detect else None

    def attempt(audio: np.ndarray, encoded: object, language: str | None, *args: Any, **kwargs: Any) -> Any:
        decoded_in.append(language)
        seg = TranscriptSegment(0.0, 3.0, " " + text, -0.3, 0.01, 1.2)
        return AttemptOutcome((seg,), text, -0.3, 1.2, 0.01, 0.01)

    engine._encode = encode  # type: ignore[method-assign]
    engine._attempt = attempt  # type: ignore[method-assign]
    return engine, decoded_in


def test_a_minimal_decode_keeps_the_streams_language_when_the_detector_proposes_another() -> None:
    from whisper_streaming.core.language import LanguageRequest

    audio = np.zeros(3 * 16000, np.float32)  # 3 s: long enough for a detection to replace the kept language
    engine, decoded_in = _language_engine({"zh": 0.95, "en": 0.02})
    partial = engine.transcribe(audio, language=LanguageRequest(kept="en"), minimal=True)
    assert decoded_in == ["en"] and partial.language == "en"
    assert partial.language_probability == pytest.approx(0.02)  # the detector's doubt is passed on
    assert engine.language_detections == 1 and engine.language_redecodes == 0
    # a full decode follows the same detection (its decode is trusted: no segment below -0.8)
    final = engine.transcribe(audio, language=LanguageRequest(kept="en"))
    assert decoded_in[1:] == ["zh"] and final.language == "zh"
    # nothing kept yet: a minimal decode follows the detector
    fresh = engine.transcribe(audio, language=LanguageRequest(), minimal=True)
    assert decoded_in[2:] == ["zh"] and fresh.language == "zh"


def test_a_first_window_that_was_not_primed_is_never_refused() -> None:
    # _attempt with no precomputed output: faster-whisper encodes the first window itself, and
    # a short one (a 0.1 s utterance) is decoded, not refused as a later window
    class _Unprimed(_trimmed_model_class()):  # type: ignore[misc]
        def __init__(self) -> None:
            self.model = _FakeCT2()

        def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, None]:
            def segments() -> Any:
                first = np.zeros((80, 3000), np.float32)
                first[:, :10] = -0.5
                assert self.encode(first) == "later window"  # the fake's encoder output, whatever the window
                yield _Segment(0.0, 0.1, " No.", -0.2, 0.05)

            return segments(), None

    engine = object.__new__(FasterWhisperEngine)
    engine._model = _Unprimed()
    engine._eot = EOT
    engine.short_windows_skipped = 0
    audio = np.zeros(1600, np.float32)
    out = engine._attempt(audio, None, "en", 0.0, 100, suspect_check=False, started=time.perf_counter(),
                          d=DecodeOptions(), window_pad_s=4.0)
    assert out.text == "No." and engine.short_windows_skipped == 0
    assert engine._model.model.encoded_frames == [500]  # encoded (on the trimmed window: 0.1 s + 4 s, rounded up)


# ---------------------------------------------------------------- an echo


def test_a_final_that_writes_its_sentence_again_keeps_one_copy_and_is_counted() -> None:
    from whisper_streaming.core.language import LanguageRequest

    echo = "She saw a cat in the neighbor's house she saw a cat in the neighbor's house she saw a cat in"
    engine, _ = _language_engine({"en": 0.99}, text=echo)
    short = engine.transcribe(np.zeros(int(2.88 * 16000), np.float32), language=LanguageRequest(fixed="en"))
    assert short.text == "She saw a cat in the neighbor's house" and short.loop_cut
    # the segments (what the batch API writes as SRT and JSON) lost the same copies
    assert [s.text for s in short.segments] == [" She saw a cat in the neighbor's house"]
    # the same words over 6 s of audio could be said: kept as they are
    long = engine.transcribe(np.zeros(6 * 16000, np.float32), language=LanguageRequest(fixed="en"))
    assert long.text == echo and not long.loop_cut
    assert "".join(s.text for s in long.segments).strip() == echo


def test_a_short_fragment_is_judged_on_its_whole_text_before_an_echo_is_cut() -> None:
    from whisper_streaming.core.language import LanguageRequest

    # 1.0 s of audio: 10 words is more than 2 + 4 per second, so the fragment is dropped as
    # no speech; cutting the echo first would have saved "Thanks for watching this video."
    engine, _ = _language_engine({"en": 0.99}, text="Thanks for watching this video. Thanks for watching this video.")
    fragment = engine.transcribe(np.zeros(16000, np.float32), language=LanguageRequest(fixed="en"))
    assert fragment.text == "" and fragment.dropped_no_speech and not fragment.loop_cut
    assert fragment.segments == ()  # nothing for the batch API to write either


def test_a_loop_and_an_echo_cut_in_one_final_are_cut_from_its_segments_too() -> None:
    """Every decode loops ("D D D D D D"), so the loop is cut to one copy; the text left says
    its sentence twice in 2.9 s, so the echo goes too.  The segments carry exactly the text."""
    from whisper_streaming.core.language import LanguageRequest

    looped = "She saw a cat in the neighbor's house she saw a cat in the neighbor's house D D D D D D"
    engine, _ = _language_engine({"en": 0.99}, text=looped)
    out = engine.transcribe(np.zeros(int(2.88 * 16000), np.float32), language=LanguageRequest(fixed="en"))
    assert out.loop_cut and out.loops_seen >= 1
    assert out.text == "She saw a cat in the neighbor's house D"
    assert "".join(s.text for s in out.segments).strip() == out.text
