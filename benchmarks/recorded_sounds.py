"""Labelled streams of real recorded sounds, for the clustering quality benchmark (quality.py).

Sources: sounds that Debian packages ship, installed by :func:`ensure_packages` (as root, with
apt-get) when missing:

- ``icons``: the spoken and tonal cues of ``sound-icons``, GNOME's event sounds (``gnome-audio``)
  and the game sounds of ``pingus-data``;
- ``oxygen``: KDE's Oxygen theme (``oxygen-sounds``);
- ``speech``: recorded voice prompts of one speaker (``asterisk-core-sounds-en-wav``), where what
  tells two sounds apart is the words, not the voice.

``sound-theme-freedesktop`` and ``alsa-utils`` are never read: they are kept aside for a held-out
check. From each set, 48 distinct sounds (identical recordings are counted once) are taken in a
fixed pseudo-random order, decoded with soundfile, mixed to mono, resampled to 16 kHz and cut to at
most 3 s.

Occurrences: each sound occurs 10 times, each a varied copy, as a sound recurs in the world:
gain +-6 dB, a tempo and pitch change of up to +-5% (resampling), a start shifted by up to 100 ms,
in 30% of copies another sound of the set mixed in 15-25 dB down, and white noise at 15-35 dB SNR.
The label is the source sound. The 480 records are shuffled with a fixed seed, so a sound's copies
spread over the stream.

Features, each a fixed-length vector per copy:

- ``logmel``: 64-band log-mel spectrogram (25 ms window, 10 ms hop), each band's mean and standard
  deviation over time (128 dimensions);
- ``mfcc``: 20 MFCCs (DCT-II of the log-mel) and their deltas, mean and standard deviation (80);
- ``resemblyzer``: the trained speaker encoder that the ``resemblyzer`` wheel ships (256, unit
  norm): a trained neural encoder, where a random-weight wav2vec2 would not be one.

A ``_std`` variant of a stream standardizes each dimension over the stream (zero mean, unit
variance), as a client that normalizes its features would publish them.

Arrays are cached under ``benchmarks/.cache/recorded/``. ``python benchmarks/recorded_sounds.py``
builds every stream and prints its size.
"""
from __future__ import annotations

import glob
import hashlib
import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 16_000
SOUNDS = 48
OCCURRENCES = 10
SEED = 23
CACHE = Path(__file__).resolve().parent / ".cache" / "recorded"
PACKAGES = {
    "icons": ("sound-icons", "gnome-audio", "pingus-data"),
    "oxygen": ("oxygen-sounds",),
    "speech": ("asterisk-core-sounds-en-wav",),
}
PATTERNS = {
    "icons": ("/usr/share/sounds/sound-icons/*.wav", "/usr/share/sounds/*.wav",
              "/usr/share/games/pingus/data/sounds/*.wav"),
    "oxygen": ("/usr/share/sounds/Oxygen-*.ogg",),
    "speech": ("/usr/share/asterisk/sounds/en_US_f_Allison/*.wav",),
}
HELD_OUT = ("sound-theme-freedesktop", "alsa-utils", "/usr/share/sounds/freedesktop", "/usr/share/sounds/alsa")
FEATURES = ("logmel", "mfcc", "resemblyzer")
SETS = tuple(PACKAGES)


def ensure_packages(sets: tuple[str, ...] = SETS) -> None:
    """Install the Debian packages of these sets when their sounds are missing (root only)."""
    missing = [pkg for s in sets if not _paths(s) for pkg in PACKAGES[s]]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"recorded sounds need the Debian packages {' '.join(missing)}: "
                         "install them as root (apt-get install ...)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _paths(set_name: str) -> list[str]:
    found = sorted({p for pattern in PATTERNS[set_name] for p in glob.glob(pattern)})
    return [p for p in found if not any(h in p for h in HELD_OUT)]


