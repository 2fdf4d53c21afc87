"""Signal preparation for the extraction stage, and the names of what it derives: pure numpy/scipy.

The extraction worker (agents/extraction.py) runs, per fms.audio record:

1. ``Audio.samples()`` (schemas owns the byte layouts) gives float32 frames x channels in [-1, 1];
2. :func:`to_mono` averages the channels;
3. :func:`resample` brings the rate to 16 kHz, the rate wav2vec2 was trained on;
4. :func:`window_starts` / :func:`frame_windows` cut fixed-length windows;
5. :func:`normalize_windows` gives each window zero mean and unit variance, as the model's
   feature extractor does when its ``do_normalize`` is set;
6. the model runs (streams/extraction/model.py), and :func:`pool` + :func:`l2_normalize` turn each
   window's hidden states into one vector.

Windows. Every window has the full configured length, so a batch of windows needs no padding and no
attention mask: batched inference sees exactly what one-by-one inference sees. Windows start at
0, hop, 2*hop, ... while they fit; when audio is left over after the last of them, one more window
is aligned to the end of the clip (it overlaps its predecessor by more than usual), so the tail is
never dropped and never zero-padded. A clip shorter than one window is a single window of its own
length; one shorter than the model's receptive field (``min_samples``) is zero-padded to it, since
the model cannot look at less.

Names. A feature's id is ``<audio id>#w<window>``; its space is ``<audio space>|<model space>``,
where the model space names the model, the layer and the pooling (streams/extraction/model.py), so
vectors of different models or layers never meet in one pattern space. Both are bounded to the
contract's 128 characters by :func:`bounded_ident`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from schemas.records import Audio, AudioFeature

MODEL_RATE = 16_000
POOLINGS = ("mean", "mean_std")
MAX_IDENT = 128  # the contract's limit on id and space strings


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, the mean of the channels."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0], dtype=np.float32)
    return samples.mean(axis=1, dtype=np.float32)


def resample_ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """(up, down) in lowest terms: 44100 -> 16000 is 160/441, the smallest polyphase filter bank."""
    g = gcd(from_rate, to_rate)
    return to_rate // g, from_rate // g


def resample(x: np.ndarray, from_rate: int, to_rate: int = MODEL_RATE) -> np.ndarray:
    """Polyphase resampling (scipy's Kaiser-windowed FIR, which also low-passes before decimating).

    The output has ceil(len(x) * up / down) samples, i.e. the same duration.
    """
    if from_rate == to_rate:
        return x.astype(np.float32, copy=False)
    up, down = resample_ratio(from_rate, to_rate)
    return resample_poly(x, up, down).astype(np.float32, copy=False)


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Start offsets of the windows of a clip of `n` samples (see the module doc for the tail)."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive")
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def frame_windows(x: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, list[int]]:
    """(windows, starts): a (count, length) float32 array of equal-length windows, and their offsets."""
    starts = window_starts(len(x), window, hop)
    if len(x) <= window:
        return x[None, :].astype(np.float32, copy=False), starts
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    return np.ascontiguousarray(view[starts], dtype=np.float32), starts


def normalize_windows(windows: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Zero mean, unit variance per window, as transformers' Wav2Vec2FeatureExtractor computes it.

    A silent window stays all zeros instead of blowing up its rounding noise.
    """
    mean = windows.mean(axis=1, keepdims=True, dtype=np.float64)
    var = windows.var(axis=1, keepdims=True, dtype=np.float64)
    return ((windows - mean) / np.sqrt(var + eps)).astype(np.float32)


def pool(hidden: np.ndarray, how: str) -> np.ndarray:
    """(batch, frames, dim) hidden states -> (batch, dim) for "mean", (batch, 2*dim) for "mean_std".

    The std is the population std (ddof 0) over frames; mean and std are concatenated in that order.
    """
    if how not in POOLINGS:
        raise ValueError(f"pooling {how!r} is not one of {', '.join(POOLINGS)}")
    mean = hidden.mean(axis=1, dtype=np.float32)
    if how == "mean":
        return mean
    return np.concatenate([mean, hidden.std(axis=1, dtype=np.float32)], axis=1)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length; a zero row stays zero (the schema then rejects it as vector_zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def bounded_ident(base: str, suffix: str, limit: int = MAX_IDENT) -> str:
    """`base + suffix`, or when that is too long, `base` cut and marked with a hash of it in full.

    Two different bases never shorten to the same string (short of a 64-bit hash collision), and the
    same base always shortens the same way, so derived ids stay deterministic and distinct.
    """
    whole = base + suffix
    if len(whole) <= limit:
        return whole
    tag = "~" + hashlib.sha256(base.encode()).hexdigest()[:16]
    keep = limit - len(suffix) - len(tag)
    if keep < 1:
        raise ValueError(f"suffix {suffix!r} leaves no room for an identifier within {limit} characters")
    return base[:keep] + tag + suffix


def feature_id(audio_id: str, window: int) -> str:
    return bounded_ident(audio_id, f"#w{window}")


def feature_space(audio_space: str, model_space: str) -> str:
    return bounded_ident(audio_space, f"|{model_space}")


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """Window length and hop in samples at the model's rate, and the shortest input the model takes."""

    window: int
    hop: int
    min_samples: int

    @classmethod
    def of_seconds(cls, window_s: float, hop_s: float, min_samples: int, rate: int = MODEL_RATE) -> WindowPlan:
        window, hop = round(window_s * rate), round(hop_s * rate)
        if window < min_samples:
            raise ValueError(f"a window of {window_s} s is shorter than the model's receptive field "
                             f"({min_samples} samples at {rate} Hz)")
        if hop <= 0:
            raise ValueError(f"hop must be positive, not {hop_s} s")
        return cls(window, hop, min_samples)


def prepare(samples: np.ndarray, sample_rate: int, plan: WindowPlan, *, normalize: bool = True
            ) -> tuple[np.ndarray, list[int]]:
    """Frames x channels at any rate -> equal-length model-ready windows at 16 kHz, and their offsets.

    Padding comes after normalization, as in the model's own feature extractor: the zeros are
    padding, not signal.
    """
    mono = resample(to_mono(samples), sample_rate, MODEL_RATE)
    windows, starts = frame_windows(mono, plan.window, plan.hop)
    if normalize:
        windows = normalize_windows(windows)
    if windows.shape[1] < plan.min_samples:
        windows = np.pad(windows, ((0, 0), (0, plan.min_samples - windows.shape[1])))
    return windows, starts


def feature_records(audio: Audio, vectors: np.ndarray, starts: list[int], *, window: int, model_space: str,
                    model_id: str, warnings: list[str] = ()) -> list[AudioFeature]:
    """One AudioFeature per window of `audio`, named as the module doc says.

    A window's event time is the record's plus the window's offset, so that the memory's event clock
    follows the audio and replays give the same timestamps. `meta` ties each vector back to its
    audio and says which part of it the vector describes.
    """
    total = len(vectors)
    space = feature_space(audio.space, model_space)
    out = []
    for i, (vector, start) in enumerate(zip(vectors, starts)):
        start_s = start / MODEL_RATE
        end_s = min((start + window) / MODEL_RATE, audio.duration_s)
        meta = {"audio_id": audio.id, "audio_space": audio.space, "window": i, "windows": total,
                "start_s": start_s, "end_s": end_s}
        if warnings:
            meta["warnings"] = list(warnings)
        out.append(AudioFeature(id=feature_id(audio.id, i), space=space, vector=vector, ts=audio.ts + start_s,
                                model_id=model_id, meta=meta))
    return out
