"""Unit tests for the pure pattern-memory core (streams/core/patterns.py)."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.patterns import (
    DimensionMismatch,
    Learned,
    Match,
    Pattern,
    PatternConfig,
    SpaceMemory,
    confidence,
    eviction_order,
    pattern_id_for,
)

SPACE = "clap-htsat"


def mem(dim: int | None = None, **cfg) -> SpaceMemory:
    return SpaceMemory(SPACE, PatternConfig(**cfg), dim=dim)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def cos(a, b) -> float:
    return float(np.dot(unit(a), unit(b)))


def pattern(pid: str, centroid, *, count=1, sim_sum=None, conf=None, created=0.0, last=None):
    cfg = PatternConfig()
    sim_sum = float(count) if sim_sum is None else sim_sum
    return Pattern(
        pattern_id=pid,
        count=count,
        centroid=np.asarray(centroid, dtype=np.float32),
        similarity_sum=sim_sum,
        confidence=confidence(count, sim_sum / count, cfg) if conf is None else conf,
        created_ts=created,
        last_ts=created if last is None else last,
    )


def full_state(m: SpaceMemory):
    """Everything observable plus the recognition matrix, for read-only checks."""
    n = len(m)
    return (
        [p.to_state() | {"centroid": p.centroid.tobytes()} for p in m.patterns()],
        m._mat[:n].tobytes(),
        list(m._row_ids),
        m.dim,
    )


def check_rows(m: SpaceMemory) -> None:
    """Row invariant: each live row is its pattern's unit centroid."""
    assert len(m._row_ids) == len(m)
    for pid, row in m._row_of.items():
        assert m._row_ids[row] == pid
        expected = SpaceMemory._unit_row(m.get(pid).centroid)
        assert m._mat[row].tobytes() == expected.tobytes()


# -- module purity -------------------------------------------------------------


def test_core_imports_only_numpy_and_stdlib():
    src = Path(__file__).resolve().parents[2] / "streams" / "core" / "patterns.py"
    tree = ast.parse(src.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports into the streams app"
            roots.add(node.module.split(".")[0])
    assert roots - {"numpy"} <= set(sys.stdlib_module_names), roots


# -- ids -----------------------------------------------------------------------


def test_pattern_id_is_deterministic_and_space_scoped():
    expected = "p-" + hashlib.blake2b(f"{SPACE}\0e-1".encode(), digest_size=8).hexdigest()
    assert pattern_id_for(SPACE, "e-1") == expected
    assert pattern_id_for(SPACE, "e-1") == pattern_id_for(SPACE, "e-1")
    assert pattern_id_for("other", "e-1") != expected
    assert pattern_id_for(SPACE, "e-2") != expected
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert pattern_id_for("ab", "c") != pattern_id_for("a", "bc")
    assert len(expected) == 2 + 16


def test_created_pattern_uses_id_of_first_event():
    m = mem()
    r = m.learn_one("e-1", [1.0, 0.0, 0.0], ts=10.0)
    assert r.new and r.event == "created"
    assert r.pattern_id == pattern_id_for(SPACE, "e-1")


def test_redelivered_event_creating_again_gets_a_distinct_deterministic_id():
    def run():
        m = mem()
        a = m.learn_one("e-1", [1.0, 0.0], ts=1.0)
        b = m.learn_one("e-1", [0.0, 1.0], ts=2.0)  # same id, novel vector
        return a.pattern_id, b.pattern_id, len(m)

    a, b, n = run()
    assert a != b and n == 2
    assert run() == (a, b, n)


# -- match / create ------------------------------------------------------------


def test_first_vector_creates_and_fixes_dim():
    m = mem()
    assert m.dim is None and len(m) == 0
    r = m.learn_one("e-1", [3.0, 4.0], ts=1.0)
    assert m.dim == 2 and len(m) == 1
    assert r == Learned(r.pattern_id, 1.0, r.confidence, True, r.changed, "created", ())
    (p,) = r.changed
    assert p.count == 1 and p.similarity_sum == 1.0
    assert p.created_ts == p.last_ts == 1.0
    assert p.centroid.dtype == np.float32
    np.testing.assert_allclose(p.centroid, [0.6, 0.8], rtol=1e-6)
    assert r.confidence == pytest.approx(1 - math.exp(-1 / 5))


def test_similar_vector_joins_dissimilar_creates():
    m = mem(match_threshold=0.8)
    a = m.learn_one("e-1", [1.0, 0.0], ts=1.0)
    near = [math.cos(math.radians(30)), math.sin(math.radians(30))]  # cos = 0.866
    b = m.learn_one("e-2", near, ts=2.0)
    assert not b.new and b.event == "updated" and b.pattern_id == a.pattern_id
    assert b.similarity == pytest.approx(0.8660254, abs=1e-6)
    assert b.changed[0].count == 2 and b.evicted == ()
    c = m.learn_one("e-3", [0.0, 1.0], ts=3.0)
    assert c.new and c.pattern_id != a.pattern_id
    assert len(m) == 2


def test_threshold_is_inclusive():
    probe = [0.6, 0.8]
    assert mem(dim=2).predict_one(probe) == []  # an empty memory recognizes nothing

    base = mem()
    base.learn_one("e-1", [1.0, 0.0], ts=1.0)
    (match,) = base.predict_one(probe)

    at = mem(match_threshold=match.similarity)
    at.learn_one("e-1", [1.0, 0.0], ts=1.0)
    assert not at.learn_one("e-2", probe, ts=2.0).new

    above = mem(match_threshold=math.nextafter(match.similarity, 2.0))
    above.learn_one("e-1", [1.0, 0.0], ts=1.0)
    assert above.learn_one("e-2", probe, ts=2.0).new


def test_scale_does_not_matter():
    m = mem()
    a = m.learn_one("e-1", [1.0, 2.0, 3.0], ts=1.0)
    b = m.learn_one("e-2", [1e30, 2e30, 3e30], ts=2.0)  # squares would overflow naively
    assert b.pattern_id == a.pattern_id and b.similarity == pytest.approx(1.0)


def test_centroid_is_running_mean_and_moves_toward_members():
    m = mem(match_threshold=0.5)
    members = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [2.0, 0.5, 0.5]]
    pid = m.learn_one("e-0", members[0], ts=0.0).pattern_id
    for i, v in enumerate(members[1:], start=1):
        before = m.get(pid).centroid.copy()
        r = m.learn_one(f"e-{i}", v, ts=float(i))
        assert r.pattern_id == pid
        after = r.changed[0].centroid
        assert cos(after, v) > cos(before, v)
        np.testing.assert_allclose(after, np.mean([unit(u) for u in members[: i + 1]], axis=0), atol=1e-6)


