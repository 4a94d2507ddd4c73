"""Synthetic non-speech, 16 kHz float (for ``bench/noise_cost.py`` and the tests): touch tones,
pink noise and a synthetic hold-music loop."""

from __future__ import annotations

import numpy as np

__all__ = ["RATE", "DTMF_HZ", "dtmf", "pink_noise", "hold_music"]

RATE = 16000

DTMF_HZ = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
           "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
           "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
           "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633)}
"""Touch-tone digit -> (row, column) frequencies in Hz (ITU-T Q.23)."""


def dtmf(digits: str, on_s: float = 0.15, off_s: float = 0.1, amplitude: float = 0.2) -> np.ndarray:
    """``digits`` as touch tones: each the sum of its two sines of ``amplitude`` for ``on_s``,
    then ``off_s`` of digital silence.  Shape ``(len(digits) * (on_s + off_s) * RATE,)``, float64."""
    t = np.arange(int(on_s * RATE)) / RATE
    parts: list[np.ndarray] = []
    for d in digits:
        low, high = DTMF_HZ[d]
        parts += [amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)), np.zeros(int(off_s * RATE))]
    return np.concatenate(parts)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of 1/f noise (white Gaussian noise shaped by 1/sqrt(f) in the frequency
    domain), unit-free: scale it yourself."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    return np.fft.irfft(spectrum, n)


def hold_music(seconds: float = 6.0, seed: int = 3, dbfs: float = -22.0) -> np.ndarray:
    """A synthetic hold-music loop: plucked notes (five harmonics, an exponential decay) with a
    fifth above, two notes per second, drawn from a C-major set; RMS ``dbfs``.  Whisper base
    wrote ``🐬🐬🐬``, ``⚡️`` and ``NON`` for it.  Shape ``(int(seconds * 2) * RATE // 2,)``, float64."""
    rng = np.random.default_rng(seed)
    notes = [261.6, 329.6, 392.0, 523.3, 293.7, 349.2, 440.0, 587.3]
    t = np.arange(int(0.5 * RATE)) / RATE
    env = np.exp(-3 * t)
    parts = []
    for _ in range(int(seconds * 2)):
        f = notes[rng.integers(len(notes))]
        s = sum(0.6**k * np.sin(2 * np.pi * f * (k + 1) * t) for k in range(5))
        s += 0.5 * sum(0.6**k * np.sin(2 * np.pi * f * 1.5 * (k + 1) * t) for k in range(3))
        parts.append(s * env)
    x = np.concatenate(parts)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)
