"""The extra conditions of bench/variants.py do what their docstrings say."""

from __future__ import annotations

import numpy as np
import pytest

from bench.variants import Source, active_speech_rms, make_variant, music_bed, packet_loss, room_impulse_response


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
    for variant in ("reverb-0.5", "reverb-far", "loss5", "loss10", "music15"):
        a = make_variant("en", variant, src, [src], 16000, seed=0)
        b = make_variant("en", variant, src, [src], 16000, seed=0)
        assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, src.samples.astype(np.int16))
