"""Unit tests for whisper_streaming.pipeline.vad (pure VAD endpointing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import UsageError
from whisper_streaming.pipeline.vad import EndReason, Utterance, VadOptions, VadSegmenter

RATE = 16000
FS = 480  # samples per 30 ms frame at 16 kHz
JFK_WAV = Path(__file__).resolve().parents[2] / "data" / "jfk.wav"


# --------------------------------------------------------------------------- helpers


def tone(seconds: float) -> np.ndarray:
    """Harmonic-rich 220 Hz tone (5 harmonics), peak ~ 18000; WebRTC VAD calls it speech."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = sum(8000.0 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
    return np.clip(x, -32767, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def energy_vad(frame: bytes, rate: int) -> bool:
    """Deterministic fake VAD: a frame is voiced iff it is loud."""
    x = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
    return bool(np.abs(x).mean() > 500)


def from_pattern(pattern: str, seed: int = 0, fs: int = FS) -> np.ndarray:
    """One frame per character: '#' loud noise (voiced for energy_vad), '.' near-silence."""
    rng = np.random.default_rng(seed)
    frames = []
    for ch in pattern:
        if ch == "#":
            mag = rng.integers(1000, 3000, fs)
            frames.append((mag * rng.choice([-1, 1], fs)).astype(np.int16))
        else:
            frames.append(rng.integers(-20, 21, fs).astype(np.int16))
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def run(
    signal: np.ndarray,
    options: VadOptions | None = None,
    *,
    chunk: int | None = None,
    as_bytes: bool = False,
    is_speech=None,
    flush: bool = True,
) -> list[Utterance]:
    seg = VadSegmenter(options or VadOptions(), is_speech=is_speech)
    chunks = [signal] if chunk is None else [signal[i : i + chunk] for i in range(0, len(signal), chunk)]
    out: list[Utterance] = []
    for c in chunks:
        out += seg.feed(c.tobytes() if as_bytes else c)
    assert seg.samples_received == len(signal)
    if flush:
        out += seg.flush()
    return out


def audio_end(u: Utterance) -> int:
    return u.audio_start_sample + len(u.samples)


def key(u: Utterance) -> tuple:
    return (
        u.index,
        u.audio_start_sample,
        u.speech_start_sample,
        u.speech_end_sample,
        u.end_reason,
        u.samples.tobytes(),
    )


def check_invariants(
    utts: list[Utterance], signal: np.ndarray, opts: VadOptions, *, strict_tiling: bool = True
) -> None:
    """Properties every segmentation must have.

    With ``strict_tiling``, the utterance after a MAX_LENGTH cut must start exactly where the
    cut one ended (true unless the carried-over rest was later discarded as too short).
    """
    prev_end = 0
    for i, u in enumerate(utts):
        assert u.index == i
        assert u.samples.dtype == np.int16 and u.samples.ndim == 1
        assert not u.samples.flags.writeable
        assert u.sample_rate_hz == opts.sample_rate_hz
        assert u.audio_start_sample >= prev_end, "samples appear in two utterances"
        assert u.audio_start_sample <= u.speech_start_sample < u.speech_end_sample <= audio_end(u)
        assert audio_end(u) <= len(signal)
        assert audio_end(u) <= u.endpoint_sample <= len(signal), "emitted before its audio was complete"
        assert len(u.samples) <= opts.max_speech_s * opts.sample_rate_hz
        np.testing.assert_array_equal(u.samples, signal[u.audio_start_sample : audio_end(u)])
        if strict_tiling and u.end_reason is EndReason.MAX_LENGTH and i + 1 < len(utts):
            assert utts[i + 1].audio_start_sample == audio_end(u), "cut must tile contiguously"
        prev_end = audio_end(u)


# --------------------------------------------------------------------------- options


def test_default_options() -> None:
    o = VadOptions()
    assert o.frame_samples == 480
    assert VadOptions(sample_rate_hz=8000, frame_ms=10).frame_samples == 80
    assert VadOptions(sample_rate_hz=48000, frame_ms=20).frame_samples == 960
    assert o.silence_frames * o.frame_ms == 480


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": 4}, "mode"),
        ({"mode": -1}, "mode"),
        ({"mode": True}, "mode"),
        ({"mode": 1.0}, "mode"),
        ({"sample_rate_hz": 44100}, "sample_rate_hz"),
        ({"frame_ms": 25}, "frame_ms"),
        ({"silence_frames": 0}, "silence_frames"),
        ({"max_speech_s": 0}, "max_speech_s"),
        ({"max_speech_s": float("nan")}, "max_speech_s"),
        ({"max_speech_s": float("inf")}, "max_speech_s"),
        ({"max_speech_s": "10"}, "max_speech_s"),
        ({"max_speech_s": 0.5}, "max_speech_s"),  # shorter than pre-roll + trigger window
        ({"preroll_ms": 199}, "preroll_ms"),
        ({"start_window_frames": 0}, "start_window_frames"),
        ({"start_voiced_frames": 0}, "start_voiced_frames"),
        ({"start_voiced_frames": 11}, "start_voiced_frames"),
        ({"min_speech_ms": -1}, "min_speech_ms"),
    ],
)
def test_options_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(UsageError, match=field):
        VadOptions(**kwargs)


def test_options_validation_lists_every_problem() -> None:
    with pytest.raises(UsageError) as exc:
        VadOptions(mode=9, frame_ms=15, preroll_ms=10)
    msg = str(exc.value)
    assert "mode" in msg and "frame_ms" in msg and "preroll_ms" in msg


