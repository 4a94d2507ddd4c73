"""The speech screen: level normalisation, the verdict rule, and the engine wrapper (fake
detector and fake inner engine here; the real Silero model on real speech and synthetic hold
music, DTMF and noise at the end)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.backends.base import GuardCounts
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.base import BatchDecode, EngineOptions
from whisper_streaming.engines.speech_screen import (
    ScreenedEngine,
    SileroSpeechDetector,
    SpeechScreen,
    PREFIX_S,
    SpeechScreenOptions,
    normalize_level,
)
from whisper_streaming.errors import UsageError

from bench.signals import dtmf, hold_music, pink_noise

DATA = Path(__file__).resolve().parents[2] / "data"
RATE = 16000


class ScriptedDetector:
    """Scores the windows with ``scores`` (the first ``len(audio) // 512`` of them, whatever the
    audio holds), and records the length of the audio it was given."""

    window_samples = 512

    def __init__(self, scores: list[float] | None = None) -> None:
        self.scores = list(scores or [])
        self.seen: list[int] = []

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        self.seen.append(len(audio))
        return np.asarray(self.scores[: len(audio) // self.window_samples], dtype=np.float64)


def scripted(*scores: float, **options: float) -> tuple[SpeechScreen, ScriptedDetector, np.ndarray]:
    """A screen (``options``; ``min_audio_s`` 0 unless given) over a detector that scores
    ``scores``, and audio of that many windows."""
    detector = ScriptedDetector(list(scores))
    screen = SpeechScreen(detector, SpeechScreenOptions(**{"min_audio_s": 0.0, **options}))
    return screen, detector, np.full(512 * len(scores), 0.1, dtype=np.float32)


class InnerEngine:
    name = "inner"

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None, minimal: bool = False,
                   batch: BatchDecode | None = None, should_stop: Callable[[], bool] | None = None) -> Transcript:
        self.calls.append({"minimal": minimal, "batch": batch, "should_stop": should_stop, "language": language})
        return Transcript("decoded", "en", 1.0, (), len(audio) / RATE)


class NoStopEngine:
    name = "nostop"

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio: np.ndarray, *, language: LanguageRequest | None = None) -> Transcript:
        self.calls += 1
        return Transcript("decoded", "en", 1.0, (), len(audio) / RATE)


def test_normalize_level_brings_the_loudest_frames_to_the_target() -> None:
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(RATE) * 10 ** (-65 / 20)).astype(np.float32)
    scaled, gain = normalize_level(quiet, -20.0, 50.0)
    frames = scaled[: len(scaled) // 480 * 480].reshape(-1, 480).astype(np.float64)
    top = np.percentile(10 * np.log10(np.mean(frames**2, axis=1)), 95)
    assert abs(top - -20.0) < 0.01 and 40 < gain < 50
    assert scaled.dtype == np.float32 and scaled.shape == quiet.shape
    # the gain is bounded both ways, and the result stays in [-1, 1]
    _, gain = normalize_level(quiet * 1e-4, -20.0, 50.0)
    assert gain == 50.0
    loud, gain = normalize_level(np.ones(RATE, dtype=np.float32), -20.0, 10.0)
    assert gain == -10.0 and np.max(np.abs(loud)) <= 1.0
    tiny = np.ones(100, dtype=np.float32)
    assert normalize_level(tiny)[1] == 0.0 and normalize_level(tiny)[0] is tiny


def test_the_verdict_counts_windows_above_the_threshold() -> None:
    screen, _, audio = scripted(*([0.0] * 60 + [0.9] * 5), probability=0.3, min_speech_ms=160)
    assert screen.min_speech_windows == 5  # 160 ms of 32 ms windows
    speech = screen.judge(audio)
    assert speech is not None and speech.speech and speech.speech_windows == 5 and speech.windows == 65
    screen, _, audio = scripted(*([0.31] * 4 + [0.3] * 40 + [0.1] * 20))  # 0.3 itself is not above
    music = screen.judge(audio)
    assert music is not None and not music.speech and music.speech_windows == 4
    assert SpeechScreen(ScriptedDetector(), SpeechScreenOptions(min_speech_ms=161)).min_speech_windows == 6
    assert SpeechScreen(ScriptedDetector(), SpeechScreenOptions(min_speech_ms=1)).min_speech_windows == 1


def test_speech_in_the_first_second_spares_scoring_the_rest() -> None:
    prefix = 31  # 1.0 s of 32 ms windows, rounded down
    assert int(PREFIX_S * RATE) // 512 == prefix
    screen, detector, audio = scripted(*([0.9] * 5 + [0.0] * 95))
    early = screen.judge(audio)
    assert early is not None and early.speech and early.windows == prefix
    assert detector.seen == [(prefix + 1) * 512]  # one window more, not counted (a run's last scores differently)
    # speech only later, and no speech at all: the whole utterance is scored after the prefix
    screen, detector, audio = scripted(*([0.0] * 40 + [0.9] * 5 + [0.0] * 20))
    late = screen.judge(audio)
    assert late is not None and late.speech and late.windows == 65
    assert detector.seen == [(prefix + 1) * 512, 65 * 512]
    screen, detector, audio = scripted(*([0.1] * 100))
    none = screen.judge(audio)
    assert none is not None and not none.speech and none.windows == 100
    assert detector.seen == [(prefix + 1) * 512, 100 * 512]
    # under two seconds: scored once, whole
    screen, detector, audio = scripted(*([0.9] * 5 + [0.0] * 55))
    assert screen.judge(audio) is not None and detector.seen == [60 * 512]


def test_short_utterances_are_not_judged() -> None:
    detector = ScriptedDetector()
    screen = SpeechScreen(detector, SpeechScreenOptions(min_audio_s=1.5))
    assert screen.judge(np.zeros(int(1.5 * RATE) - 1, dtype=np.float32)) is None
    assert detector.seen == []  # the model never ran
    assert screen.judge(np.zeros(int(1.5 * RATE), dtype=np.float32)) is not None


@pytest.mark.parametrize("bad", [{"min_audio_s": -1.0}, {"probability": 1.0}, {"probability": -0.1}, {"min_speech_ms": 0}])
def test_options_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        SpeechScreenOptions(**bad)


def test_the_wrapper_does_not_decode_what_the_screen_rejects() -> None:
    inner = InnerEngine()
    screen, _, music = scripted(*([0.1] * 50), min_audio_s=1.0)  # 1.6 s, no window above 0.3
    engine = ScreenedEngine(inner, screen)
    t = engine.transcribe(music, language=LanguageRequest(kept="de"))
    assert inner.calls == [] and engine.screened == 1
    assert t.text == "" and t.no_speech_screened and not t.dropped_no_speech and t.attempts == 0
    assert t.language == "" and t.language_probability == 0.0 and t.segments == ()  # nothing decoded, no language
    assert abs(t.audio_duration_s - len(music) / RATE) < 1e-9
    assert engine.transcribe(music, language=LanguageRequest(fixed="ko")).language == ""
    # the %C counter
    assert GuardCounts().add(t).no_speech_screened == 1 and GuardCounts().add(t).no_speech_dropped == 0


def test_the_wrapper_passes_speech_short_utterances_and_batch_chunks_through() -> None:
    inner = InnerEngine()
    screen, _, speech = scripted(*([0.9] * 5 + [0.0] * 45), min_audio_s=1.0)
    engine = ScreenedEngine(inner, screen)
    stop = lambda: False  # noqa: E731
    request = LanguageRequest(kept="en")
    t = engine.transcribe(speech, language=request, minimal=True, should_stop=stop)
    assert t.text == "decoded" and not t.no_speech_screened
    assert inner.calls[-1] == {"minimal": True, "batch": None, "should_stop": stop, "language": request}
    screen.detector.scores = [0.0] * 50  # now nothing scores as speech
    engine.transcribe(speech[: 20 * 512])  # 0.64 s: too short to judge
    assert len(inner.calls) == 2
    batch = BatchDecode()
    engine.transcribe(speech, batch=batch)  # a batch chunk is never screened
    assert inner.calls[-1]["batch"] is batch and engine.screened == 0
    engine.transcribe(speech)
    assert engine.screened == 1 and len(inner.calls) == 3
    # attributes are the inner engine's; a copy does not recurse into __getattr__
    assert engine.name == "inner" and engine.calls is inner.calls and engine.inner is inner
    assert copy.copy(engine).inner is inner


class BrokenDetector:
    window_samples = 512

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime fell over")


def test_a_broken_screen_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    inner = InnerEngine()
    engine = ScreenedEngine(inner, SpeechScreen(BrokenDetector(), SpeechScreenOptions(min_audio_s=0.0)))
    with caplog.at_level("ERROR"):
        t = engine.transcribe(np.zeros(RATE * 2, dtype=np.float32))
    assert t.text == "decoded" and len(inner.calls) == 1 and engine.screened == 0
    assert "speech screen failed" in caplog.text


def test_the_config_builds_the_screen_options() -> None:
    from whisper_streaming.app.wiring import engine_options_from_config
    from whisper_streaming.config.loader import parse_config

    default = engine_options_from_config(parse_config({})).speech_screen
    assert default == SpeechScreenOptions(min_audio_s=1.5, probability=0.3, min_speech_ms=160)
    custom = engine_options_from_config(parse_config({"model": {"speech_screen_min_audio_s": 2.5, "speech_screen_threshold": 0.5,
                                                                "speech_screen_min_speech_ms": 100}})).speech_screen
    assert custom == SpeechScreenOptions(min_audio_s=2.5, probability=0.5, min_speech_ms=100)
    assert SpeechScreen(ScriptedDetector(), custom).min_speech_windows == 4  # 100 ms: 4 windows of 32 ms
    assert engine_options_from_config(parse_config({"model": {"speech_screen_min_audio_s": None}})).speech_screen is None


def test_create_engine_puts_the_screen_in_front_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from whisper_streaming.engines import registry

    built: list[InnerEngine] = []
    monkeypatch.setitem(registry.ENGINES, "inner", lambda options: built.append(InnerEngine()) or built[-1])
    plain = registry.create_engine(EngineOptions(engine="inner"))
    assert plain is built[-1]
    screened = registry.create_engine(EngineOptions(engine="inner", speech_screen=SpeechScreenOptions()))
    assert isinstance(screened, ScreenedEngine) and screened.inner is built[-1]
    assert isinstance(screened.screen.detector, SileroSpeechDetector)


def test_should_stop_reaches_only_an_engine_that_takes_it() -> None:
    inner = NoStopEngine()
    screen, _, speech = scripted(*([0.9] * 50), min_audio_s=1.0)
    engine = ScreenedEngine(inner, screen)
    engine.transcribe(speech, should_stop=lambda: False)
    assert inner.calls == 1


def test_engine_options_carry_no_screen_by_default() -> None:
    assert EngineOptions().speech_screen is None


# --- the real Silero model (faster-whisper's bundled ONNX): speech passes, music and tones do not ---


@pytest.fixture(scope="module")
def silero_screen() -> SpeechScreen:
    return SpeechScreen(SileroSpeechDetector())


NON_SPEECH = {
    "hold music": lambda: hold_music(6.0),
    "DTMF": lambda: dtmf("5551234987", amplitude=0.15),
    "pink noise": lambda: pink_noise(5 * RATE, np.random.default_rng(1)) * 0.05,
}


@pytest.mark.parametrize("name", list(NON_SPEECH))
def test_silero_screens_out_music_tones_and_noise(silero_screen: SpeechScreen, name: str) -> None:
    verdict = silero_screen.judge(NON_SPEECH[name]().astype(np.float32))
    assert verdict is not None and not verdict.speech, verdict


@pytest.mark.parametrize("dbfs", [None, -65.0])
@pytest.mark.parametrize("name", ["jfk.wav", "librispeech_test-clean_61-70968-0000.wav"])
def test_silero_passes_speech_at_any_level(silero_screen: SpeechScreen, name: str, dbfs: float | None) -> None:
    audio, rate = sf.read(DATA / name, dtype="float32")
    assert rate == RATE
    if dbfs is not None:
        audio = (audio * 10 ** (dbfs / 20) / np.sqrt(np.mean(audio.astype(np.float64) ** 2))).astype(np.float32)
    verdict = silero_screen.judge(audio)
    assert verdict is not None and verdict.speech, verdict
    assert verdict.speech_windows >= 4 * silero_screen.min_speech_windows  # not a near thing


def test_silero_is_causal_so_a_prefix_scores_as_the_whole(silero_screen: SpeechScreen) -> None:
    audio, _ = sf.read(DATA / "jfk.wav", dtype="float32")
    scaled, _ = normalize_level(audio)
    kept = scaled.copy()
    prefix = silero_screen.detector.probabilities(scaled[: 32 * 512])  # first, as judge() does
    whole = silero_screen.detector.probabilities(scaled)
    assert np.array_equal(scaled, kept)  # the detector leaves its input alone
    assert whole.shape == (len(audio) // 512,) and prefix.shape == (32,)
    assert np.max(np.abs(whole[:31] - prefix[:31])) < 1e-4


def test_the_first_second_shortcut_gives_the_whole_utterance_verdict(silero_screen: SpeechScreen) -> None:
    """Speech that starts after the first second: the prefix is scored, then the whole, which
    must count exactly what scoring the whole alone counts."""
    audio, _ = sf.read(DATA / "jfk.wav", dtype="float32")
    late = np.concatenate([hold_music(1.5).astype(np.float32) * 0.01, audio[: 3 * RATE]])
    verdict = silero_screen.judge(late)
    scaled, _ = normalize_level(late)
    alone = silero_screen.detector.probabilities(scaled.copy())
    assert verdict is not None and verdict.speech and verdict.windows == alone.size
    assert verdict.speech_windows == int(np.count_nonzero(alone > silero_screen.options.probability))


def test_silero_passes_speech_over_hold_music(silero_screen: SpeechScreen) -> None:
    audio, _ = sf.read(DATA / "jfk.wav", dtype="float32")
    music = hold_music(len(audio) / RATE + 1)[: len(audio)]
    verdict = silero_screen.judge((audio + 0.3 * music).astype(np.float32))
    assert verdict is not None and verdict.speech, verdict
