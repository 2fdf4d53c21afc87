"""The extraction stage's pure core: resampling, windows, pooling, names."""
from __future__ import annotations

import numpy as np
import pytest

from schemas.codec import encode
from schemas.records import Audio
from streams.core.audio import (
    MODEL_RATE,
    WindowPlan,
    bounded_ident,
    feature_id,
    feature_records,
    feature_space,
    frame_windows,
    l2_normalize,
    normalize_windows,
    pool,
    prepare,
    resample,
    resample_ratio,
    to_mono,
    window_starts,
)


def sine(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return np.sin(2 * np.pi * freq * t).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def test_44k1_stereo_sine_comes_out_at_16k_with_its_frequency_and_length():
    seconds, freq = 2.0, 1000.0
    left = sine(freq, 44100, seconds)
    stereo = np.stack([left, 0.5 * left], axis=1)  # channels in phase: the mono mix is 0.75 * the sine

    out = resample(to_mono(stereo), 44100, MODEL_RATE)

    assert out.dtype == np.float32
    assert len(out) == int(seconds * MODEL_RATE)
    assert peak_hz(out, MODEL_RATE) == pytest.approx(freq, abs=MODEL_RATE / len(out))
    # Away from the filter's edge effects the amplitude is kept (0.75 of full scale).
    middle = out[len(out) // 4: 3 * len(out) // 4]
    assert np.abs(middle).max() == pytest.approx(0.75, abs=0.01)


def test_resampling_removes_what_the_new_rate_cannot_hold():
    # 10 kHz is above 16 kHz's Nyquist frequency: a proper resampler filters it out instead of folding it to 6 kHz.
    x = sine(10_000, 48_000, 1.0) + sine(440, 48_000, 1.0)
    out = resample(x, 48_000, MODEL_RATE)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / MODEL_RATE)
    alias = spectrum[np.abs(freqs - 6000) < 50].max()
    tone = spectrum[np.abs(freqs - 440) < 50].max()
    assert alias < tone * 1e-2  # below -40 dB; taking every third sample would leave it at 0 dB
    naive = x[::3]
    naive_spectrum = np.abs(np.fft.rfft(naive * np.hanning(len(naive))))
    assert naive_spectrum[np.abs(freqs - 6000) < 50].max() > tone * 0.5


def test_ratio_is_in_lowest_terms_and_same_rate_is_untouched():
    assert resample_ratio(44100, 16000) == (160, 441)
    assert resample_ratio(8000, 16000) == (2, 1)
    x = sine(100, MODEL_RATE, 0.1)
    assert resample(x, MODEL_RATE, MODEL_RATE) is x
    assert len(resample(sine(100, 8000, 1.0), 8000, MODEL_RATE)) == MODEL_RATE


def test_windows_cover_the_clip_and_the_tail_window_is_aligned_to_the_end():
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(110, 40, 20) == [0, 20, 40, 60, 70]  # 10 samples left over: one more, ending at 110
    assert window_starts(40, 40, 20) == [0]
    assert window_starts(25, 40, 20) == [0]
    x = np.arange(110, dtype=np.float32)
    windows, starts = frame_windows(x, 40, 20)
    assert windows.shape == (5, 40)
    for w, s in zip(windows, starts):
        assert np.array_equal(w, x[s:s + 40])
    assert windows[-1][-1] == 109


def test_short_clip_is_one_window_of_its_own_length_padded_only_to_the_receptive_field():
    plan = WindowPlan(window=32000, hop=16000, min_samples=400)
    rng = np.random.default_rng(0)
    one_second = rng.standard_normal((16000, 1)).astype(np.float32)
    windows, starts = prepare(one_second, MODEL_RATE, plan)
    assert windows.shape == (1, 16000) and starts == [0]

    tiny = rng.standard_normal((100, 1)).astype(np.float32)
    windows, _ = prepare(tiny, MODEL_RATE, plan)
    assert windows.shape == (1, 400)
    assert np.all(windows[0, 100:] == 0), "padding comes after normalization and stays zero"
    assert windows[0, :100].mean() == pytest.approx(0, abs=1e-5)


def test_window_plan_refuses_windows_the_model_cannot_see():
    with pytest.raises(ValueError, match="receptive field"):
        WindowPlan.of_seconds(0.01, 0.01, min_samples=400)
    assert WindowPlan.of_seconds(2.0, 1.0, min_samples=400) == WindowPlan(32000, 16000, 400)


def test_normalized_windows_have_zero_mean_unit_variance_and_silence_stays_zero():
    rng = np.random.default_rng(1)
    w = (3 + 5 * rng.standard_normal((2, 1000))).astype(np.float32)
    n = normalize_windows(w)
    assert np.allclose(n.mean(axis=1), 0, atol=1e-5) and np.allclose(n.std(axis=1), 1, atol=1e-3)
    assert np.array_equal(normalize_windows(np.zeros((1, 500), np.float32)), np.zeros((1, 500), np.float32))


def test_pooling_and_l2_normalization():
    hidden = np.array([[[1, 2], [3, 6]]], dtype=np.float32)  # batch 1, 2 frames, dim 2
    assert np.array_equal(pool(hidden, "mean"), [[2, 4]])
    assert np.array_equal(pool(hidden, "mean_std"), [[2, 4, 1, 2]])
    with pytest.raises(ValueError):
        pool(hidden, "max")
    unit = l2_normalize(np.array([[3, 4], [0, 0]], dtype=np.float32))
    assert np.allclose(unit, [[0.6, 0.8], [0, 0]])


def test_derived_names_stay_within_128_characters_and_distinct():
    assert feature_id("clip-1", 3) == "clip-1#w3"
    long_a, long_b = "a" * 127 + "x", "a" * 127 + "y"
    ids = {feature_id(long_a, 0), feature_id(long_b, 0)}
    assert len(ids) == 2 and all(len(i) == 128 and i.endswith("#w0") for i in ids)
    assert feature_id(long_a, 0) == feature_id(long_a, 0)
    space = feature_space("s" * 128, "wav2vec2:base#0123456789ab:L12:mean_std")
    assert len(space) == 128 and space.endswith("|wav2vec2:base#0123456789ab:L12:mean_std")
    with pytest.raises(ValueError):
        bounded_ident("x", "y" * 200)


def test_feature_records_name_each_window_and_pass_the_contract():
    audio = Audio(id="rec", space="kitchen", sample_rate=MODEL_RATE, channels=1, encoding="f32le",
                  data=np.zeros(int(2.5 * MODEL_RATE), "<f4").tobytes(), ts=100.0)
    vectors = l2_normalize(np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32))
    features = feature_records(audio, vectors, [0, 8000], window=32000, model_space="wav2vec2:m#1:L2:mean",
                               model_id="m#1", warnings=["audio_silent"])
    assert [f.id for f in features] == ["rec#w0", "rec#w1"]
    assert {f.space for f in features} == {"kitchen|wav2vec2:m#1:L2:mean"}
    assert [f.ts for f in features] == [100.0, 100.5]
    assert features[1].meta == {"audio_id": "rec", "audio_space": "kitchen", "window": 1, "windows": 2,
                                "start_s": 0.5, "end_s": 2.5, "warnings": ["audio_silent"]}
    for f in features:
        encode(f)