def test_segmenter_rejects_bad_options_type() -> None:
    with pytest.raises(UsageError):
        VadSegmenter({"mode": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pcm",
    [
        b"\x00\x01\x02",  # odd number of bytes
        np.zeros(480, dtype=np.float32),
        np.zeros(480, dtype=np.int32),
        np.zeros((480, 2), dtype=np.int16),
        [0] * 480,
    ],
)
def test_feed_rejects_bad_input(pcm) -> None:
    seg = VadSegmenter(is_speech=energy_vad)
    with pytest.raises(UsageError):
        seg.feed(pcm)


def test_feed_copies_caller_array() -> None:
    sig = from_pattern("." * 30 + "#" * 20 + "." * 5)
    buf = sig.copy()
    seg = VadSegmenter(is_speech=energy_vad)
    seg.feed(buf)
    buf[:] = 0  # caller reuses its buffer
    (u,) = seg.flush()
    np.testing.assert_array_equal(u.samples, sig[u.audio_start_sample : audio_end(u)])


def test_is_speech_gets_whole_frames() -> None:
    calls: list[tuple[int, int]] = []

    def spy(frame: bytes, rate: int) -> bool:
        calls.append((len(frame), rate))
        return False

    seg = VadSegmenter(VadOptions(sample_rate_hz=8000, frame_ms=20), is_speech=spy)
    seg.feed(np.zeros(1000, dtype=np.int16))
    assert calls == [(320, 8000)] * 6  # 1000 // 160 frames of 160 samples = 320 bytes


# --------------------------------------------------------------------------- synthetic audio


def test_webrtcvad_calls_the_test_tone_speech() -> None:
    import webrtcvad

    vad = webrtcvad.Vad(1)
    x = tone(1.0)
    flags = [vad.is_speech(x[i : i + FS].tobytes(), RATE) for i in range(0, len(x) - FS + 1, FS)]
    assert sum(flags) >= 0.9 * len(flags)


def test_silence_only_gives_nothing() -> None:
    seg = VadSegmenter()
    assert seg.feed(silence(3.0)) == []
    assert not seg.in_speech
    assert seg.flush() == []


def test_one_tone_between_silences() -> None:
    sig = np.concatenate([silence(1.0), tone(1.0), silence(1.0)])
    opts = VadOptions()
    (u,) = run(sig, opts)
    check_invariants([u], sig, opts)
    assert u.index == 0
    assert u.end_reason is EndReason.SILENCE
    assert abs(u.start_s - 1.0) <= 0.1
    # WebRTC VAD keeps "speech" for a hangover of up to 5 x 30 ms after the sound stops.
    assert 1.9 <= u.end_s <= 2.2
    assert u.speech_start_sample - u.audio_start_sample >= 0.2 * RATE  # pre-roll
    # Samples include trailing_ms after the last voiced frame, not the whole endpointing silence.
    assert audio_end(u) - u.speech_end_sample == opts.trailing_samples == 0.18 * RATE
    assert u.endpoint_sample == u.speech_end_sample + opts.silence_frames * opts.frame_samples
    assert u.duration_s == len(u.samples) / RATE
    assert u.audio_start_s == u.audio_start_sample / RATE


def test_samples_are_read_only() -> None:
    (u,) = run(np.concatenate([silence(1.0), tone(1.0), silence(1.0)]))
    with pytest.raises(ValueError):
        u.samples[0] = 1


def test_two_tones_far_apart_give_two_utterances() -> None:
    sig = np.concatenate([silence(1.0), tone(1.0), silence(1.0), tone(1.0), silence(1.0)])
    opts = VadOptions()
    utts = run(sig, opts)
    check_invariants(utts, sig, opts)
    assert [u.index for u in utts] == [0, 1]
    assert abs(utts[0].start_s - 1.0) <= 0.1
    assert abs(utts[1].start_s - 3.0) <= 0.1
    assert 3.9 <= utts[1].end_s <= 4.2


def test_two_tones_close_together_give_one_utterance() -> None:
    sig = np.concatenate([silence(1.0), tone(1.0), silence(0.3), tone(1.0), silence(1.0)])
    (u,) = run(sig)
    assert abs(u.start_s - 1.0) <= 0.1
    assert 3.2 <= u.end_s <= 3.5


@pytest.mark.parametrize(
    ("chunk", "as_bytes"),
    [(None, False), (480, False), (7, False), (333, False), (None, True), (1001, True)],
)
def test_chunking_does_not_matter(chunk: int | None, as_bytes: bool) -> None:
    # Two utterances, the second still in progress at flush time.
    sig = np.concatenate([silence(0.5), tone(0.7), silence(0.8), tone(0.6)])
    reference = [key(u) for u in run(sig)]
    assert [r[4] for r in reference] == [EndReason.SILENCE, EndReason.FLUSH]
    assert [key(u) for u in run(sig, chunk=chunk, as_bytes=as_bytes)] == reference


# --------------------------------------------------------------------------- maximum length


def test_long_tone_is_cut_into_contiguous_pieces() -> None:
    sig = np.concatenate([silence(1.0), tone(25.0), silence(1.0)])
    opts = VadOptions(min_dynamic_range_db=None)  # a steady tone stands in for speech
    utts = run(sig, opts)
    check_invariants(utts, sig, opts)
    assert len(utts) == 3
    assert [u.end_reason for u in utts] == [EndReason.MAX_LENGTH] * 2 + [EndReason.SILENCE]
    for a, b in zip(utts, utts[1:]):
        assert b.audio_start_sample == audio_end(a)
    assert abs(utts[0].start_s - 1.0) <= 0.1
    assert audio_end(utts[-1]) >= 26.0 * RATE
    assert 25.9 <= utts[-1].end_s <= 26.25  # + WebRTC's hangover (<= 7 frames) into the digital silence


#   frames 0..29 silent, speech from frame 30 -> audio starts 300 ms earlier at sample 9600;
#   max 10 s -> limit 169600; last 30 % of the window starts at 121600 (inside frame 253).
_LEAD = "." * 30


def test_max_length_cut_lands_in_longest_pause_of_last_30_percent() -> None:
    pattern = (
        _LEAD
        + "#" * 70
        + "." * 10  # frames 100..109: long pause, but before the last 30 %: ignored
        + "#" * 150
        + "." * 2  # frames 260..261: short pause in the last 30 %
        + "#" * 28
        + "." * 5  # frames 290..294: longest pause in the last 30 % -> cut in its middle
        + "#" * 100
        + "." * 20
    )
    sig = from_pattern(pattern)
    opts = VadOptions(min_dynamic_range_db=None)  # a steady tone stands in for speech
    utts = run(sig, opts, is_speech=energy_vad)
    check_invariants(utts, sig, opts)
    assert len(utts) == 2
    first, second = utts
    assert first.audio_start_sample == 9600
    assert first.speech_start_sample == 30 * FS
    assert first.end_reason is EndReason.MAX_LENGTH
    cut = (290 * FS + 295 * FS) // 2
    assert audio_end(first) == cut
    assert first.speech_end_sample == 290 * FS
    assert second.audio_start_sample == cut
    assert second.speech_start_sample == 295 * FS
    assert second.speech_end_sample == 395 * FS
    assert second.end_reason is EndReason.SILENCE


def test_max_length_without_pause_cuts_at_the_quietest_frame() -> None:
    """No unvoiced frame in the last 30 %: the cut falls in the middle of the quietest whole frame
    there (babble keeps the detector voiced; the energy still dips between words)."""
    sig = from_pattern(_LEAD + "#" * 400 + "." * 20)
    quiet_frame = 30 + 320  # inside the last 30 % of the first 10 s (frames 30 .. 363)
    sig[quiet_frame * FS : (quiet_frame + 1) * FS] //= 2  # still voiced for energy_vad, but the quietest
    opts = VadOptions(min_dynamic_range_db=None)  # a steady tone stands in for speech
    utts = run(sig, opts, is_speech=energy_vad)
    check_invariants(utts, sig, opts)
    first, second = utts
    assert first.end_reason is EndReason.MAX_LENGTH
    cut = quiet_frame * FS + FS // 2
    assert audio_end(first) == first.speech_end_sample == cut
    assert second.audio_start_sample == second.speech_start_sample == cut
    assert second.speech_end_sample == 430 * FS
    assert second.end_reason is EndReason.SILENCE


def _noisy_line_vad(frame: bytes, rate: int) -> bool:
    """A detector fooled by line noise: the noise floor between sentences is voiced too."""
    x = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
    return bool(np.abs(x).mean() > 100)


@pytest.mark.parametrize("dip", ["voiced_dip", "lost_packet"])
def test_max_length_on_a_noisy_line_cuts_in_the_pause_at_the_noise_floor(dip: str) -> None:
    """The detector calls a 0.9 s pause at the noise floor voiced; late in the window one frame
    inside the speech is quieter still: a dip between syllables (voiced, 1.6 dB under the
    floor), or a lost packet's zeros (unvoiced).  A cut there would split a word: it goes in the
    pause."""
    rng = np.random.default_rng(3)
    loud = lambda n: (rng.integers(1000, 3000, n * FS) * rng.choice([-1, 1], n * FS)).astype(np.int16)  # noqa: E731
    floor = lambda n: rng.integers(-300, 301, n * FS).astype(np.int16)  # noqa: E731  voiced for _noisy_line_vad
    low = rng.integers(-250, 251, FS).astype(np.int16) if dip == "voiced_dip" else np.zeros(FS, np.int16)
    assert _noisy_line_vad(low.tobytes(), RATE) == (dip == "voiced_dip")
    sig = np.concatenate([loud(260), floor(30), loud(40), low, loud(70), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    utts = run(sig, opts, is_speech=_noisy_line_vad)
    check_invariants(utts, sig, opts)
    first, second = utts[0], utts[1]
    assert first.audio_start_sample == 0 and first.end_reason is EndReason.MAX_LENGTH
    assert 260 * FS < audio_end(first) < 290 * FS  # in the pause (frames 260..289), not at the dip (330)
    assert second.audio_start_sample == audio_end(first)


def test_max_length_cut_prefers_a_quiet_stretch_at_the_floor_to_a_single_unvoiced_frame() -> None:
    """A single unvoiced frame late in the window is no pause the detector found; 20 frames at
    the floor that it called voiced are the quietest 150 ms: the cut goes there."""
    rng = np.random.default_rng(4)
    loud = lambda n: (rng.integers(1000, 3000, n * FS) * rng.choice([-1, 1], n * FS)).astype(np.int16)  # noqa: E731
    floor = lambda n: rng.integers(-300, 301, n * FS).astype(np.int16)  # noqa: E731
    sig = np.concatenate([loud(270), floor(20), loud(35), from_pattern("."), loud(80), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    first = run(sig, opts, is_speech=_noisy_line_vad)[0]
    assert first.end_reason is EndReason.MAX_LENGTH
    assert 270 * FS < audio_end(first) < 290 * FS


def test_max_length_on_babble_prefers_a_short_deep_pause_to_a_longer_shallow_dip() -> None:
    """JFK under babble: a 6-frame pause at the floor (voiced for the detector), and later a
    12-frame stretch of soft speech 8 dB above it.  A run near a percentile floor would take
    the longer, shallower stretch and cut a word; the quietest 150 ms is in the pause."""
    rng = np.random.default_rng(6)
    loud = lambda n: (rng.integers(1000, 3000, n * FS) * rng.choice([-1, 1], n * FS)).astype(np.int16)  # noqa: E731
    level = lambda n, amp: rng.integers(-amp, amp + 1, n * FS).astype(np.int16)  # noqa: E731  voiced for _noisy_line_vad
    sig = np.concatenate([loud(260), level(6, 300), loud(30), level(12, 750), loud(60), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    first = run(sig, opts, is_speech=_noisy_line_vad)[0]
    assert first.end_reason is EndReason.MAX_LENGTH
    assert 260 * FS < audio_end(first) < 266 * FS


def test_max_length_on_a_clean_line_keeps_the_detectors_pause_over_a_quiet_word() -> None:
    """Speech at varied levels: a 6-frame unvoiced pause, then a 12-frame word 10 dB down (still
    voiced).  The pause the detector found wins; the quietest stretch is for lines where it
    found none."""
    rng = np.random.default_rng(5)
    loud = lambda n, amp: (rng.integers(amp // 3, amp, n * FS) * rng.choice([-1, 1], n * FS)).astype(np.int16)  # noqa: E731
    sig = np.concatenate([from_pattern(_LEAD), loud(270, 3000), from_pattern("." * 6), loud(14, 3000), loud(12, 950),
                          loud(100, 3000), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    first = run(sig, opts, is_speech=energy_vad)[0]
    assert first.end_reason is EndReason.MAX_LENGTH
    assert audio_end(first) == (300 * FS + 306 * FS) // 2


def test_max_length_respects_custom_limit() -> None:
    sig = from_pattern(_LEAD + "#" * 300 + "." * 20)
    opts = VadOptions(max_speech_s=2.5, min_dynamic_range_db=None)
    utts = run(sig, opts, is_speech=energy_vad)
    check_invariants(utts, sig, opts)
    assert [u.end_reason for u in utts[:-1]] == [EndReason.MAX_LENGTH] * (len(utts) - 1)
    assert utts[-1].end_reason is EndReason.SILENCE
    assert all(0.7 * 2.5 * RATE <= len(u.samples) <= 2.5 * RATE for u in utts[:-1])  # cut in the last 30 %
    assert audio_end(utts[-1]) == (30 + 300) * FS + opts.trailing_samples
    # a cut is decided when the cap is reached, after its cut point
    for u in utts[:-1]:  # the first frame that takes the utterance past the cap
        assert 0 < u.endpoint_sample - (u.audio_start_sample + int(2.5 * RATE)) <= FS


def test_long_utterance_ends_at_half_the_endpointing_silence() -> None:
    # 315 voiced frames (9.45 s of speech, past 70 % of the 10 s cap), then a 20-frame pause:
    # 8 unvoiced frames end it (not 16, and not the cap a few frames later).
    sig = from_pattern(_LEAD + "#" * 315 + "." * 20 + "#" * 20 + "." * 20)
    opts = VadOptions(min_dynamic_range_db=None)  # a steady tone stands in for speech
    first, second = run(sig, opts, is_speech=energy_vad)
    check_invariants([first, second], sig, opts)
    assert first.end_reason is EndReason.SILENCE
    assert first.speech_end_sample == 345 * FS
    assert first.endpoint_sample == (345 + 8) * FS
    assert audio_end(first) == 345 * FS + opts.trailing_samples
    assert second.end_reason is EndReason.SILENCE and second.speech_start_sample == 365 * FS
    # the second one is short: the full 16 frames
    assert second.endpoint_sample == second.speech_end_sample + 16 * FS


class _HangoverVad:
    """A detector with WebRTC VAD's hangover: a loud frame (mean |x| > 500) is voiced, and so
    are the 5 frames after one, however quiet."""

    def __init__(self) -> None:
        self.since_loud = 99

    def __call__(self, frame: bytes, rate: int) -> bool:
        x = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
        self.since_loud = 0 if np.abs(x).mean() > 500 else self.since_loud + 1
        return self.since_loud <= 5


def _loud(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.integers(1000, 3000, n * FS) * rng.choice([-1, 1], n * FS)).astype(np.int16)


def test_long_speech_ends_in_a_clean_pause_that_the_detectors_hangover_hides() -> None:
    """An IVR prompt on a clean line: 8.4 s of speech, a 300 ms pause 39 dB under the loudest
    frame, more speech.  The hangover leaves 5 unvoiced frames in the pause, fewer than the 8
    that end long speech.  Past 7 s frames that quiet are a pause: the utterance ends there,
    not at the cap 1.4 s later."""
    rng = np.random.default_rng(7)
    quiet = rng.integers(-40, 41, 10 * FS).astype(np.int16)
    sig = np.concatenate([from_pattern(_LEAD), _loud(rng, 270), quiet, _loud(rng, 100), from_pattern("." * 30)])
    opts = VadOptions(min_dynamic_range_db=None)
    utts = run(sig, opts, is_speech=_HangoverVad())
    check_invariants(utts, sig, opts)
    first, second = utts
    assert first.end_reason is EndReason.SILENCE
    assert first.speech_end_sample == 300 * FS
    assert first.endpoint_sample == (300 + 8) * FS  # not the cap (frame 354)
    assert audio_end(first) == 300 * FS + opts.trailing_samples
    assert second.speech_start_sample == 310 * FS and second.end_reason is EndReason.SILENCE


def test_a_pause_on_a_noisy_line_is_not_that_quiet_and_the_cap_cuts_as_before() -> None:
    """The same pause 16 dB under the loudest frame (line noise): the hangover still hides it,
    and the speech runs to the cap, which cuts in the pause's unvoiced frames."""
    rng = np.random.default_rng(7)
    noise = rng.integers(-600, 601, 10 * FS).astype(np.int16)
    sig = np.concatenate([from_pattern(_LEAD), _loud(rng, 270), noise, _loud(rng, 100), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    first = run(sig, opts, is_speech=_HangoverVad())[0]
    assert first.end_reason is EndReason.MAX_LENGTH
    assert audio_end(first) == (305 * FS + 310 * FS) // 2  # the middle of the 5 unvoiced frames
    assert first.endpoint_sample > 350 * FS


def test_a_quiet_pause_that_the_hangover_hides_ends_no_speech_shorter_than_7_s() -> None:
    """Before 7 s of speech the detector's frames count as they are: 600 ms 39 dB down, of which
    the hangover leaves 15 frames unvoiced, is one frame short of the 16 that end speech."""
    rng = np.random.default_rng(8)
    quiet = rng.integers(-40, 41, 20 * FS).astype(np.int16)
    sig = np.concatenate([from_pattern(_LEAD), _loud(rng, 100), quiet, _loud(rng, 50), from_pattern("." * 20)])
    opts = VadOptions(min_dynamic_range_db=None)
    (only,) = run(sig, opts, is_speech=_HangoverVad())
    assert only.speech_start_sample == 30 * FS
    assert only.speech_end_sample == 205 * FS  # the last loud frame and its hangover


def _level_vad(frame: bytes, rate: int) -> bool:
    """A detector that hears a soft talker: anything above near-silence (mean |x| about 10) is voiced."""
    x = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
    return bool(np.abs(x).mean() > 15)


def test_past_7_s_a_soft_second_talker_30_dB_down_ends_the_utterance_like_a_pause() -> None:
    """The rule's price, pinned: a soft second talker on a mono mix, 39 dB under the first,
    after 8.4 s of speech, is taken for a pause even though the detector calls it voiced.  The
    first utterance ends 8 frames into it with its 180 ms of trailing audio (the soft speech's
    start); the soft talker starts the next one at once, so only the 60 ms between the two are
    in neither."""
    rng = np.random.default_rng(9)
    soft = rng.integers(-40, 41, 20 * FS).astype(np.int16)
    sig = np.concatenate([from_pattern(_LEAD), _loud(rng, 270), soft, _loud(rng, 100), from_pattern("." * 30)])
    opts = VadOptions(min_dynamic_range_db=None)
    utts = run(sig, opts, is_speech=_level_vad)
    check_invariants(utts, sig, opts)
    first, second = utts
    assert first.end_reason is EndReason.SILENCE and first.endpoint_sample == 308 * FS
    assert audio_end(first) == 300 * FS + opts.trailing_samples
    assert second.audio_start_sample == first.endpoint_sample  # the soft talker, from the endpoint on
    assert second.audio_start_sample - audio_end(first) == 8 * FS - opts.trailing_samples  # 60 ms


def _polled_keys(seg: VadSegmenter, sig: np.ndarray, chunk: int) -> list[tuple]:
    """Feed ``sig`` in ``chunk``-sample pieces, polling :attr:`VadSegmenter.tentative` after each,
    and check that a tentative utterance not withdrawn is exactly the one emitted; the keys of
    everything emitted, flush included."""
    last: Utterance | None = None
    got: list[tuple] = []
    for i in range(0, len(sig), chunk):
        emitted = seg.feed(sig[i : i + chunk])
        got += [key(u) for u in emitted]
        now = seg.tentative
        for u in emitted:
            if last is not None and u.index == last.index and (now is None or now.index != last.index):
                if len(u.samples) == len(last.samples):  # the endpoint confirmed it
                    np.testing.assert_array_equal(last.samples, u.samples)
                    assert (u.audio_start_sample, u.speech_end_sample, u.endpoint_sample) == (
                        last.audio_start_sample, last.speech_end_sample, last.endpoint_sample)
                else:  # speech resumed inside this chunk: the utterance grew past the tentative end
                    assert u.speech_end_sample > last.speech_end_sample
        last = now
    return got + [key(u) for u in seg.flush()]


def _three_level_pattern(pattern: str, seed: int = 0) -> np.ndarray:
    """'#' loud, 'q' 39 dB under it (a clean line's pause or a soft talker), '.' near-silence."""
    rng = np.random.default_rng(seed)
    parts = {"#": lambda: _loud(rng, 1), "q": lambda: rng.integers(-40, 41, FS).astype(np.int16),
             ".": lambda: rng.integers(-20, 21, FS).astype(np.int16)}
    return np.concatenate([parts[c]() for c in pattern])


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(st.tuples(st.sampled_from("#q."), st.integers(1, 60)), min_size=1, max_size=20),
    chunk=st.integers(100, 6000),
    hangover=st.booleans(),
)
def test_invariants_and_tentative_hold_with_quiet_frames_in_long_speech(
    runs: list[tuple[str, int]], chunk: int, hangover: bool
) -> None:
    """Speech past 7 s with quiet frames the detector calls voiced (its hangover, or a soft
    talker): samples never in two utterances, cap cuts tile, chunking changes nothing, and a
    tentative utterance is exactly what is emitted."""
    pattern = _LEAD + "#" * 240 + "".join(c * n for c, n in runs) + "." * 30
    sig = _three_level_pattern(pattern)
    opts = VadOptions(min_dynamic_range_db=None)
    detector = (lambda: _HangoverVad()) if hangover else (lambda: _level_vad)
    whole = run(sig, opts, is_speech=detector())
    check_invariants(whole, sig, opts, strict_tiling=False)
    assert [key(u) for u in run(sig, opts, chunk=chunk, is_speech=detector())] == [key(u) for u in whole]
    assert _polled_keys(VadSegmenter(opts, is_speech=detector()), sig, chunk) == [key(u) for u in whole]


def test_pause_spanning_the_cut_still_ends_after_the_silence() -> None:
    # Speech stops at frame 349, 4 frames before the limit (inside frame 353): the cap comes
    # before the 8 frames a long utterance needs.  The cut falls in the pause; the unvoiced
    # frames after it keep counting, the carried-over rest (silence only) is dropped, and the
    # next speech (frame 369) triggers afresh.
    sig = from_pattern(_LEAD + "#" * 319 + "." * 20 + "#" * 20 + "." * 20)
    opts = VadOptions(min_dynamic_range_db=None)  # a steady tone stands in for speech
    first, second = run(sig, opts, is_speech=energy_vad)
    check_invariants([first, second], sig, opts, strict_tiling=False)
    assert first.end_reason is EndReason.MAX_LENGTH
    assert first.speech_end_sample == 349 * FS
    assert audio_end(first) == (349 * FS + 169600) // 2
    assert second.speech_start_sample == 369 * FS
    assert second.end_reason is EndReason.SILENCE


def test_max_length_never_cuts_in_the_preroll() -> None:
    # Pre-roll 800 ms reaches into the last 30 % (700..1000 ms) of a 1 s window; cutting in
    # that silent pre-roll would drop it, so the cut must be hard at 1 s instead.
    opts = VadOptions(max_speech_s=1.0, preroll_ms=800, start_window_frames=3, start_voiced_frames=3)
    sig = from_pattern("." * 40 + "#" * 60 + "." * 20)
    utts = run(sig, opts, is_speech=energy_vad)
    check_invariants(utts, sig, opts)
    first = utts[0]
    assert first.audio_start_sample == 40 * FS - 800 * RATE // 1000
    assert first.end_reason is EndReason.MAX_LENGTH
    # no pause after the speech began: a hard cut at 1 s, or at the quietest frame after enough
    # speech that the first part is kept (never a fragment that min_speech_ms would drop)
    assert first.speech_end_sample - first.speech_start_sample >= opts.min_speech_samples
    assert len(first.samples) <= RATE


# --------------------------------------------------------------------------- flush


def test_flush_emits_in_progress_utterance_with_partial_frame() -> None:
    sig = np.concatenate([from_pattern(_LEAD + "#" * 20), from_pattern("#", seed=1)[:100]])
    seg = VadSegmenter(is_speech=energy_vad)
    assert seg.feed(sig) == []
    assert seg.in_speech
    (u,) = seg.flush()
    assert u.end_reason is EndReason.FLUSH
    assert audio_end(u) == len(sig)  # the 100-sample partial frame is included
    np.testing.assert_array_equal(u.samples, sig[u.audio_start_sample :])
    assert not seg.in_speech


def test_flush_when_idle_returns_nothing() -> None:
    seg = VadSegmenter(is_speech=energy_vad)
    seg.feed(from_pattern("." * 10 + "#" * 2)[:-7])
    assert seg.flush() == []


def test_feed_or_flush_after_flush_raises() -> None:
    seg = VadSegmenter(is_speech=energy_vad)
    seg.feed(from_pattern(_LEAD))
    seg.flush()
    with pytest.raises(UsageError):
        seg.feed(np.zeros(480, dtype=np.int16))
    with pytest.raises(UsageError):
        seg.feed(b"")
    with pytest.raises(UsageError):
        seg.flush()


def test_too_short_blips_are_discarded_without_consuming_an_index() -> None:
    # 4 voiced frames = 120 ms < 150 ms: triggers, but is dropped; then a real utterance.
    sig = from_pattern(_LEAD + "#" * 4 + "." * 40 + "#" * 10 + "." * 20 + "#" * 4)
    utts = run(sig, is_speech=energy_vad)  # the final blip is in progress at flush: dropped too
    assert len(utts) == 1
    assert utts[0].index == 0
    assert utts[0].speech_start_sample == 74 * FS
    assert utts[0].speech_end_sample == 84 * FS


def test_min_speech_boundary_is_inclusive() -> None:
    sig = from_pattern(_LEAD + "#" * 5 + "." * 20)  # exactly 150 ms voiced
    (u,) = run(sig, is_speech=energy_vad)
    assert u.speech_end_sample - u.speech_start_sample == 150 * RATE // 1000


def test_preroll_is_clamped_at_stream_start() -> None:
    sig = from_pattern("#" * 10 + "." * 20)
    (u,) = run(sig, is_speech=energy_vad)
    assert u.audio_start_sample == 0 == u.speech_start_sample


def test_trigger_needs_enough_voiced_frames_in_window() -> None:
    # Voiced frames spread out: never 3 in a window of 10 -> no utterance.
    sig = from_pattern(_LEAD + "#....#....#....#...." * 3)
    assert run(sig, is_speech=energy_vad) == []
    # Three voiced frames within 10 trigger; speech starts at the first of them.
    sig = from_pattern(_LEAD + "#...#...#" + "#" * 5 + "." * 20)
    (u,) = run(sig, is_speech=energy_vad)
    assert u.speech_start_sample == 30 * FS
    assert u.audio_start_sample == 30 * FS - 300 * RATE // 1000


# --------------------------------------------------------------------------- property test


@settings(max_examples=100, deadline=None)
@given(
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 40)), min_size=1, max_size=20),
    silence_frames=st.integers(1, 20),
    max_speech_s=st.sampled_from([1.0, 1.7, 3.0]),
    chunk=st.integers(50, 5000),
    tail=st.integers(0, 479),
)
def test_invariants_hold_for_random_voicing(
    runs: list[tuple[bool, int]], silence_frames: int, max_speech_s: float, chunk: int, tail: int
) -> None:
    pattern = "".join(("#" if v else ".") * n for v, n in runs)
    sig = from_pattern(pattern + "#")[: len(pattern) * FS + tail]
    opts = VadOptions(silence_frames=silence_frames, max_speech_s=max_speech_s, min_dynamic_range_db=None)  # synthetic levels
    whole = run(sig, opts, is_speech=energy_vad)
    check_invariants(whole, sig, opts, strict_tiling=False)
    for a, b in zip(whole, whole[1:]):
        if a.end_reason is EndReason.MAX_LENGTH and b.audio_start_sample != audio_end(a):
            # The rest after the cut was dropped: it must have ended in a real pause
            # (silence_frames unvoiced frames, possibly starting before the cut).
            gap = pattern[a.speech_end_sample // FS : b.audio_start_sample // FS]
            assert "." * silence_frames in gap
    for u in whole:
        voiced_frames = sum(
            pattern[k] == "#"
            for k in range(u.speech_start_sample // FS, -(-u.speech_end_sample // FS))
            if k < len(pattern)
        )
        assert voiced_frames * FS >= opts.min_speech_samples - FS
    assert [key(u) for u in run(sig, opts, chunk=chunk, is_speech=energy_vad)] == [key(u) for u in whole]


# --------------------------------------------------------------------------- real speech


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    sf = pytest.importorskip("soundfile")
    audio, rate = sf.read(JFK_WAV, dtype="int16")
    assert rate == RATE and audio.ndim == 1
    return audio


def test_jfk_speech(jfk: np.ndarray) -> None:
    import webrtcvad

    opts = VadOptions()
    utts = run(jfk, opts)
    assert utts
    check_invariants(utts, jfk, opts)
    assert utts[0].start_s < 1.0
    # Every frame WebRTC VAD calls voiced is inside some utterance's audio.
    vad = webrtcvad.Vad(opts.mode)
    voiced = [
        i
        for i in range(0, len(jfk) - FS + 1, FS)
        if vad.is_speech(jfk[i : i + FS].tobytes(), RATE)
    ]
    covered = np.zeros(len(jfk), dtype=bool)
    for u in utts:
        covered[u.audio_start_sample : audio_end(u)] = True
    assert sum(covered[i : i + FS].all() for i in voiced) >= 0.95 * len(voiced)
    assert covered.sum() >= 0.8 * len(jfk)


def test_jfk_chunked_equals_whole(jfk: np.ndarray) -> None:
    whole = run(jfk)
    chunked = run(jfk, chunk=333)
    as_bytes = run(jfk, chunk=480, as_bytes=True)
    assert [key(u) for u in chunked] == [key(u) for u in whole]
    assert [key(u) for u in as_bytes] == [key(u) for u in whole]
    joined = np.concatenate([u.samples for u in whole])
    assert np.array_equal(np.concatenate([u.samples for u in chunked]), joined)


# --------------------------------------------------------------------------- digital silence


DATA = Path(__file__).resolve().parents[2] / "data"


def test_digital_silence_ends_an_utterance_although_webrtc_calls_it_speech() -> None:
    """Real files joined by 1 s of exact zeros: after the IVR prompt and the TTS sentence,
    WebRTC VAD (mode 1) reports the whole second gap as speech; the digital-silence rule
    (from the 8th all-zero frame on, unvoiced) ends the utterance there, so every file is its
    own utterance."""
    from whisper_streaming.client.audio_files import load_pcm16

    parts = [load_pcm16(DATA / "tel" / "asterisk_core_en_tt-allbusy.wav", sample_rate_hz=RATE),
             load_pcm16(DATA / "sentiment" / "tts_positive_en.wav", sample_rate_hz=RATE), load_pcm16(JFK_WAV, sample_rate_hz=RATE)]
    gap = silence(1.0)
    sig = np.concatenate([parts[0], gap, parts[1], gap, parts[2], gap])
    second_gap = slice(len(parts[0]) + len(gap) + len(parts[1]), len(parts[0]) + 2 * len(gap) + len(parts[1]))
    assert not sig[second_gap].any()

    raw = run(sig, VadOptions(digital_silence_frames=10**6, agc_target_dbfs=None))  # no digital-silence rule
    gated = run(sig, VadOptions())
    check_invariants(gated, sig, VadOptions())
    # without the floor the second gap is "speech": the TTS sentence and JFK become one utterance
    assert any(u.audio_start_sample < second_gap.start and audio_end(u) > second_gap.stop for u in raw)
    # with it, no utterance spans a gap, and each file's speech is inside one utterance
    for u in gated:
        assert not (u.speech_start_sample < second_gap.start and u.speech_end_sample > second_gap.stop)
    starts = [0, len(parts[0]) + len(gap), second_gap.stop]
    for start, part in zip(starts, parts):
        assert any(u.speech_start_sample < start + len(part) and u.speech_end_sample > start for u in gated)


def test_frames_below_the_floor_are_unvoiced_whatever_the_classifier_says() -> None:
    always = lambda frame, rate: True  # noqa: E731
    quiet = (np.random.default_rng(1).integers(-15, 16, 20 * FS)).astype(np.int16)  # about -67 dBFS
    sig = np.concatenate([from_pattern(_LEAD + "#" * 20), quiet, from_pattern("#" * 20 + "." * 20)])
    gated = run(sig, VadOptions(silence_floor_dbfs=-60.0), is_speech=always)
    assert [u.end_reason for u in gated] == [EndReason.SILENCE, EndReason.SILENCE]
    assert len(run(sig, VadOptions(silence_floor_dbfs=None), is_speech=always)) == 1  # never ends: one FLUSH
    with pytest.raises(UsageError, match="silence_floor_dbfs"):
        VadOptions(silence_floor_dbfs=3.0)


# --------------------------------------------------------------------------- tentative utterance


def _feed_frames(seg: VadSegmenter, sig: np.ndarray) -> list[tuple[int, Utterance | None, list[Utterance]]]:
    """Feed one frame at a time; after each, (samples fed, tentative, emitted)."""
    trace = []
    for i in range(0, len(sig), FS):
        emitted = seg.feed(sig[i : i + FS])
        trace.append((i + FS, seg.tentative, emitted))
    return trace


def test_tentative_is_offered_once_the_trailing_audio_is_in_and_equals_the_emitted_utterance() -> None:
    opts = VadOptions()
    sig = from_pattern(_LEAD + "#" * 40 + "." * 30)
    seg = VadSegmenter(opts, is_speech=energy_vad)
    trace = _feed_frames(seg, sig)
    speech_end = (len(_LEAD) + 40) * FS
    offered = [(fed, t) for fed, t, _ in trace if t is not None]
    (emitted,) = [u for _, _, e in trace for u in e]
    # first offered when trailing_ms (6 frames) of silence followed the speech, until the endpoint
    assert offered[0][0] == speech_end + opts.trailing_samples
    assert offered[-1][0] == speech_end + (opts.silence_frames - 1) * FS
    assert len({id(t) for _, t in offered}) == 1  # cached, not rebuilt per frame
    t = offered[0][1]
    assert (t.index, t.audio_start_sample, t.speech_start_sample, t.speech_end_sample) == (
        emitted.index, emitted.audio_start_sample, emitted.speech_start_sample, emitted.speech_end_sample)
    np.testing.assert_array_equal(t.samples, emitted.samples)
    assert t.endpoint_sample == emitted.endpoint_sample == speech_end + opts.silence_frames * FS
    assert seg.tentative is None  # after the endpoint


def test_tentative_is_withdrawn_when_speech_resumes_before_the_endpoint() -> None:
    sig = from_pattern(_LEAD + "#" * 20 + "." * 10 + "#" * 20 + "." * 20)
    seg = VadSegmenter(VadOptions(), is_speech=energy_vad)
    trace = _feed_frames(seg, sig)
    first_pause_end = (len(_LEAD) + 30) * FS
    offered_in_pause = [t for fed, t, _ in trace if fed <= first_pause_end and t is not None]
    assert offered_in_pause  # the 300 ms pause is longer than trailing_ms
    assert trace[len(_LEAD) + 31][1] is None  # voiced again: withdrawn
    (emitted,) = [u for _, _, e in trace for u in e]
    assert emitted.speech_end_sample == (len(_LEAD) + 50) * FS  # one utterance over the pause
    assert len(emitted.samples) > len(offered_in_pause[0].samples)


def test_tentative_matches_flush_and_is_none_when_the_cap_comes_first() -> None:
    sig = from_pattern(_LEAD + "#" * 40 + "." * 8)
    seg = VadSegmenter(VadOptions(), is_speech=energy_vad)
    seg.feed(sig)
    t = seg.tentative
    assert t is not None
    (flushed,) = seg.flush()
    assert flushed.end_reason is EndReason.FLUSH
    np.testing.assert_array_equal(t.samples, flushed.samples)
    assert t.audio_start_sample == flushed.audio_start_sample and t.index == flushed.index
    # 9.9 s of speech: the cap (10 s) is reached before the endpoint, so nothing is offered
    seg = VadSegmenter(VadOptions(), is_speech=energy_vad)
    seg.feed(from_pattern(_LEAD + "#" * 320 + "." * 8))
    assert seg.tentative is None


def _first_offers(trace: list[tuple[int, Utterance | None, list[Utterance]]]) -> list[int]:
    """Samples fed when each new tentative utterance was first offered."""
    out, last = [], None
    for fed, t, _ in trace:
        k = None if t is None else key(t)
        if k is not None and k != last:
            out.append(fed)
        last = k
    return out


def test_speculation_backoff_delays_each_offer_after_a_withdrawn_one() -> None:
    """Three pauses of 450 ms inside one utterance, then its end: without back-off each pause is
    offered after 6 silent frames; with 120 ms (4 frames) per withdrawn offer, the second after
    10 and the third after 14; then the utterance (emitted unchanged) after 18, past its
    16-frame endpoint, so it gets no offer."""
    pattern = _LEAD + ("#" * 20 + "." * 15) * 3 + "#" * 20 + "." * 20
    sig = from_pattern(pattern)
    pause_starts = [(len(_LEAD) + 20 + 35 * k) * FS for k in range(4)]
    plain = _feed_frames(VadSegmenter(VadOptions(), is_speech=energy_vad), sig)
    seg = VadSegmenter(VadOptions(speculation_backoff_ms=120), is_speech=energy_vad)
    backoff = _feed_frames(seg, sig)
    assert [fed - start for fed, start in zip(_first_offers(plain), pause_starts)] == [6 * FS] * 4
    assert [fed - start for fed, start in zip(_first_offers(backoff), pause_starts)] == [6 * FS, 10 * FS, 14 * FS]
    assert seg.offers_withdrawn == 3
    (a,), (b,) = ([u for _, _, e in trace for u in e] for trace in (plain, backoff))
    assert key(a) == key(b)  # the back-off changes offers, never the utterances


def test_speculation_backoff_starts_over_with_each_utterance() -> None:
    one = _LEAD + "#" * 20 + "." * 11 + "#" * 20 + "." * 20  # one withdrawn offer, then the endpoint
    seg = VadSegmenter(VadOptions(speculation_backoff_ms=120), is_speech=energy_vad)
    trace = _feed_frames(seg, from_pattern(one + "#" * 20 + "." * 20))
    second_pause = (len(one) + 20) * FS
    assert _first_offers(trace)[-1] == second_pause + 6 * FS  # the next utterance's offer is not delayed
    assert seg.offers_withdrawn == 1


def test_speculation_backoff_must_be_a_non_negative_int() -> None:
    with pytest.raises(UsageError, match="speculation_backoff_ms"):
        VadOptions(speculation_backoff_ms=-1)


@settings(max_examples=60, deadline=None)
@given(pattern=st.text(alphabet="#.", min_size=1, max_size=200), chunk=st.integers(1, 3000), backoff_ms=st.sampled_from([0, 60, 120]))
def test_tentative_never_differs_from_what_is_emitted(pattern: str, chunk: int, backoff_ms: int) -> None:
    """Any pattern, any chunking, any back-off: a tentative utterance seen after one feed() and
    not withdrawn by the next is exactly the utterance that feed() emits (or a later one has a
    new index); and the back-off never changes what is emitted."""
    sig = from_pattern(_LEAD + pattern + "." * 20)
    plain = VadSegmenter(VadOptions(), is_speech=energy_vad)
    expected = [key(u) for u in plain.feed(sig) + plain.flush()]
    seg = VadSegmenter(VadOptions(speculation_backoff_ms=backoff_ms), is_speech=energy_vad)
    assert _polled_keys(seg, sig, chunk) == expected  # polling and back-off never change the utterances


# --------------------------------------------------------------------------- level invariance


def _relevel(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled so its whole RMS is ``dbfs`` (full scale = RMS 32768), rounded to int16."""
    f = x.astype(np.float64)
    gain = 32768.0 * 10.0 ** (dbfs / 20.0) / np.sqrt(np.mean(f**2))
    return np.clip(np.rint(f * gain), -32768, 32767).astype(np.int16)


def _shipped_speech() -> np.ndarray:
    from whisper_streaming.client.audio_files import load_pcm16

    names = ["jfk.wav", "librispeech_dev-clean_1272-128104-0000.wav", "librispeech_test-clean_1995-1837-0001.wav",
             "librispeech_test-clean_61-70968-0000.wav", "tel/asterisk_core_en_tt-allbusy.wav"]
    parts: list[np.ndarray] = []
    for name in names:
        parts += [load_pcm16(DATA / name, sample_rate_hz=RATE), silence(1.0)]
    return np.concatenate(parts)


def _speech_frames(sig: np.ndarray, options: VadOptions) -> np.ndarray:
    mask = np.zeros(len(sig) // FS + 1, dtype=bool)
    for u in run(sig, options):
        mask[u.speech_start_sample // FS : u.speech_end_sample // FS] = True
    return mask


@pytest.mark.parametrize("dbfs", [-10.0, -45.0, -65.0, -70.0])
def test_same_speech_at_any_level_gives_the_same_utterances(dbfs: float) -> None:
    """Five shipped recordings joined by digital silence, re-levelled from -10 to -70 dBFS RMS:
    the frames inside utterances agree with the original level's (Jaccard >= 0.9).  Measured:
    0.93-0.98 with the level normalisation; without it 0.74 at -70 dBFS, and with the old
    -60 dBFS RMS floor 0.18 at -65 and 0.03 at -70 (the quiet speech was silence)."""
    sig = _shipped_speech()
    opts = VadOptions()
    reference = _speech_frames(sig, opts)
    quiet = _speech_frames(_relevel(sig, dbfs), opts)
    jaccard = (reference & quiet).sum() / (reference | quiet).sum()
    assert jaccard >= 0.9, f"{dbfs} dBFS: {jaccard:.3f}"


def test_without_normalisation_quiet_speech_loses_frames() -> None:
    """The same check fails without the normalisation: the test above can fail."""
    sig = _shipped_speech()
    opts = VadOptions(agc_target_dbfs=None)
    reference = _speech_frames(sig, opts)
    quiet = _speech_frames(_relevel(sig, -70.0), opts)
    assert (reference & quiet).sum() / (reference | quiet).sum() < 0.9


@pytest.mark.parametrize(
    "noise",
    [
        np.zeros(20 * RATE, dtype=np.int16),  # exact digital silence
        np.full(20 * RATE, 8, dtype=np.int16),  # A-law's idle code decodes to a constant +8
        np.random.default_rng(3).integers(-2, 3, 20 * RATE).astype(np.int16),  # +-2 LSB dither
    ],
    ids=["zeros", "constant", "dither"],
)
def test_digital_and_near_digital_silence_give_no_utterance(noise: np.ndarray) -> None:
    assert run(noise, VadOptions()) == []


def test_near_silence_after_quiet_speech_ends_the_utterance() -> None:
    """-65 dBFS speech, then 5 s of +-2 LSB dither (a muted line): the gain that brought the
    speech up is not applied to the dither for long, so the utterance ends in the dither
    instead of running on to the 10 s cap."""
    from whisper_streaming.client.audio_files import load_pcm16

    speech = _relevel(load_pcm16(DATA / "librispeech_test-clean_61-70968-0000.wav", sample_rate_hz=RATE), -65.0)
    dither = np.random.default_rng(4).integers(-2, 3, 5 * RATE).astype(np.int16)
    utts = run(np.concatenate([speech, dither, speech, dither]), VadOptions())
    assert utts and all(u.end_reason is EndReason.SILENCE for u in utts)
    second = (len(speech) + len(dither)) / RATE
    assert len(utts) == 2 and utts[0].end_s < len(speech) / RATE + 0.5 and abs(utts[1].start_s - second) < 0.1
    assert utts[1].end_s < second + len(speech) / RATE + 0.5


def test_near_silence_after_a_click_does_not_start_speech() -> None:
    """One 30 ms click in digital silence, with a detector that calls everything speech (its
    hangover and its digital-silence quirk at their worst): near-silence may only continue an
    utterance in progress, so the click alone (1 frame < min_speech_ms) gives none."""
    always = lambda frame, rate: True  # noqa: E731
    click = np.random.default_rng(5).integers(-3000, 3000, FS).astype(np.int16)
    sig = np.concatenate([silence(0.6), click, silence(1.0)])
    assert run(sig, VadOptions(), is_speech=always) == []


# ------------------------------------------------------------------ steady noise (issue 19)


def _white(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(round(seconds * RATE))
    return np.clip(x * 32768.0 * 10.0 ** (dbfs / 20.0), -32768, 32767).astype(np.int16)


def _speech() -> np.ndarray:
    from speech import JFK, load_speech

    return np.frombuffer(load_speech(JFK)[0], dtype="<i2").astype(np.int16)


def test_dynamic_range_of_noise_tone_and_speech() -> None:
    from whisper_streaming.pipeline.vad import dynamic_range_db

    assert dynamic_range_db(_white(5.0, -3.0), 480) < 1.0
    assert dynamic_range_db(_white(5.0, -40.0), 480) < 1.0
    assert dynamic_range_db(tone(5.0), 480) < 1.0
    assert dynamic_range_db(_speech(), 480) > 20.0
    assert dynamic_range_db(np.zeros(479, dtype=np.int16), 480) == float("inf")  # too short to judge


@pytest.mark.parametrize("dbfs", [-3.0, -20.0, -45.0])
def test_steady_white_noise_gives_no_utterance(dbfs: float) -> None:
    sig = np.concatenate([silence(0.5), _white(25.0, dbfs), silence(1.0)])
    seg = VadSegmenter(VadOptions())
    assert seg.feed(sig) + seg.flush() == []
    assert seg.steady_discarded >= 2  # 25 s is cut at the 10 s cap: each piece is judged
    off = run(sig, VadOptions(min_dynamic_range_db=None))  # the detector alone calls it speech
    assert len(off) >= 2


def test_steady_tone_gives_no_utterance_but_speech_in_loud_noise_does() -> None:
    seg = VadSegmenter(VadOptions())
    utts = seg.feed(np.concatenate([tone(25.0), silence(1.0)])) + seg.flush()
    assert utts == []
    assert seg.steady_discarded == 3  # 10 + 10 + 5 s: each piece is judged on its own
    speech = _speech().astype(np.float64)
    noise = _white(len(speech) / RATE, -20.0, seed=3).astype(np.float64)
    active = np.sqrt(np.mean(speech[np.abs(speech) > 300] ** 2))
    noisy = speech + noise / np.sqrt(np.mean(noise**2)) * active  # 0 dB SNR against active speech
    sig = np.concatenate([silence(0.5), np.clip(noisy, -32768, 32767).astype(np.int16), silence(1.0)])
    seg = VadSegmenter(VadOptions())
    utts = seg.feed(sig) + seg.flush()
    assert sum(u.duration_s for u in utts) > 0.8 * len(speech) / RATE  # the speech is kept
    assert seg.steady_discarded == 0


def test_min_dynamic_range_validation() -> None:
    with pytest.raises(UsageError, match="min_dynamic_range_db"):
        VadOptions(min_dynamic_range_db=-1.0)
    with pytest.raises(UsageError, match="min_dynamic_range_db"):
        VadOptions(min_dynamic_range_db=float("nan"))


# --------------------------------------------------------------------------- semantic endpointing (end_early)


def test_end_early_ends_the_utterance_after_the_shorter_pause_with_the_same_audio() -> None:
    opts = VadOptions(sentence_end_silence_frames=8)
    sig = from_pattern(_LEAD + "#" * 40 + "." * 30)
    speech_end = (len(_LEAD) + 40) * FS
    plain = VadSegmenter(VadOptions(), is_speech=energy_vad)
    (normal,) = [u for _, _, e in _feed_frames(plain, sig) for u in e]
    seg = VadSegmenter(opts, is_speech=energy_vad)
    emitted: list[Utterance] = []
    told = False
    for i in range(0, len(sig), FS):
        emitted += seg.feed(sig[i : i + FS])
        if not told and seg.tentative is not None:  # the speculation's text ends a sentence
            assert seg.end_early(seg.tentative) == []  # 6 frames of silence so far: not yet
            told = True
        if emitted:
            ended_at = i + FS
            break
    (early,) = emitted
    assert ended_at == speech_end + 8 * FS  # 240 ms instead of 480
    np.testing.assert_array_equal(early.samples, normal.samples)  # the speculation's audio, exactly
    assert seg.ended_early == 1 and seg.tentative is None


def test_end_early_emits_at_once_when_the_pause_is_long_enough_already() -> None:
    seg = VadSegmenter(VadOptions(sentence_end_silence_frames=8), is_speech=energy_vad)
    seg.feed(from_pattern(_LEAD + "#" * 40 + "." * 10))  # 300 ms of silence: past 240 ms, before the endpoint
    tentative = seg.tentative
    assert tentative is not None
    (u,) = seg.end_early(tentative)
    assert u.index == tentative.index and len(u.samples) == len(tentative.samples)
    assert seg.tentative is None and not seg.in_speech
    assert seg.end_early(tentative) == []  # once


def test_end_early_is_cancelled_by_speech_and_ignored_when_off_or_stale() -> None:
    seg = VadSegmenter(VadOptions(sentence_end_silence_frames=8), is_speech=energy_vad)
    seg.feed(from_pattern(_LEAD + "#" * 20 + "." * 6))
    tentative = seg.tentative
    assert tentative is not None and seg.end_early(tentative) == []
    out = seg.feed(from_pattern("#" * 20 + "." * 10, seed=1))  # the speaker went on: one utterance, the normal pause
    assert out == []  # 10 frames of silence after the new speech: 240 ms passed, but the early end was cancelled
    assert seg.end_early(tentative) == []  # stale: the utterance has grown
    (u,) = seg.feed(from_pattern("." * 6, seed=2))
    assert u.speech_end_sample == (len(_LEAD) + 46) * FS
    off = VadSegmenter(VadOptions(), is_speech=energy_vad)
    off.feed(from_pattern(_LEAD + "#" * 40 + "." * 10))
    assert off.tentative is not None and off.end_early(off.tentative) == []  # option off: nothing
