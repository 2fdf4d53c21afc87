"""Real recorded sounds as labelled streams for the clustering quality benchmark (quality.py).

Why: the generated streams say how the memory does on geometry we chose; these say how it does on
what real feature extractors make of real recordings, where groups are neither isotropic nor equally
spread, and some sounds are near-copies of others. Four sets, from disjoint Debian packages, so that
a change tuned on one set can be checked on the others; ``sound-theme-freedesktop`` and
``alsa-utils`` are never read (not even listed): they are kept aside as a held-out check.

Sources (installed by :func:`ensure_packages`, as root, with ``apt-get install
--no-install-recommends``, when a package's files are missing; files are found with ``dpkg -L``):

- ``icons``: desktop event and accessibility cues: ``sound-icons`` (spoken and tonal cues),
  ``gnome-audio``, ``yaru-theme-sound``, ``deepin-sound-theme``, ``eiskaltdcpp-sounds``;
- ``mixed``: KDE's Oxygen theme (``oxygen-sounds``, Ogg Vorbis) and the Pingus game's sounds
  (``pingus-data``);
- ``games``: game sound effects and jingles: ``heroes-sound-effects``, ``frozen-bubble-data`` (Ogg),
  ``lbreakout2-data``;
- ``kids``: the Tux4Kids programs' cues: ``tuxpaint-data`` (tool sounds and a few spoken prompts),
  ``tuxmath-data``, ``tuxtype-data`` (37 sounds once duplicates are left out).
  A rehearsal of the held-out check, added on 2026-12-05 after the calibration was designed: no
  setting was chosen on it, and none should be (``quality.py --rehearsal`` runs it alone).

Each file (WAV, Ogg, FLAC) is decoded with soundfile, mixed to mono, resampled to 16 kHz
(scipy.signal.resample_poly), trimmed of leading and trailing silence (40 dB under the loudest 10 ms)
and cut to at most 3 s; sounds shorter than 0.3 s after trimming are left out, and so are exact
duplicates (the same decoded audio) and near-copies (a file whose first 3 s correlate at >= 0.98
with an earlier one's, as Oxygen's Log-In and Log-In-Long do: no feature could tell them apart).
Files are taken in sorted path order; when a set has more than 50 sounds, 50 evenly spaced ones are
kept, so every package contributes.

Occurrences: each sound occurs 10 times, each a varied copy, as a sound recurs in the world:

- speed: resampled by a factor in [0.95, 1.05] (tempo and pitch together, as a recording played
  slightly fast or slow);
- timing: the start is either delayed by up to 150 ms of silence or cropped by up to 10% of the
  sound (at most 150 ms), and up to 10% of the end is cropped;
- gain: +-6 dB;
- interference: in 30% of copies another sound of the set is mixed in, 15-25 dB below, at a random
  offset;
- noise: white or pink (half each) at 10-30 dB SNR (against the copy's mean power).

The label is the source sound. A set's records are shuffled with a fixed seed, so the copies of a
sound are spread over the stream (as in the held-out stream, 44 sounds x 10 occurrences).

Features, each a function from a list of 16 kHz clips to an (n, d) float32 array:

- ``logmel``: 64-band log-mel spectrogram (25 ms Hann window, 512-point FFT, 10 ms hop, 20 Hz -
  8 kHz, own filterbank), each band's mean and standard deviation over frames (128-d);
- ``mfcc``: 20 MFCCs (orthonormal DCT-II of the log-mel) and their deltas (regression over +-2
  frames), each one's mean and standard deviation over frames (80-d);
- ``resemblyzer``: the trained speaker encoder whose weights ship in the ``resemblyzer`` wheel
  (``VoiceEncoder``: 40-band mel, 3-layer LSTM, 256-d, unit norm), computed as its
  ``embed_utterance`` does (1.6 s partials at 1.3 per second, mean, L2 norm) but batched over all
  clips, without its voice-activity trimming. A trained neural encoder, where the random-weight
  wav2vec2 of the generated_audio stream is not one; trained on speech, not on these sounds.

Difficulty (seed 7, L2-normalized vectors, ``--check``): on log-mel statistics Ward's clustering told
the true number of sounds reaches ARI 0.44 (icons), 0.43 (games) and 0.22 (mixed: the Oxygen theme's
sounds are much alike), HDBSCAN 0.46 / 0.49 / 0.22, close to the held-out stream's 0.42 and 0.38;
MFCC statistics are similar; the trained encoder separates the sounds better (Ward 0.78 / 0.88 / 0.56).
No one variation makes them hard: alone, each of speed, timing, gain and noise takes Ward on icons
log-mel from 1.0 to 0.7-0.85; together they make 0.42.

Arrays are cached as ``benchmarks/.cache/real_sounds/<set>-<feature>-<seed>.npz`` (vectors, labels,
source names). Use::

    from real_sounds import real_streams, by_name, STREAM_NAMES
    x, y, desc = real_streams("logmel", "icons")      # or by_name("real_icons_logmel")

    python benchmarks/real_sounds.py                  # build (or load) every stream, print sizes
    python benchmarks/real_sounds.py --check          # plus baselines: Ward (true k), HDBSCAN, memory sweep
    python benchmarks/real_sounds.py --sources icons  # list a set's chosen sounds
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 16_000
OCCURRENCES = 10
SEED = 7
MAX_SOUNDS = 50
MIN_SECONDS = 0.3
MAX_SECONDS = 3.0
NEAR_COPY = 0.98  # zero-lag correlation over the shared first 3 s above which a file is a near-copy
CACHE = Path(__file__).resolve().parent / ".cache" / "real_sounds"
EXTENSIONS = (".wav", ".ogg", ".oga", ".flac")

PACKAGES: dict[str, tuple[str, ...]] = {
    "icons": ("sound-icons", "gnome-audio", "yaru-theme-sound", "deepin-sound-theme", "eiskaltdcpp-sounds"),
    "mixed": ("oxygen-sounds", "pingus-data"),
    "games": ("heroes-sound-effects", "frozen-bubble-data", "lbreakout2-data"),
    # Last, so that the other sets' draws (seeded by their index) stay as they were.
    # Not kbounce, which has sounds too: its dependencies install sound-theme-freedesktop.
    "kids": ("tuxpaint-data", "tuxmath-data", "tuxtype-data"),
}
SETS = tuple(PACKAGES)
FEATURES = ("logmel", "mfcc", "resemblyzer")
STREAM_NAMES = tuple(f"real_{s}_{f}" for s in SETS for f in FEATURES)

# Kept aside for a held-out check: never installed, listed or read here.
HELD_OUT_PACKAGES = ("sound-theme-freedesktop", "alsa-utils")
HELD_OUT_DIRS = ("/usr/share/sounds/freedesktop/", "/usr/share/sounds/alsa/")
assert not set(HELD_OUT_PACKAGES) & {p for ps in PACKAGES.values() for p in ps}


# -- sources ----------------------------------------------------------------------


def _package_files(package: str) -> list[str]:
    """The sound files a Debian package installed (empty when it is not installed)."""
    assert package not in HELD_OUT_PACKAGES
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return sorted(p for p in out.stdout.splitlines()
                  if p.lower().endswith(EXTENSIONS) and not p.startswith(HELD_OUT_DIRS) and os.path.isfile(p))


def ensure_packages(sets: Sequence[str] = SETS) -> None:
    """Install the Debian packages of these sets whose sound files are missing (as root)."""
    missing = [p for s in sets for p in PACKAGES[s] if not _package_files(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"real_sounds: the Debian packages {' '.join(missing)} are not installed and this is "
                         f"not root; install them as root: apt-get install --no-install-recommends "
                         f"{' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"real_sounds: apt-get install {' '.join(missing)}", file=sys.stderr)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, env=env, stdout=subprocess.DEVNULL)
    still = [p for p in missing if not _package_files(p)]
    if still:
        raise SystemExit(f"real_sounds: installed, yet no sound files from {' '.join(still)}")


def decode(path: str) -> np.ndarray:
    """A file as 16 kHz mono float64 (soundfile: WAV, Ogg Vorbis/Opus, FLAC)."""
    import soundfile
    from scipy.signal import resample_poly

    audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != RATE:
        g = math.gcd(int(rate), RATE)
        audio = resample_poly(audio, RATE // g, int(rate) // g)
    return audio


def trim(audio: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """Leading and trailing silence off: 10 ms frames more than ``floor_db`` under the loudest."""
    hop = RATE // 100
    n = len(audio) // hop
    if n == 0:
        return audio[:0]
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
    if rms.max() == 0.0:
        return audio[:0]
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    return audio[loud[0] * hop: (loud[-1] + 1) * hop]


def _near_copy(a: np.ndarray, b: np.ndarray) -> bool:
    n = min(len(a), len(b))
    x, y = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    d = math.sqrt(float(x @ x) * float(y @ y))
    return d > 0 and float(x @ y) / d >= NEAR_COPY


@lru_cache(maxsize=None)
def sources(set_name: str) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The set's sounds: (paths, 16 kHz clips), distinct, in sorted path order."""
    ensure_packages((set_name,))
    paths = sorted(p for pkg in PACKAGES[set_name] for p in _package_files(pkg))
    chosen: list[str] = []
    clips: list[np.ndarray] = []
    seen: set[str] = set()
    for path in paths:
        clip = trim(decode(path))[: int(MAX_SECONDS * RATE)]
        if len(clip) < MIN_SECONDS * RATE:
            continue
        digest = hashlib.sha1(np.round(clip * 2 ** 15).astype(np.int32).tobytes()).hexdigest()
        if digest in seen or any(_near_copy(clip, c) for c in clips):
            continue
        seen.add(digest)
        chosen.append(path)
        clips.append(clip / np.max(np.abs(clip)))  # peak-normalized: gain variation is the occurrences'
    if len(chosen) > MAX_SOUNDS:
        keep = np.unique(np.round(np.linspace(0, len(chosen) - 1, MAX_SOUNDS)).astype(int))
        chosen, clips = [chosen[i] for i in keep], [clips[i] for i in keep]
    return tuple(chosen), tuple(clips)