def test_centroid_update_is_float32_fixed_order():
    m = mem(match_threshold=0.0)
    x0, x1 = m._prepare([1.0, 2.0, 3.0])[0], m._prepare([3.0, 2.0, 1.0])[0]
    m.learn_one("e-0", [1.0, 2.0, 3.0], ts=0.0)
    r = m.learn_one("e-1", [3.0, 2.0, 1.0], ts=1.0)
    expected = x0 + (x1 - x0) / np.float32(2)
    assert expected.dtype == np.float32
    assert r.changed[0].centroid.tobytes() == expected.tobytes()


# -- confidence ---------------------------------------------------------------


def test_confidence_formula():
    cfg = PatternConfig(evidence_scale=5.0)
    assert confidence(0, 1.0, cfg) == 0.0
    assert confidence(5, 1.0, cfg) == pytest.approx(1 - math.exp(-1))
    assert confidence(5, 0.5, cfg) == pytest.approx(0.5 * (1 - math.exp(-1)))
    assert confidence(5, 1.7, cfg) == confidence(5, 1.0, cfg)  # clamped
    assert confidence(5, -0.3, cfg) == 0.0


@given(
    count=st.integers(0, 10**7),
    cohesion=st.floats(-5, 5, allow_nan=False),
    scale=st.floats(1e-3, 1e4, allow_nan=False),
)
def test_confidence_bounded_and_monotone(count, cohesion, scale):
    cfg = PatternConfig(evidence_scale=scale)
    c = confidence(count, cohesion, cfg)
    assert 0.0 <= c <= 1.0
    assert confidence(count + 1, cohesion, cfg) >= c
    assert confidence(count, min(cohesion + 0.1, 5.0), cfg) >= c


def test_confidence_grows_with_evidence():
    m = mem()
    confs = [m.learn_one(f"e-{i}", [1.0, 0.0, 0.0], ts=float(i)).confidence for i in range(20)]
    assert all(b > a for a, b in zip(confs, confs[1:]))
    assert all(0.0 <= c <= 1.0 for c in confs)
    assert confs[4] < 0.7 < confs[-1]  # established after enough evidence


def test_confidence_grows_with_cohesion():
    tight, loose = mem(match_threshold=0.3), mem(match_threshold=0.3)
    for i in range(6):
        t = tight.learn_one(f"e-{i}", [1.0, 0.01 * (-1) ** i, 0.0], ts=float(i))
        lo = loose.learn_one(f"e-{i}", [1.0, 0.6 * (-1) ** i, 0.0], ts=float(i))
        assert t.changed[0].count == lo.changed[0].count == i + 1
    assert t.confidence > lo.confidence
    assert tight.get(t.pattern_id).cohesion > loose.get(lo.pattern_id).cohesion


