"""The speaker analyzer (analyzers/speaker_id.py) with a fake embedder: lazy build, trimming,
short audio, the picklable spec."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from whisper_streaming.analyzers.base import Analyzer, build_analyzers
from whisper_streaming.analyzers.speaker_id import SpeakerAnalyzer, SpeakerAnalyzerOptions, speaker_analyzer_spec, voiced_span
from whisper_streaming.core.speakers import SPEAKER, VoicePrint
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import UsageError

RATE = 16000
EMPTY = Transcript("", "", 0.0, (), 1.0)


class FakeEmbedder:
    """Embeds to (mean |x|, length in s, 1): lets a test see what audio reached it."""

    builds = 0
    last_samples = 0

    def __init__(self, options: SpeakerAnalyzerOptions) -> None:
        type(self).builds += 1

    def embed(self, audio: np.ndarray) -> np.ndarray:
        assert audio.dtype == np.float32 and audio.ndim == 1
        type(self).last_samples = len(audio)
        return np.array([float(np.abs(audio).mean()), len(audio) / RATE, 1.0], dtype=np.float32)


def fake_factory(options: SpeakerAnalyzerOptions) -> FakeEmbedder:
    return FakeEmbedder(options)


def tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def padded(speech_s: float, lead_s: float = 0.3, tail_s: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(0)
    lead = rng.normal(0, 1e-4, int(lead_s * RATE)).astype(np.float32)
    tail = rng.normal(0, 1e-4, int(tail_s * RATE)).astype(np.float32)
    return np.concatenate([lead, tone(speech_s), tail])


def test_spec_is_picklable_and_builds_without_loading() -> None:
    FakeEmbedder.builds = 0
    spec = speaker_analyzer_spec(SpeakerAnalyzerOptions(), fake_factory)
    spec = pickle.loads(pickle.dumps(spec))
    assert spec.name == SPEAKER == "speaker"
    analyzer = build_analyzers([spec])[SPEAKER]
    assert isinstance(analyzer, Analyzer) and isinstance(analyzer, SpeakerAnalyzer)
    assert not analyzer.loaded and FakeEmbedder.builds == 0
    analyzer.analyze(tone(1.0), EMPTY)
    analyzer.analyze(tone(2.0), EMPTY)
    assert analyzer.loaded and FakeEmbedder.builds == 1


def test_default_spec_is_picklable() -> None:
    spec = pickle.loads(pickle.dumps(speaker_analyzer_spec()))
    assert spec.name == SPEAKER and spec.options == SpeakerAnalyzerOptions()


def test_voice_print_of_the_voiced_part() -> None:
    analyzer = SpeakerAnalyzer(SpeakerAnalyzerOptions(embed_trimmed=True), embedder_factory=fake_factory)
    vp = analyzer.analyze(padded(2.0), EMPTY)
    assert isinstance(vp, VoicePrint)
    # trimmed to the tone (+- one 25 ms frame), not the 2.5 s of audio
    assert vp.speech_s == pytest.approx(2.0, abs=0.05)
    assert float(np.linalg.norm(vp.vector)) == pytest.approx(1.0)
    assert abs(FakeEmbedder.last_samples - 2 * RATE) <= 800


def test_by_default_the_whole_audio_is_embedded_but_speech_s_is_the_voiced_span() -> None:
    analyzer = SpeakerAnalyzer(SpeakerAnalyzerOptions(), embedder_factory=fake_factory)
    vp = analyzer.analyze(padded(2.0), EMPTY)
    assert vp is not None and vp.speech_s == pytest.approx(2.0, abs=0.05)
    assert FakeEmbedder.last_samples == int(2.5 * RATE)


def test_short_and_silent_audio_give_none_without_loading() -> None:
    analyzer = SpeakerAnalyzer(SpeakerAnalyzerOptions(), embedder_factory=fake_factory)
    assert analyzer.analyze(tone(0.29), EMPTY) is None
    assert analyzer.analyze(np.zeros(RATE, dtype=np.float32), EMPTY) is None
    # 1 s of audio of which only 0.1 s is voice: the span left is too short
    assert analyzer.analyze(np.concatenate([np.zeros(RATE - 1600, np.float32), tone(0.1)]), EMPTY) is None
    assert not analyzer.loaded
    assert analyzer.analyze(tone(0.31), EMPTY) is not None


def test_bad_audio_is_a_usage_error() -> None:
    analyzer = SpeakerAnalyzer(embedder_factory=fake_factory)
    with pytest.raises(UsageError):
        analyzer.analyze(np.zeros((2, RATE), dtype=np.float32), EMPTY)
    with pytest.raises(UsageError):
        analyzer.analyze(np.zeros(RATE, dtype=np.int16), EMPTY)


def test_warm_up_builds_once() -> None:
    FakeEmbedder.builds = 0
    analyzer = SpeakerAnalyzer(embedder_factory=fake_factory)
    analyzer.warm_up()
    analyzer.warm_up()
    assert analyzer.loaded and FakeEmbedder.builds == 1


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": True}, {"min_audio_s": -1}, {"trim_db": 0}, {"trim_db": float("nan")},
                                    {"trim_db": None}, {"embed_trimmed": 1}])
def test_options_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        SpeakerAnalyzerOptions(**kwargs)  # type: ignore[arg-type]


def test_voiced_span() -> None:
    x = padded(1.0, lead_s=0.5, tail_s=0.4)
    start, end = voiced_span(x, 35.0)
    assert abs(start - int(0.5 * RATE)) <= 400 and abs(end - int(1.5 * RATE)) <= 400
    assert voiced_span(np.zeros(1000, np.float32), 35.0) == (0, 0)
    assert voiced_span(np.ones(100, np.float32), 35.0) == (0, 100)
    # a lower floor keeps the quiet lead: -80 dB is above the 1e-4 noise relative to 0.3
    assert voiced_span(x, 80.0)[0] == 0


def test_importing_the_module_does_not_import_torch() -> None:
    code = ("import sys; import whisper_streaming.analyzers.speaker_id as m; "
            "m.speaker_analyzer_spec().build(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
