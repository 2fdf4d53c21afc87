"""Per-space calibration of the match threshold (streams.core.calibration and SpaceMemory)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streams.core.calibration import MIN_SAMPLES, calibrate, derived_band, derived_merge
from streams.core.patterns import PatternConfig, SpaceMemory

CAL = PatternConfig(match_threshold=None)


def groups_stream(k: int, n: int, dim: int, kappa: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, k)))
    centres = q.T
    labels = rng.integers(0, k, size=n)
    noise = rng.normal(size=(n, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    spread = math.sqrt(1.0 / kappa**2 - 1.0)
    return (centres[labels] + spread * noise).astype(np.float32), labels


def learn(memory: SpaceMemory, x: np.ndarray, start: int = 0) -> list[str]:
    return [memory.learn_one(f"e{start + i}", v, 1000.0 + start + i).pattern_id for i, v in enumerate(x)]


# -- the pure rule -------------------------------------------------------------------------------


def test_two_clear_classes_put_the_threshold_at_the_square_of_the_upper_class_mean():
    values = [0.0, 0.05, 0.1, -0.05, 0.9, 0.9, 0.92, 0.88]
    t = calibrate(np.array(values), np.ones(len(values)), 0.5, 0.2, 0.97)
    assert t == pytest.approx(0.9**2)


def test_thin_or_unimodal_evidence_keeps_the_current_threshold():
    assert calibrate(np.array([0.1, 0.9]), np.ones(2), 0.7, 0.2, 0.97) == 0.7
    peaked = 0.5 + 0.05 * np.random.default_rng(0).laplace(size=200)  # one mode, no valley
    assert calibrate(peaked, np.ones(200), 0.7, 0.2, 0.97) == 0.7
    assert calibrate(np.full(10, 0.5), np.ones(10), 0.7, 0.2, 0.97) == 0.7  # no spread


def test_the_result_is_clamped_and_weights_count():
    values = np.array([0.0] * MIN_SAMPLES + [0.99] * MIN_SAMPLES)
    assert calibrate(values, np.ones(len(values)), 0.5, 0.2, 0.9) == 0.9
    # Zero weights are no samples at all.
    w = np.array([1.0] * MIN_SAMPLES + [0.0] * MIN_SAMPLES)
    assert calibrate(values, w, 0.5, 0.2, 0.9) == 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.integers(1, 64)), min_size=0, max_size=60), st.randoms())
def test_the_threshold_is_a_function_of_the_samples_not_their_order(samples, rnd):
    v = np.array([s[0] for s in samples], dtype=np.float64)
    w = np.array([s[1] for s in samples], dtype=np.float64)
    t = calibrate(v, w, 0.6, 0.2, 0.97)
    order = list(range(len(samples)))
    rnd.shuffle(order)
    assert calibrate(v[order], w[order], 0.6, 0.2, 0.97) == t  # the same bits
    assert 0.2 <= t <= 0.97


def test_derived_band_and_merge_match_the_pinned_defaults_at_0_6():
    cfg = PatternConfig()
    assert derived_merge(0.6, cfg.calibration_merge_ratio) == pytest.approx(cfg.merge_threshold)
    assert derived_band(0.6, cfg.calibration_band_ratio) == pytest.approx(cfg.related_band)


# -- a calibrating space -------------------------------------------------------------------------


def test_a_pinned_space_never_moves_and_says_so():
    m = SpaceMemory("s", PatternConfig(match_threshold=0.6))
    x, _ = groups_stream(4, 200, 32, 0.9, seed=1)
    learn(m, x)
    assert m.threshold == 0.6 and not m.calibrated
    assert m.space_state()["threshold"] == 0.6


def test_well_separated_groups_give_one_pattern_each():
    x, labels = groups_stream(6, 600, 64, 0.92, seed=2)
    m = SpaceMemory("s", CAL)
    seen = learn(m, x)
    assert m.calibrated and m.threshold != CAL.calibration_start  # it moved off its start
    final = [m.resolve(p) for p in seen]
    by_group = {g: {p for p, l in zip(final, labels) if l == g} for g in set(labels.tolist())}
    assert all(len(ps) == 1 for ps in by_group.values()), by_group
    assert len(set().union(*by_group.values())) == 6


def test_the_same_stream_gives_the_same_thresholds():
    x, _ = groups_stream(8, 500, 48, 0.85, seed=3)
    a, b = SpaceMemory("s", CAL), SpaceMemory("s", CAL)
    ta, tb = [], []
    for i, v in enumerate(x):
        a.learn_one(f"e{i}", v, float(i))
        b.learn_one(f"e{i}", v, float(i))
        ta.append(a.threshold)
        tb.append(b.threshold)
    assert ta == tb
    assert len(set(ta)) > 1  # it did calibrate


@pytest.mark.parametrize("cut", [1, 5, 33, 200, 417])
def test_restore_and_continue_is_bit_identical_to_an_uninterrupted_run(cut):
    x, _ = groups_stream(8, 500, 48, 0.85, seed=4)
    live = SpaceMemory("s", CAL)
    learn(live, x)
    first = SpaceMemory("s", CAL)
    learn(first, x[:cut])
    restored = SpaceMemory("s", CAL)
    restored.restore(first.patterns(), first.space_state())
    assert restored.threshold == first.threshold
    learn(restored, x[cut:], start=cut)
    assert restored.threshold == live.threshold
    assert restored.patterns() == live.patterns()
    assert restored.space_state()["threshold"] == live.space_state()["threshold"]


def test_a_pin_wins_over_a_learned_threshold_on_restore():
    x, _ = groups_stream(4, 300, 32, 0.9, seed=5)
    m = SpaceMemory("s", CAL)
    learn(m, x)
    pinned = SpaceMemory("s", PatternConfig(match_threshold=0.75))
    pinned.restore(m.patterns(), m.space_state())
    assert pinned.threshold == 0.75
    again = SpaceMemory("s", CAL)
    again.restore(m.patterns(), m.space_state())
    assert again.threshold == m.threshold


def test_calibration_evidence_survives_the_pattern_state_round_trip():
    from streams.core.patterns import Pattern

    x, _ = groups_stream(4, 120, 16, 0.9, seed=6)
    m = SpaceMemory("s", CAL)
    learn(m, x)
    for p in m.patterns():
        back = Pattern.from_state(p.to_state())
        assert back == p
        assert back.joins >= 0 and (back.created_similarity is None or -1.0 <= back.created_similarity <= 1.0)
    assert sum(p.created_similarity is None for p in m.patterns()) <= 1  # only the space's first record has none


# -- settings -----------------------------------------------------------------------------------


def test_threshold_settings_parse_numbers_and_auto_and_name_mistakes():
    from streams.settings import parse_space_thresholds, threshold_value

    assert threshold_value("FMS_MATCH_THRESHOLD", "0.8") == 0.8
    assert threshold_value("FMS_MATCH_THRESHOLD", "auto") is None
    assert parse_space_thresholds("voice=0.9, room=auto") == {"voice": 0.9, "room": None}
    assert parse_space_thresholds("") == {}
    with pytest.raises(ValueError, match="FMS_MATCH_THRESHOLD='high'"):
        threshold_value("FMS_MATCH_THRESHOLD", "high")
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        threshold_value("FMS_MATCH_THRESHOLD", "1.5")
    with pytest.raises(ValueError, match="not space=threshold"):
        parse_space_thresholds("voice")


def test_the_store_pins_or_calibrates_each_space_as_configured():
    from streams.state import PatternStore

    store = PatternStore({}, {}, PatternConfig(), thresholds={"voice": 0.9, "room": None})
    assert store.config_of("voice").match_threshold == 0.9
    assert store.config_of("room").match_threshold is None
    assert store.config_of("other").match_threshold == PatternConfig().match_threshold
    assert store.space("room").calibrated and not store.space("voice").calibrated
    assert store.thresholds() == {"room": PatternConfig().calibration_start, "voice": 0.9}