# -- validation ----------------------------------------------------------------


def test_dimension_mismatch():
    m = mem()
    m.learn_one("e-1", [1.0, 0.0, 0.0], ts=1.0)
    before = full_state(m)
    with pytest.raises(DimensionMismatch) as ei:
        m.learn_one("e-2", [1.0, 0.0, 0.0, 0.0], ts=2.0)
    assert isinstance(ei.value, ValueError)
    assert (ei.value.expected, ei.value.actual) == (3, 4)
    with pytest.raises(DimensionMismatch):
        m.predict_one([1.0, 0.0])
    assert full_state(m) == before


def test_dimension_given_up_front():
    m = mem(dim=4)
    assert m.dim == 4
    with pytest.raises(DimensionMismatch) as ei:
        m.learn_one("e-1", [1.0, 0.0, 0.0], ts=1.0)
    assert (ei.value.expected, ei.value.actual) == (4, 3)


def test_zero_vector_rejected_and_does_not_fix_dim():
    m = mem()
    with pytest.raises(ValueError, match="zero vector"):
        m.learn_one("e-1", [0.0, 0.0, 0.0], ts=1.0)
    assert m.dim is None and len(m) == 0
    with pytest.raises(ValueError, match="zero vector"):
        m.predict_one([0.0, 0.0])
    m.learn_one("e-2", [0.0, 1.0], ts=2.0)
    assert m.dim == 2


@pytest.mark.parametrize("bad", [[[1.0, 0.0]], 1.0, []])
def test_non_vectors_rejected(bad):
    with pytest.raises(ValueError):
        mem().learn_one("e-1", bad, ts=1.0)


def test_bad_ts_and_k_rejected():
    m = mem()
    with pytest.raises(ValueError):
        m.learn_one("e-1", [1.0, 0.0], ts=float("nan"))
    with pytest.raises(ValueError):
        m.predict_one([1.0, 0.0], k=0)


def test_config_validation():
    with pytest.raises(ValueError):
        PatternConfig(max_patterns=0)
    with pytest.raises(ValueError):
        PatternConfig(evidence_scale=0.0)
    with pytest.raises(ValueError):
        PatternConfig(match_threshold=1.5)


# -- eviction ------------------------------------------------------------------


def test_eviction_order_key():
    a = pattern("p-a", [1, 0], count=3, created=0.0, last=1.0)
    b = pattern("p-b", [0, 1], count=1, created=0.0, last=5.0)
    c = pattern("p-c", [1, 1], count=1, created=0.0, last=2.0)
    d = pattern("p-d", [1, 2], count=1, created=0.0, last=2.0)
    order = [p.pattern_id for p in eviction_order([a, b, d, c], now=9.0)]
    # Lowest confidence first; then least recently active; then id.
    assert order == ["p-c", "p-d", "p-b", "p-a"]


def test_evicts_lowest_value_at_max_patterns():
    m = mem(match_threshold=0.9, max_patterns=3)
    a = m.learn_one("e-a", [1, 0, 0, 0], ts=1.0).pattern_id
    m.learn_one("e-a2", [1, 0, 0, 0], ts=2.0)  # a gains evidence
    b = m.learn_one("e-b", [0, 1, 0, 0], ts=3.0).pattern_id
    c = m.learn_one("e-c", [0, 0, 1, 0], ts=4.0).pattern_id
    assert len(m) == 3
    r = m.learn_one("e-d", [0, 0, 0, 1], ts=5.0)
    # b and c tie on confidence; b was active less recently.
    assert r.new and r.evicted == (b,)
    assert [p.pattern_id for p in r.changed] == [r.pattern_id]
    assert len(m) == 3 and m.get(b) is None
    assert {p.pattern_id for p in m.patterns()} == {a, c, r.pattern_id}
    assert m.predict_one([0, 1, 0, 0], k=3)[0].pattern_id != b
    check_rows(m)
    # Joining never evicts.
    assert m.learn_one("e-c2", [0, 0, 1, 0], ts=6.0).evicted == ()


def test_restored_over_capacity_shrinks_on_next_create():
    m = mem(max_patterns=2)
    m.restore([pattern(f"p-{i}", np.eye(4)[i], created=float(i)) for i in range(4)])
    assert len(m) == 4
    r = m.learn_one("e-x", [1, 1, 1, 1], ts=10.0)
    assert r.new and r.evicted == ("p-0", "p-1", "p-2") and len(m) == 2
    check_rows(m)


