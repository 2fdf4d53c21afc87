"""Labelled generated sounds: eight kinds, each clip drawn with its own pitch, rate, phase, level and
background noise from a seeded generator, so that a kind is a family of sounds rather than one sound.

    0 low harmonic tone     f0 100-140 Hz, five harmonics at 0.6^h
    1 mid harmonic tone     f0 380-460 Hz, the same harmonics
    2 high pure tone        1.8-2.4 kHz
    3 white noise
    4 low-passed noise      one-pole filter, pole 0.97-0.99
    5 rising chirp          from 200-400 Hz to 2.5-3.5 kHz over the clip
    6 tremolo tone          600-800 Hz, amplitude modulated at 4-8 Hz
    7 click train           8-14 clicks per second, random polarity

Every clip is scaled to a peak of 0.2-0.8, plus white noise of standard deviation 0.005-0.03.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

KINDS = ("low harmonic", "mid harmonic", "high tone", "white noise", "low-passed noise", "chirp", "tremolo",
         "clicks")


def _harmonic(rng: np.random.Generator, t: np.ndarray, f0: float) -> np.ndarray:
    return sum(0.6 ** (h - 1) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 6))


def sound(kind: int, rng: np.random.Generator, samples: int, rate: int) -> np.ndarray:
    """One clip of `kind` (an index into KINDS): float32 mono samples in [-1, 1]."""
    t = np.arange(samples) / rate
    if kind == 0:
        x = _harmonic(rng, t, rng.uniform(100, 140))
    elif kind == 1:
        x = _harmonic(rng, t, rng.uniform(380, 460))
    elif kind == 2:
        x = np.sin(2 * np.pi * rng.uniform(1800, 2400) * t + rng.uniform(0, 2 * np.pi))
    elif kind == 3:
        x = rng.standard_normal(samples)
    elif kind == 4:
        pole = rng.uniform(0.97, 0.99)
        x = lfilter([1 - pole], [1, -pole], rng.standard_normal(samples))
    elif kind == 5:
        f0, f1 = rng.uniform(200, 400), rng.uniform(2500, 3500)
        x = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / t[-1] * t * t))
    elif kind == 6:
        x = np.sin(2 * np.pi * rng.uniform(600, 800) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
    elif kind == 7:
        x = np.zeros(samples)
        period = int(rate / rng.uniform(8, 14))
        click = np.hanning(80)[40:]
        for start in range(int(rng.integers(0, period)), samples - len(click), period):
            x[start:start + len(click)] += click * rng.choice((-1.0, 1.0))
    else:
        raise ValueError(f"no sound kind {kind}")
    x = x / (np.max(np.abs(x)) + 1e-9) * rng.uniform(0.2, 0.8)
    return (x + rng.uniform(0.005, 0.03) * rng.standard_normal(samples)).clip(-1.0, 1.0).astype(np.float32)
