"""The extra conditions of bench/variants.py do what their docstrings say."""

from __future__ import annotations

import numpy as np
import pytest

from bench.variants import (EXTRA_VARIANTS, FULL_SCALE, Source, active_speech_rms, codec_roundtrip, mains_hum, make_variant, music_bed,
                            packet_loss, rms_dbfs, room_impulse_response)


def test_room_impulse_response_has_the_asked_decay_and_direct_to_reverberant_ratio() -> None:
    h = room_impulse_response(16000, 0.9, -8.0, np.random.default_rng(0))
    assert h[0] == 1.0 and not np.any(h[1:48])  # the direct path, then nothing for 3 ms
    tail = h[1:]
    assert 10 * np.log10(1.0 / np.sum(tail * tail)) == pytest.approx(-8.0, abs=1e-6)
    # energy over the first and the second 0.45 s of the tail: 30 dB apart at RT60 0.9 s
    first, second = np.sum(tail[:7200] ** 2), np.sum(tail[7200:14400] ** 2)
    assert 10 * np.log10(first / second) == pytest.approx(30.0, abs=3.0)


def test_packet_loss_zeroes_whole_packets_at_about_the_asked_rate() -> None:
    x = np.ones(16000 * 60)
    y, info = packet_loss(x, 16000, 0.05, 2, np.random.default_rng(1))
    packets = y.reshape(-1, 320)
    lost = np.all(packets == 0, axis=1)
    assert np.all(np.all(packets == 1, axis=1) | lost)  # a packet is lost whole or not at all
    assert info["packets_lost"] == int(lost.sum()) and info["packets"] == 3000
    assert 0.035 < lost.mean() < 0.065


def test_music_bed_sits_the_asked_decibels_under_the_speech() -> None:
    rng = np.random.default_rng(2)
    speech = np.concatenate([rng.normal(0, 3000, 16000), np.zeros(8000), rng.normal(0, 3000, 16000)])
    y, _ = music_bed(speech, 16000, 15.0, seed=3)
    music = y - speech
    assert 20 * np.log10(active_speech_rms(speech, 16000) / np.sqrt(np.mean(music**2))) == pytest.approx(15.0, abs=0.01)
    y8, _ = music_bed(speech[::2], 8000, 15.0, seed=3)  # at 8 kHz through soxr
    assert len(y8) == len(speech[::2])


def test_extra_variants_are_reproducible() -> None:
    rng = np.random.default_rng(4)
    src = Source("a", rng.normal(0, 2000, 32000), reference=None)  # type: ignore[arg-type]
    for variant in EXTRA_VARIANTS:
        a = make_variant("en", variant, src, [src], 16000, seed=0)
        b = make_variant("en", variant, src, [src], 16000, seed=0)
        assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, src.samples.astype(np.int16))


def test_mains_hum_sits_the_asked_decibels_under_the_speech_at_50_hz_and_odd_harmonics() -> None:
    speech = np.random.default_rng(5).normal(0, 3000, 16000)
    y, _ = mains_hum(speech, 16000, 20.0, np.random.default_rng(6))
    hum = y - speech
    assert 20 * np.log10(active_speech_rms(speech, 16000) / np.sqrt(np.mean(hum**2))) == pytest.approx(20.0, abs=0.01)
    spectrum = np.abs(np.fft.rfft(hum))  # 1 s: bin k is k Hz
    assert set(np.argsort(spectrum)[-3:]) == {50, 150, 250}
    assert spectrum[100] < 1e-6 * spectrum[50]  # no even harmonics


def test_clip12_drives_the_peak_past_full_scale_and_counts_the_clipped_samples() -> None:
    x = np.sin(np.linspace(0, 200 * np.pi, 16000)) * 1000.0
    v = make_variant("en", "clip12", Source("a", x, reference=None), [], 16000)  # type: ignore[arg-type]
    assert v.clipped > 0 and np.max(np.abs(v.samples.astype(np.int32))) >= FULL_SCALE - 1
    assert v.info["gain_db"] == pytest.approx(20 * np.log10(FULL_SCALE / 1000.0) + 12.0, abs=0.01)


@pytest.mark.parametrize("codec, kbps", [("gsm", 13.0), ("g721", 32.0)])
def test_telephone_codecs_round_trip_at_8_khz_keeping_the_length(codec: str, kbps: float) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 2000, 16000 * 2)
    y, measured = codec_roundtrip(x, 16000, codec)
    assert len(y) == len(x) and measured == pytest.approx(kbps, rel=0.1)
    spectrum = np.abs(np.fft.rfft(y))
    assert spectrum[len(spectrum) * 5 // 8 :].mean() < 0.05 * spectrum[: len(spectrum) // 4].mean()  # nothing above 4 kHz


def test_noisy_gsm_45_is_quiet_noisy_and_through_the_codec() -> None:
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0, 3000, 8000), np.zeros(4000), rng.normal(0, 3000, 8000)])
    v = make_variant("tel", "noisy-gsm-45", Source("a", x, reference=None), [], 8000)  # type: ignore[arg-type]
    assert rms_dbfs(v.samples) == pytest.approx(-45.0, abs=0.1)
    assert v.info["snr_db"] == 15.0 and v.info["kbps"] == pytest.approx(13.0, abs=0.5)
    pause = v.samples[8400:11600].astype(np.float64)  # the silence now carries noise at about -45 - 15 dB
    assert np.sqrt(np.mean(pause**2)) > 1.0


def test_alt_20_60_alternates_the_level_by_the_file_order_of_the_set() -> None:
    rng = np.random.default_rng(9)
    pool = [Source(stem, rng.normal(0, 2000, 16000), reference=None) for stem in ("a", "b", "c")]  # type: ignore[arg-type]
    levels = [rms_dbfs(make_variant("en", "alt-20-60", s, pool, 16000).samples) for s in pool]
    assert levels == pytest.approx([-20.0, -60.0, -20.0], abs=0.05)