def _load(path: str) -> np.ndarray:
    import soundfile
    from scipy.signal import resample_poly

    audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    g = math.gcd(int(rate), RATE)
    audio = resample_poly(audio, RATE // g, int(rate) // g)
    return audio[: 3 * RATE]


@lru_cache(maxsize=None)
def sources(set_name: str) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The set's sounds: names and 16 kHz mono clips, distinct, in a fixed pseudo-random order."""
    chosen, clips, seen = [], [], set()
    for path in sorted(_paths(set_name), key=lambda p: hashlib.sha1(p.encode()).hexdigest()):
        clip = _load(path)
        digest = hashlib.sha1(np.round(clip, 4).tobytes()).hexdigest()
        if len(clip) < 0.2 * RATE or np.max(np.abs(clip)) == 0.0 or digest in seen:
            continue
        seen.add(digest)
        chosen.append(os.path.basename(path))
        clips.append(clip)
        if len(chosen) == SOUNDS:
            break
    return tuple(chosen), tuple(clips)


def occurrence(clip: np.ndarray, others: tuple[np.ndarray, ...], rng: np.random.Generator) -> np.ndarray:
    """One varied copy of a sound (module docstring)."""
    a = clip * 10 ** (rng.uniform(-6, 6) / 20)
    rate = rng.uniform(0.95, 1.05)  # tempo and pitch together, as a resampled recording
    a = np.interp(np.arange(0, len(a) - 1, rate), np.arange(len(a)), a)
    a = np.concatenate([np.zeros(int(rng.integers(0, RATE // 10))), a])
    if rng.random() < 0.3:
        other = others[int(rng.integers(len(others)))]
        n = min(len(a), len(other))
        a[:n] += other[:n] * 10 ** (rng.uniform(-25, -15) / 20)
    power = float(np.mean(a * a))
    snr_db = rng.uniform(15, 35)
    return a + rng.normal(size=len(a)) * math.sqrt(power / 10 ** (snr_db / 10))


def _mel_filters(n_fft: int = 400, bands: int = 64) -> np.ndarray:
    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges = np.floor((n_fft + 1) * hz(np.linspace(mel(20.0), mel(RATE / 2), bands + 2)) / RATE).astype(int)
    fb = np.zeros((bands, n_fft // 2 + 1))
    for i in range(bands):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i, lo:mid] = (np.arange(lo, mid) - lo) / max(1, mid - lo)
        fb[i, mid:hi] = (hi - np.arange(mid, hi)) / max(1, hi - mid)
    return fb


_FILTERS = _mel_filters()


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel energies: 25 ms Hann windows every 10 ms."""
    n, hop = 400, 160
    if len(audio) < n:
        audio = np.pad(audio, (0, n - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(power @ _FILTERS.T + 1e-10)


def logmel_stats(audio: np.ndarray) -> np.ndarray:
    lm = log_mel(audio)
    return np.concatenate([lm.mean(axis=0), lm.std(axis=0)])


def mfcc_stats(audio: np.ndarray) -> np.ndarray:
    from scipy.fft import dct

    c = dct(log_mel(audio), type=2, axis=1, norm="ortho")[:, :20]
    d = np.gradient(c, axis=0) if len(c) > 1 else np.zeros_like(c)
    return np.concatenate([c.mean(axis=0), c.std(axis=0), d.mean(axis=0), d.std(axis=0)])


@lru_cache(maxsize=1)
def _encoder():
    # resemblyzer's audio module imports webrtcvad, whose import needs pkg_resources (gone from
    # current setuptools); its voice-activity trimming is not used here, so a stand-in module
    # lets the encoder load. The weights are the wheel's own pretrained.pt.
    sys.modules.setdefault("webrtcvad", type(sys)("webrtcvad"))
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def resemblyzer_embedding(audio: np.ndarray) -> np.ndarray:
    import torch

    torch.set_num_threads(1)
    return _encoder().embed_utterance(audio.astype(np.float32))


EXTRACT = {"logmel": logmel_stats, "mfcc": mfcc_stats, "resemblyzer": resemblyzer_embedding}


def stream(set_name: str, feature: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(vectors (n, d) float32, labels (n,), description)`` of one set and feature type, cached."""
    base = feature.removesuffix("_std")
    path = CACHE / f"{set_name}-{base}-{SEED}.npz"
    if path.exists():
        cached = np.load(path)
        x, y = cached["x"], cached["y"]
    else:
        ensure_packages((set_name,))
        names, clips = sources(set_name)
        rng = np.random.default_rng([SEED, SETS.index(set_name)])
        copies, labels = [], []
        for k, clip in enumerate(clips):
            others = clips[:k] + clips[k + 1:]
            for _ in range(OCCURRENCES):
                copies.append(occurrence(clip, others, rng))
                labels.append(k)
        order = rng.permutation(len(labels))
        x = np.stack([EXTRACT[base](copies[i]) for i in order]).astype(np.float32)
        y = np.asarray(labels)[order]
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=x, y=y)
    if feature.endswith("_std"):
        x = ((x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)).astype(np.float32)
    desc = (f"{len(np.unique(y))} recorded sounds ({set_name}: {', '.join(PACKAGES[set_name])}) x {OCCURRENCES} "
            f"varied copies, {feature}{' standardized per dimension' if feature.endswith('_std') else ''}")
    return x, y, desc


STREAM_NAMES = tuple(f"recorded_{s}_{f}" for s in SETS for f in FEATURES) + tuple(
    f"recorded_{s}_logmel_std" for s in SETS)


def by_name(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    _, set_name, feature = name.split("_", 2)
    return stream(set_name, feature)


if __name__ == "__main__":
    for name in STREAM_NAMES:
        x, y, desc = by_name(name)
        print(f"{name}: {x.shape[0]} records, {x.shape[1]} dimensions, {len(np.unique(y))} sounds; {desc}")
