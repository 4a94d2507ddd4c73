"""acoustic_features and segment_features on synthetic signals with known answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from whisper_streaming.analyzers.acoustic import N_MFCC, RMS_FLOOR_DBFS, acoustic_features, segment_features
from whisper_streaming.core.batch import AcousticFeatures
from whisper_streaming.errors import UsageError

SR = 16000


def _sine(freq_hz: float, peak_dbfs: float = -20.0, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _noise(seconds: float = 1.0, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, rms, int(seconds * SR)).astype(np.float32)


def test_a_200_hz_tone_has_f0_200_hz_and_is_voiced() -> None:
    f = acoustic_features(_sine(200.0), SR)
    assert f.f0_median_hz == pytest.approx(200.0, rel=0.02)
    assert f.f0_min_hz == pytest.approx(200.0, rel=0.02) and f.f0_max_hz == pytest.approx(200.0, rel=0.02)
    assert f.voiced_fraction > 0.95


@pytest.mark.parametrize("freq_hz", [80.0, 120.0, 310.0])
def test_tones_across_the_speech_range(freq_hz: float) -> None:
    assert acoustic_features(_sine(freq_hz), SR).f0_median_hz == pytest.approx(freq_hz, rel=0.02)


def test_f0_range_spans_a_glide() -> None:
    """A tone gliding 100 -> 300 Hz: median near the middle, 5th/95th percentiles near the ends."""
    t = np.arange(2 * SR) / SR
    freq = 100.0 + 100.0 * t  # Hz, linear over 2 s
    y = (0.1 * np.sin(2 * np.pi * np.cumsum(freq) / SR)).astype(np.float32)
    f = acoustic_features(y, SR)
    assert f.f0_median_hz == pytest.approx(200.0, rel=0.05)
    assert f.f0_min_hz == pytest.approx(110.0, rel=0.05) and f.f0_max_hz == pytest.approx(290.0, rel=0.05)


def test_rms_of_a_minus_20_dbfs_sine_is_minus_23() -> None:
    """The sine's peak is -20 dBFS; its RMS is peak / sqrt(2): -23.01 dBFS (full scale = amplitude 1.0)."""
    assert acoustic_features(_sine(440.0, peak_dbfs=-20.0), SR).rms_dbfs == pytest.approx(-23.01, abs=0.1)
    assert acoustic_features(_sine(440.0, peak_dbfs=0.0), SR).rms_dbfs == pytest.approx(-3.01, abs=0.1)


def test_white_noise_is_bright_and_mostly_unvoiced() -> None:
    f = acoustic_features(_noise(2.0), SR)
    assert f.spectral_centroid_hz == pytest.approx(SR / 4, rel=0.05)  # flat spectrum 0..8 kHz
    assert f.spectral_rolloff_hz == pytest.approx(0.85 * SR / 2, rel=0.05)
    assert f.voiced_fraction < 0.05
    assert f.rms_dbfs == pytest.approx(-20.0, abs=0.2)


def test_a_tone_in_noise_is_still_found() -> None:
    f = acoustic_features(_sine(150.0, peak_dbfs=-20.0) + _noise(1.0, rms=0.01), SR)  # 20 dB SNR
    assert f.f0_median_hz == pytest.approx(150.0, rel=0.02) and f.voiced_fraction > 0.8


def test_silence_does_not_crash_and_has_no_pitch() -> None:
    f = acoustic_features(np.zeros(SR, dtype=np.float32), SR)
    assert f.rms_dbfs == RMS_FLOOR_DBFS
    assert (f.f0_median_hz, f.f0_min_hz, f.f0_max_hz, f.voiced_fraction) == (None, None, None, 0.0)
    assert len(f.mfcc_mean) == N_MFCC and all(np.isfinite(f.mfcc_mean))


def test_a_quiet_hum_below_the_floor_is_unvoiced() -> None:
    assert acoustic_features(_sine(100.0, peak_dbfs=-70.0), SR).f0_median_hz is None


def test_a_1000_hz_tone_has_its_centroid_at_1000_hz() -> None:
    f = acoustic_features(_sine(1000.0), SR)
    assert f.spectral_centroid_hz == pytest.approx(1000.0, rel=0.03)
    assert f.spectral_rolloff_hz == pytest.approx(1000.0, rel=0.05)


def test_mfcc_mean_is_librosas_13_mfccs_with_defaults() -> None:
    y = _sine(300.0) + _noise(1.0, rms=0.02)
    f = acoustic_features(y, SR)
    assert len(f.mfcc_mean) == N_MFCC == 13
    expected = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13).mean(axis=1)
    np.testing.assert_allclose(f.mfcc_mean, expected, rtol=1e-4, atol=1e-3)