# -- recognition ---------------------------------------------------------------


def test_predict_one_is_read_only():
    rng = np.random.default_rng(7)
    m = mem(match_threshold=0.6)
    for i in range(50):
        m.learn_one(f"e-{i}", rng.standard_normal(8), ts=float(i))
    before = full_state(m)
    for _ in range(20):
        m.predict_one(rng.standard_normal(8), k=int(rng.integers(1, 80)))
    assert full_state(m) == before


def test_predict_one_orders_and_limits():
    m = mem(match_threshold=0.99)
    for i, v in enumerate(np.eye(3)):
        m.learn_one(f"e-{i}", v, ts=float(i))
    q = [3.0, 2.0, 1.0]
    res = m.predict_one(q, k=5)
    assert len(res) == 3 and all(isinstance(x, Match) for x in res)
    assert [x.similarity for x in res] == sorted((x.similarity for x in res), reverse=True)
    assert [x.similarity for x in res] == pytest.approx([cos(q, e) for e in np.eye(3)], abs=1e-6)
    assert m.predict_one(q) == res[:1]
    assert res[0].confidence == m.get(res[0].pattern_id).confidence


def test_predict_one_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    dim = 48
    m = mem(match_threshold=0.99)  # every record creates: many random patterns
    for i in range(300):
        m.learn_one(f"e-{i}", rng.standard_normal(dim), ts=float(i))
    assert len(m) == 300 and m._mat.shape[0] >= 300
    check_rows(m)
    cents = np.stack([unit(p.centroid) for p in m.patterns()])
    ids = [p.pattern_id for p in m.patterns()]
    for _ in range(25):
        q = rng.standard_normal(dim)
        sims = cents @ unit(q)
        order = np.argsort(-sims)[:5]
        got = m.predict_one(q, k=5)
        assert [g.pattern_id for g in got] == [ids[j] for j in order]
        np.testing.assert_allclose([g.similarity for g in got], sims[order], atol=1e-6)


def test_ties_go_to_earliest_created_pattern():
    same = [0.0, 1.0, 0.0]
    m = mem(match_threshold=0.9)
    # Restore in a scrambled order: recognition must not care.
    m.restore([
        pattern("p-c", same, created=3.0),
        pattern("p-z", same, created=1.0),
        pattern("p-a", same, created=2.0),
    ])
    assert [p.pattern_id for p in m.patterns()] == ["p-z", "p-a", "p-c"]
    res = m.predict_one(same, k=3)
    assert [r.pattern_id for r in res] == ["p-z", "p-a", "p-c"]
    assert len({r.similarity for r in res}) == 1
    assert m.learn_one("e-1", same, ts=4.0).pattern_id == "p-z"


def test_ties_on_created_ts_go_to_smallest_id():
    same = [0.0, 1.0]
    m = mem()
    m.restore([pattern("p-b", same, created=1.0), pattern("p-a", same, created=1.0)])
    assert m.predict_one(same)[0].pattern_id == "p-a"


def test_live_ties_between_learned_patterns():
    m = mem(match_threshold=0.7)
    # Out-of-order timestamps: the second pattern is "earlier" by created_ts.
    late = m.learn_one("e-1", [1.0, 0.0], ts=5.0).pattern_id
    early = m.learn_one("e-2", [0.0, 1.0], ts=2.0).pattern_id
    (a, b) = m.predict_one([1.0, 1.0], k=2)
    assert a.similarity == b.similarity  # exactly equidistant
    assert (a.pattern_id, b.pattern_id) == (early, late)
    assert m.learn_one("e-3", [1.0, 1.0], ts=6.0).pattern_id == early


# -- snapshots -----------------------------------------------------------------


def test_changed_snapshots_are_not_aliased_to_live_state():
    m = mem()
    r1 = m.learn_one("e-1", [1.0, 0.0], ts=1.0)
    snap = r1.changed[0]
    frozen = snap.to_state() | {"centroid": snap.centroid.copy()}
    m.learn_one("e-2", [0.9, 0.1], ts=2.0)
    assert snap.count == 1 and snap.centroid.tobytes() == frozen["centroid"].tobytes()
    with pytest.raises(ValueError):
        snap.centroid[0] = 5.0  # read-only: the shell cannot corrupt the memory
    got = m.get(r1.pattern_id)
    got.count = 99
    assert m.get(r1.pattern_id).count == 2