# -- occurrences ----------------------------------------------------------------------


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def occurrence(clip: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One varied copy of a sound (module docstring)."""
    from scipy.signal import resample_poly

    down = int(rng.integers(95, 106))  # speed x 100/down: 0.95 .. 1.05 (tempo and pitch together)
    a = resample_poly(clip, 100, down) if down != 100 else clip.copy()
    cap = min(len(a) // 10, RATE * 15 // 100)
    if rng.random() < 0.5:
        a = np.concatenate([np.zeros(int(rng.integers(0, RATE * 15 // 100))), a])
    else:
        a = a[int(rng.integers(0, cap + 1)):]
    a = a[: len(a) - int(rng.integers(0, len(a) // 10 + 1))]
    a = a * 10 ** (rng.uniform(-6, 6) / 20)
    power = float(np.mean(a * a))
    if others and rng.random() < 0.3:
        o = others[int(rng.integers(len(others)))]
        at = int(rng.integers(0, len(a)))
        o = o[: len(a) - at]
        op = float(np.mean(o * o))
        if op > 0:
            a[at: at + len(o)] += o * math.sqrt(power / op * 10 ** (rng.uniform(-25, -15) / 10))
    noise = _pink(len(a), rng) if rng.random() < 0.5 else rng.normal(size=len(a))
    noise *= math.sqrt(power / max(float(np.mean(noise * noise)), 1e-20) / 10 ** (rng.uniform(10, 30) / 10))
    return (a + noise).astype(np.float32)


def occurrences(set_name: str, seed: int = SEED, n: int = OCCURRENCES) -> tuple[list[np.ndarray], np.ndarray]:
    """The set's shuffled stream of varied copies and their labels (source index)."""
    _, clips = sources(set_name)
    rng = np.random.default_rng([seed, SETS.index(set_name)])
    copies, labels = [], []
    for k, clip in enumerate(clips):
        others = clips[:k] + clips[k + 1:]
        for _ in range(n):
            copies.append(occurrence(clip, others, rng))
            labels.append(k)
    order = rng.permutation(len(labels))
    return [copies[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


# -- features ----------------------------------------------------------------------------

N_FFT, WIN, HOP, BANDS = 512, 400, 160, 64


def _mel_filters(bands: int = BANDS, n_fft: int = N_FFT, fmin: float = 20.0, fmax: float = RATE / 2) -> np.ndarray:
    """(bands, n_fft // 2 + 1) triangular filters, evenly spaced on the HTK mel scale."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, RATE / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(fmin), mel(fmax), bands + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


_FILTERS = _mel_filters()
_WINDOW = np.hanning(WIN + 1)[:-1]


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel energies: 25 ms Hann windows every 10 ms."""
    audio = np.asarray(audio, dtype=np.float64)
    if len(audio) < WIN:
        audio = np.pad(audio, (0, WIN - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, WIN)[::HOP] * _WINDOW
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)) ** 2
    return np.log(power @ _FILTERS.T + 1e-10)


def _deltas(c: np.ndarray, width: int = 2) -> np.ndarray:
    padded = np.pad(c, ((width, width), (0, 0)), mode="edge")
    n = len(c)
    num = sum(k * (padded[width + k: width + k + n] - padded[width - k: width - k + n]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def logmel(clips: Sequence[np.ndarray]) -> np.ndarray:
    """Log-mel statistics: each of 64 bands' mean and std over frames (n, 128)."""
    out = []
    for a in clips:
        lm = log_mel(a)
        out.append(np.concatenate([lm.mean(axis=0), lm.std(axis=0)]))
    return np.asarray(out, dtype=np.float32)


def mfcc(clips: Sequence[np.ndarray], n_mfcc: int = 20) -> np.ndarray:
    """MFCC statistics: 20 MFCCs and their deltas, each one's mean and std over frames (n, 80)."""
    from scipy.fft import dct

    out = []
    for a in clips:
        c = dct(log_mel(a), type=2, axis=1, norm="ortho")[:, :n_mfcc]
        d = _deltas(c)
        out.append(np.concatenate([c.mean(axis=0), c.std(axis=0), d.mean(axis=0), d.std(axis=0)]))
    return np.asarray(out, dtype=np.float32)


@lru_cache(maxsize=1)
def _voice_encoder():
    """resemblyzer's VoiceEncoder with the wheel's pretrained.pt. Its package imports webrtcvad (for
    voice-activity trimming, unused here), and webrtcvad 2.0.10 imports pkg_resources, which current
    setuptools no longer ships: when that import fails, a stand-in module is in sys.modules only
    while resemblyzer is imported."""
    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        sys.modules["webrtcvad"] = type(sys)("webrtcvad")
        try:
            import resemblyzer  # noqa: F401
        finally:
            del sys.modules["webrtcvad"]
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def resemblyzer(clips: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    """The trained speaker encoder's utterance embeddings (n, 256): what ``embed_utterance(wav)``
    returns (partials of 160 frames at 1.3 a second, their mean, L2-normalized), batched over clips."""
    import torch

    enc = _voice_encoder()  # first: it makes resemblyzer importable
    from resemblyzer import wav_to_mel_spectrogram
    from resemblyzer.hparams import partials_n_frames

    mels, owner = [], []
    for i, wav in enumerate(clips):
        wav = np.asarray(wav, dtype=np.float32)
        wav_slices, mel_slices = enc.compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
        need = wav_slices[-1].stop
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = wav_to_mel_spectrogram(wav)
        for s in mel_slices:
            mels.append(mel[s])
            owner.append(i)
    assert all(len(m) == partials_n_frames for m in mels)
    x = np.stack(mels).astype(np.float32)
    parts = []
    with torch.no_grad():
        for b in range(0, len(x), batch):
            parts.append(enc(torch.from_numpy(x[b: b + batch])).numpy())
    partial = np.concatenate(parts)
    owner_arr = np.asarray(owner)
    out = np.zeros((len(clips), partial.shape[1]), dtype=np.float64)
    np.add.at(out, owner_arr, partial)
    out /= np.bincount(owner_arr, minlength=len(clips))[:, None]
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


EXTRACTORS: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]] = {
    "logmel": logmel, "mfcc": mfcc, "resemblyzer": resemblyzer}


# -- streams ----------------------------------------------------------------------------


def _cache_path(set_name: str, feature: str, seed: int) -> Path:
    return CACHE / f"{set_name}-{feature}-{seed}.npz"


def build(set_name: str, features: Sequence[str] = FEATURES, seed: int = SEED, force: bool = False) -> None:
    """Compute and cache the set's arrays for these features (those not cached yet, unless force)."""
    todo = [f for f in features if force or not _cache_path(set_name, f, seed).exists()]
    if not todo:
        return
    names, _ = sources(set_name)
    clips, labels = occurrences(set_name, seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    for f in todo:
        x = EXTRACTORS[f](clips)
        np.savez(_cache_path(set_name, f, seed), vectors=x, labels=labels, sources=np.asarray(names))


def real_streams(feature: str, set_name: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, str]:
    """``(vectors (n, d) float32, labels (n,) int64, description)`` of one set ("icons", "mixed",
    "games", "kids"; "real_icons" also works) and feature type ("logmel", "mfcc", "resemblyzer"; a
    ``_std`` suffix standardizes each dimension over the stream, as recorded_sounds.py's do)."""
    set_name = set_name.removeprefix("real_")
    base = feature.removesuffix("_std")
    if base not in EXTRACTORS or set_name not in PACKAGES:
        raise ValueError(f"feature must be one of {FEATURES} (or one with _std) and set_name one of {SETS}")
    path = _cache_path(set_name, base, seed)
    if not path.exists():
        build(set_name, (base,), seed)
    with np.load(path) as z:
        x, y, names = z["vectors"].astype(np.float32), z["labels"].astype(np.int64), z["sources"]
    if feature.endswith("_std"):
        x = ((x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)).astype(np.float32)
    k = len(names)
    std = ", standardized per dimension" if feature.endswith("_std") else ""
    desc = (f"{k} real recorded sounds ({', '.join(PACKAGES[set_name])}) x {len(y) // max(1, k)} varied copies "
            f"(speed +-5%, shift/crop, gain +-6 dB, 30% mixed with another 15-25 dB down, white/pink noise "
            f"10-30 dB SNR), {base} ({x.shape[1]}-d){std}, seed {seed}")
    return x, y, desc


def by_name(name: str, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, str]:
    """``real_<set>_<feature>`` -> real_streams(feature, set)."""
    prefix, set_name, feature = name.split("_", 2)
    if prefix != "real":
        raise ValueError(f"not a real-sound stream name: {name}")
    return real_streams(feature, set_name, seed)


# -- sanity check ----------------------------------------------------------------------------


def baselines(x: np.ndarray, y: np.ndarray, thresholds: Sequence[float] | None = None) -> dict:
    """ARI of Ward (true k) and HDBSCAN(min_cluster_size=3) on L2-normalized vectors, and of the
    pattern memory calibrated (as it ships) and at fixed thresholds 0.30..0.95, learning in order."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering
    from streams.core.patterns import PatternConfig, SpaceMemory
    from streams.core.quality import adjusted_rand_index

    truth = y.tolist()
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    ward = AgglomerativeClustering(n_clusters=len(set(truth)), linkage="ward").fit_predict(u).tolist()
    hd = HDBSCAN(min_cluster_size=3).fit_predict(u).tolist()
    hd = [v if v >= 0 else f"noise-{i}" for i, v in enumerate(hd)]

    def memory(t: float | None) -> tuple[float, int]:
        m = SpaceMemory("s", PatternConfig(match_threshold=t))
        pids = [m.learn_one(f"e{i}", x[i], 1.7e9 + i).pattern_id for i in range(len(x))]
        labels = [m.resolve(p) or p for p in pids]
        return adjusted_rand_index(truth, labels), len(set(labels))

    sweep = {t: memory(t) for t in (thresholds or [round(0.3 + 0.05 * i, 2) for i in range(14)])}
    best = max(sweep, key=lambda t: (sweep[t][0], -t))
    return {"ward": adjusted_rand_index(truth, ward), "hdbscan": adjusted_rand_index(truth, hd),
            "hdbscan_clusters": len(set(hd)), "calibrated": memory(None), "sweep": sweep, "best": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument("--check", action="store_true", help="baselines per stream (scikit-learn, the memory)")
    ap.add_argument("--sources", metavar="SET", help="list a set's chosen sounds and exit")
    args = ap.parse_args()
    if args.sources:
        names, clips = sources(args.sources)
        for i, (n, c) in enumerate(zip(names, clips)):
            print(f"{i:3d} {len(c) / RATE:5.2f}s {n}")
        return
    sets, feats = args.sets.split(","), args.features.split(",")
    t0 = time.perf_counter()
    for s in sets:
        t = time.perf_counter()
        build(s, feats, args.seed, args.force)
        print(f"{s}: built/loaded in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    print(f"all built/loaded in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if args.check:
        print(f"{'stream':<26}{'n':>5}{'d':>5}{'k':>4}{'ward':>7}{'hdbscan':>9}{'mem0.6':>8}{'(pat)':>6}"
              f"{'best t':>8}{'ARI':>7}{'(pat)':>6}{'calib':>7}{'(pat)':>6}")
    for s in sets:
        for f in feats:
            x, y, desc = real_streams(f, s, args.seed)
            name = f"real_{s}_{f}"
            if not args.check:
                print(f"{name}: {x.shape[0]} records, {x.shape[1]} dimensions, {len(np.unique(y))} sounds; {desc}")
                continue
            r = baselines(x, y)
            sw, b = r["sweep"], r["best"]
            print(f"{name:<26}{x.shape[0]:>5}{x.shape[1]:>5}{len(np.unique(y)):>4}{r['ward']:>7.3f}{r['hdbscan']:>9.3f}"
                  f"{sw[0.6][0]:>8.3f}{sw[0.6][1]:>6}{b:>8.2f}{sw[b][0]:>7.3f}{sw[b][1]:>6}"
                  f"{r['calibrated'][0]:>7.3f}{r['calibrated'][1]:>6}", flush=True)
            print("   sweep " + " ".join(f"{t}:{a:.2f}/{p}" for t, (a, p) in sw.items()), flush=True)


if __name__ == "__main__":
    main()