def test_very_short_inputs_give_what_is_computable() -> None:
    short = acoustic_features(_sine(200.0, seconds=0.01), SR)  # 160 samples, under one pitch frame
    assert short.f0_median_hz is None and short.voiced_fraction == 0.0
    assert short.rms_dbfs == pytest.approx(-23.0, abs=0.3) and short.spectral_centroid_hz > 0
    one = acoustic_features(np.array([0.5], dtype=np.float32), SR)
    assert one.rms_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.01) and len(one.mfcc_mean) == N_MFCC
    empty = acoustic_features(np.zeros(0, dtype=np.float32), SR)
    assert empty.rms_dbfs == RMS_FLOOR_DBFS and empty.f0_median_hz is None and empty.mfcc_mean == (0.0,) * N_MFCC


def test_result_is_the_core_dataclass_with_plain_floats() -> None:
    f = acoustic_features(_sine(200.0), SR)
    assert isinstance(f, AcousticFeatures)
    values = dataclasses.asdict(f)
    assert all(type(v) is float for k, v in values.items() if k != "mfcc_mean")
    assert all(type(v) is float for v in f.mfcc_mean)


def test_input_is_not_modified_and_non_finite_samples_are_zeroed() -> None:
    y = _sine(200.0)
    y[100] = np.nan
    before = y.copy()
    f = acoustic_features(y, SR)
    np.testing.assert_array_equal(y, before)
    assert np.isfinite(f.rms_dbfs) and f.f0_median_hz == pytest.approx(200.0, rel=0.02)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        acoustic_features(np.zeros((2, 100), dtype=np.float32), SR)
    with pytest.raises(UsageError):
        acoustic_features(np.zeros(100, dtype=np.float32), 0)
    with pytest.raises(UsageError):
        segment_features(np.zeros(100, dtype=np.float32), SR, [(0.0, float("nan"))])


def test_segment_features_match_single_calls() -> None:
    y = np.concatenate([_sine(150.0, seconds=1.5), np.zeros(SR // 2, np.float32), _noise(1.0), _sine(250.0, peak_dbfs=-30.0)])
    spans = [(0.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 4.0), (0.75, 3.5)]
    batch = segment_features(y, SR, spans)
    assert batch == [acoustic_features(y[int(a * SR):int(b * SR)], SR) for a, b in spans]
    assert batch[0].f0_median_hz == pytest.approx(150.0, rel=0.02) and batch[3].f0_median_hz == pytest.approx(250.0, rel=0.02)
    assert batch[1].f0_median_hz is None and batch[2].voiced_fraction < 0.05
    assert batch[3].rms_dbfs == pytest.approx(-33.01, abs=0.1)


def test_segment_spans_are_clipped_to_the_signal() -> None:
    y = _sine(200.0)
    clipped, reversed_, outside = segment_features(y, SR, [(-1.0, 5.0), (0.8, 0.2), (2.0, 3.0)])
    assert clipped == acoustic_features(y, SR)
    assert reversed_ == outside == acoustic_features(np.zeros(0, np.float32), SR)


def test_real_speech_has_a_plausible_pitch_and_voicing() -> None:
    """tests/data/jfk.wav (11 s, a man speaking loudly to a crowd): librosa.pyin gives a median of
    about 234 Hz there and 54 % voiced frames."""
    y, sr = soundfile.read(Path(__file__).parents[2] / "data" / "jfk.wav", dtype="float32")
    f = acoustic_features(y, sr)
    assert 200.0 < f.f0_median_hz < 270.0
    assert 0.35 < f.voiced_fraction < 0.75
    assert f.f0_min_hz < f.f0_median_hz < f.f0_max_hz <= 400.0


_FEATURES_ON_MANY_INPUTS = """
import numpy as np
from whisper_streaming.analyzers.acoustic import acoustic_features, segment_features
rng = np.random.default_rng(1)
speechlike = np.sin(2 * np.pi * 120 * np.arange(32000) / 16000) * (1 + 0.5 * rng.standard_normal(32000))
for y, sr in [(speechlike, 16000), (speechlike.astype(np.float32)[::2], 8000), (np.zeros(16000), 16000),
              (rng.normal(0, 0.1, 8000).astype(np.float64), 8000), (speechlike[:500], 16000), (np.zeros(0), 16000),
              ((speechlike * 8000).astype(np.int16), 16000)]:
    acoustic_features(y, sr)
segment_features(speechlike, 16000, [(0.0, 0.5), (0.3, 1.9), (1.5, 9.0)])
"""


def test_warm_compiled_covers_every_compiled_function(tmp_path: Path) -> None:
    """After :func:`warm_compiled` in a fresh numba cache, feature extraction on other rates,
    dtypes, strides and lengths writes nothing to the cache: no process ever compiles (and so
    never races another to write the cache, numba/numba#10128) once the install step has run."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run([sys.executable, "-c", "from whisper_streaming.analyzers.acoustic import warm_compiled; warm_compiled()"],
                   env=env, check=True, timeout=240)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "numba").rglob("*") if p.is_file()}
    assert any(p.suffix == ".nbi" for p in before)  # the cache went where NUMBA_CACHE_DIR says
    subprocess.run([sys.executable, "-c", _FEATURES_ON_MANY_INPUTS], env=env, check=True, timeout=240)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "numba").rglob("*") if p.is_file()}
    assert after == before