def test_state_round_trip():
    p = pattern("p-x", [0.25, -0.5, 1.0], count=4, sim_sum=3.5, created=1.5, last=9.0)
    state = p.to_state()
    assert isinstance(state["centroid"], np.ndarray)
    json.dumps({k: v for k, v in state.items() if k != "centroid"})
    assert Pattern.from_state(state) == p
    wire = json.loads(json.dumps(state | {"centroid": state["centroid"].tolist()}))
    q = Pattern.from_state(wire)
    assert q == p and q.centroid.dtype == np.float32


def test_restore_validates_before_mutating():
    m = mem()
    m.learn_one("e-1", [1.0, 0.0], ts=1.0)
    before = full_state(m)
    with pytest.raises(ValueError):
        m.restore([pattern("p-a", [1, 0], created=1), pattern("p-a", [0, 1], created=2)])
    with pytest.raises(DimensionMismatch):
        m.restore([pattern("p-a", [1, 0], created=1), pattern("p-b", [0, 1, 0], created=2)])
    with pytest.raises(DimensionMismatch):
        m.restore([pattern("p-a", [1, 0, 0], created=1)])  # dim already fixed at 2
    assert full_state(m) == before


# -- determinism and restore property -----------------------------------------


def wire(p: Pattern) -> Pattern:
    """What the shell does: state -> JSON -> state."""
    state = p.to_state()
    state["centroid"] = state["centroid"].tolist()
    return Pattern.from_state(json.loads(json.dumps(state)))


def run(cfg: PatternConfig, records, memory: SpaceMemory | None = None):
    m = memory if memory is not None else SpaceMemory(SPACE, cfg)
    out = [m.learn_one(eid, vec, ts) for eid, vec, ts in records]
    return m, out


def final(m: SpaceMemory):
    return sorted(m.patterns(), key=lambda p: p.pattern_id)


def assert_restore_equivalent(cfg, records, split, rnd):
    live, live_out = run(cfg, records)
    check_rows(live)

    again, again_out = run(cfg, records)
    assert again_out == live_out and final(again) == final(live)

    first, _ = run(cfg, records[:split])
    snapshot = [wire(p) for p in first.patterns()]
    rnd.shuffle(snapshot)  # the table yields keys in no useful order
    restored = SpaceMemory(SPACE, cfg)
    restored.restore(snapshot)
    assert final(restored) == final(first)
    _, rest_out = run(cfg, records[split:], restored)
    check_rows(restored)

    assert rest_out == live_out[split:]  # includes bit-exact changed snapshots
    assert final(restored) == final(live)
    assert restored.dim == live.dim


@st.composite
def small_streams(draw):
    dim = draw(st.integers(2, 5))
    # Small integers make exact duplicates and exact ties likely.
    ints = st.lists(st.integers(-2, 2), min_size=dim, max_size=dim).filter(any)
    floats = st.lists(
        st.floats(-1, 1, allow_nan=False, width=32), min_size=dim, max_size=dim
    ).filter(lambda v: any(v))
    records = draw(
        st.lists(
            st.tuples(
                st.integers(0, 25).map(lambda i: f"e-{i}"),  # redeliveries happen
                st.one_of(ints, floats),
                st.integers(0, 15).map(float),  # repeats and out-of-order ts
            ),
            min_size=1,
            max_size=40,
        )
    )
    cfg = PatternConfig(
        match_threshold=draw(st.sampled_from([0.0, 0.5, 0.8, 0.95, 1.0])),
        max_patterns=draw(st.integers(1, 6)),
        evidence_scale=draw(st.sampled_from([0.5, 5.0])),
    )
    return cfg, records, draw(st.integers(0, len(records)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_streams(), st.randoms(use_true_random=False))
def test_restore_then_continue_equals_uninterrupted_small(case, rnd):
    cfg, records, split = case
    assert_restore_equivalent(cfg, records, split, rnd)


@st.composite
def clustered_streams(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    dim = draw(st.sampled_from([7, 16, 33, 96]))
    n = draw(st.integers(20, 120))
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((draw(st.integers(2, 12)), dim))
    noise = draw(st.sampled_from([0.1, 0.4, 1.0]))
    records = []
    for i in range(n):
        v = protos[rng.integers(len(protos))] + noise * rng.standard_normal(dim)
        records.append((f"e-{i}", v.astype(np.float32), float(rng.integers(0, n))))
    cfg = PatternConfig(
        match_threshold=draw(st.sampled_from([0.5, 0.8, 0.9])),
        max_patterns=draw(st.sampled_from([3, 8, 1000])),
    )
    return cfg, records, draw(st.integers(0, n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clustered_streams(), st.randoms(use_true_random=False))
def test_restore_then_continue_equals_uninterrupted_clustered(case, rnd):
    cfg, records, split = case
    assert_restore_equivalent(cfg, records, split, rnd)
