"""learn_many is learn_one applied in order (space_memory's docstring, "Batches"): the same ids,
decisions, outputs and bits, and the same memory after, whatever the batches."""
from __future__ import annotations

import math

import numpy as np
import pytest

from streams.core.patterns import DimensionMismatch, Learned, PatternConfig, SpaceMemory, space_memory


def stream(k: int, n: int, dim: int, kappa: float, seed: int,
           family: float = 0.0) -> list[tuple[str, np.ndarray, float]]:
    """``n`` records of ``k`` groups whose members sit at ~``kappa`` to their centre; with ``family``,
    the centres of every third group share a direction (closer groups: a threshold has a best cut).
    Event times repeat and run late now and then."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if family:
        shared = rng.normal(size=(3, dim))
        centres += family * shared[np.arange(k) % 3] / np.linalg.norm(shared, axis=1, keepdims=True)[np.arange(k) % 3]
    labels = rng.integers(0, k, size=n)
    noise = rng.normal(size=(n, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = (centres[labels] / np.linalg.norm(centres[labels], axis=1, keepdims=True)
         + math.sqrt(1.0 / kappa**2 - 1.0) * noise).astype(np.float32)
    ts = 1000.0 + np.arange(n) - rng.integers(0, 4, size=n)
    return [(f"e{i % (n - 7)}", x[i], float(ts[i])) for i in range(n)]  # the last 7 ids come again


def learned_bits(r: Learned) -> tuple:
    """Every field of a Learned, arrays as bytes (Pattern's == is bitwise already)."""
    sampled = None if r.sampled is None else (r.sampled[0], r.sampled[1].tobytes(), r.sampled[2])
    return (r.pattern_id, r.similarity, r.confidence, r.new, r.changed, r.event, r.evicted, r.merged,
            r.change_events, r.space_changed, sampled)


def memory_bits(m: SpaceMemory) -> tuple:
    space = m.space_state()
    return (
        [p.to_state() | {"centroid": p.centroid.tobytes()} for p in m.patterns()],
        space | {"mu": space["mu"].tobytes()},
        [v.tobytes() for v in m.calibration_sample()],
        m.calibration_sample_patterns(),
        m.records,
        m.now,
    )


def check_rows(m: SpaceMemory) -> None:
    """Each live row is its pattern's matching-space row, bit for bit, as learn_one keeps them."""
    assert len(m._row_ids) == len(m)
    for pid, row in m._row_of.items():
        a, w = space_memory.centred_row(m.get(pid).centroid, m._mu64, m._h2)
        assert m._row_ids[row] == pid and m._mat[row].tobytes() == a.tobytes() and m._w[row] == w
    assert m._screen is None  # a finished batch holds no product


@pytest.fixture(autouse=True)
def screen_small_spaces(monkeypatch):
    # The spaces here hold tens of rows: below space_memory._SCREEN_MIN_ROWS their records would each
    # take their own product, and the screens' products, renewals and retakes would go untested.
    monkeypatch.setattr(space_memory, "_SCREEN_MIN_ROWS", 0)


class Spy:
    """Counts what the batch screens had to follow: rows multiplied again for a record because
    they changed after the product, and products taken again because a refresh moved mu."""

    def __init__(self, monkeypatch) -> None:
        self.renewed = self.recentred = 0
        take = space_memory._Screen.take

        def counted_take(screen, m, i):
            if m._screen is screen and i < screen.stop:
                if m._mu64 is not screen.mu64:
                    self.recentred += 1
                else:
                    self.renewed += int((m._col[: len(m._row_ids)] < 0).sum())
            return take(screen, m, i)

        monkeypatch.setattr(space_memory._Screen, "take", counted_take)


def cuts(n: int, rng: np.random.Generator) -> list[int]:
    """Random batch sizes, from single records to more than one screen's 64."""
    out = []
    while sum(out) < n:
        out.append(int(rng.choice([1, 2, 5, 17, 63, 64, 65, 150])))
    return out


def assert_batches_equal_one_by_one(cfg: PatternConfig, items, split_seeds) -> tuple[list[Learned], list[float]]:
    """learn_one over ``items``, and learn_many over the whole stream and over random cuts of it;
    returns learn_one's results and the threshold after each record."""
    one, expected, thresholds = SpaceMemory("s", cfg), [], []
    for item in items:
        expected.append(one.learn_one(*item))
        thresholds.append(one.threshold)
    want = [learned_bits(r) for r in expected]
    plans = [[len(items)]] + [cuts(len(items), np.random.default_rng(s)) for s in split_seeds]
    for sizes in plans:
        many, got, i = SpaceMemory("s", cfg), [], 0
        for size in sizes:
            got += many.learn_many(items[i : i + size])
            i += size
        assert len(got) == len(items)
        for k, (g, w) in enumerate(zip((learned_bits(r) for r in got), want)):
            assert g == w, f"record {k} (batches {sizes})"
        assert memory_bits(many) == memory_bits(one)
        check_rows(many)
    return expected, thresholds


CASES = {
    # The strict start, then an early choice at 64 records, then the full sample's choice.
    "calibrated, 768-d, early choice": (PatternConfig(), dict(k=12, n=320, dim=768, kappa=0.85, family=0.7)),
    # Families of groups: the choice at the sample's fill (256) consolidates the warm-up's patterns.
    "calibrated, 768-d, consolidation": (PatternConfig(), dict(k=12, n=320, dim=768, kappa=0.85, family=1.0)),
    "calibrated, 12-d, consolidation and evictions": (PatternConfig(max_patterns=16),
                                                     dict(k=12, n=320, dim=12, kappa=0.85)),
    # Pinned: low merge thresholds, a full memory and a refresh every few records.
    "pinned, 4-d, merges": (PatternConfig(match_threshold=0.8, merge_threshold=0.6, max_patterns=8, center_refresh=8),
                            dict(k=6, n=300, dim=4, kappa=0.9)),
    "pinned, 768-d, merges and evictions": (PatternConfig(match_threshold=0.6, merge_threshold=0.5, max_patterns=16,
                                                          center_refresh=8), dict(k=12, n=300, dim=768, kappa=0.75)),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_learn_many_is_learn_one_in_order(monkeypatch, case, seed):
    cfg, shape = CASES[case]
    spy = Spy(monkeypatch)
    out, thresholds = assert_batches_equal_one_by_one(cfg, stream(seed=seed, **shape), split_seeds=[seed, 10 + seed])
    # The stream did what the case is about, and the screens had to follow it.
    assert sum(len(r.merged) for r in out) > 0 and spy.renewed > 0 and spy.recentred > 0
    chosen = [i for i in range(1, len(out)) if thresholds[i] != thresholds[i - 1]]
    if case.startswith("calibrated"):
        assert chosen, "the space chose its threshold within the stream"
    if "early choice" in case:
        assert chosen[0] < 255
    if "consolidation" in case:
        assert len(out[255].merged) >= 3  # the choice at the full sample merged several patterns at once
    if "evictions" in case:
        assert sum(len(r.evicted) for r in out) > 20


def test_a_batch_sees_what_the_caller_changed_between_its_records():
    """learn_iter: the shell evicts between records to stay within its limits; the next record
    of the batch is decided against the memory as that left it."""
    cfg = PatternConfig(match_threshold=0.7, merge_threshold=0.8, max_patterns=40, center_refresh=16)
    items = stream(k=20, n=200, dim=64, kappa=0.8, seed=4)
    rng = np.random.default_rng(4)
    evict_after = set(rng.choice(len(items), 40, replace=False).tolist())

    one, expected = SpaceMemory("s", cfg), []
    for i, item in enumerate(items):
        expected.append(learned_bits(one.learn_one(*item)))
        if i in evict_after:
            expected.append([p.pattern_id for p in one.evict(2)])

    many, got = SpaceMemory("s", cfg), []
    for start in range(0, len(items), 50):
        for i, r in enumerate(many.learn_iter(items[start : start + 50]), start=start):
            got.append(learned_bits(r))
            if i in evict_after:
                got.append([p.pattern_id for p in many.evict(2)])
                many.predict_one(items[i][1], k=3)  # reads nothing a batch holds

    assert got == expected
    assert memory_bits(many) == memory_bits(one)
    check_rows(many)


def test_an_interleaved_learn_one_is_seen_by_the_batch():
    cfg = PatternConfig(match_threshold=0.7, merge_threshold=0.8, max_patterns=30, center_refresh=16)
    items = stream(k=10, n=120, dim=32, kappa=0.8, seed=5)
    one = SpaceMemory("s", cfg)
    expected = [learned_bits(one.learn_one(*item)) for item in items]
    many, got = SpaceMemory("s", cfg), []
    steps = many.learn_iter(items[::2])
    for i in range(0, len(items), 2):
        got.append(learned_bits(next(steps)))
        if i + 1 < len(items):
            got.append(learned_bits(many.learn_one(*items[i + 1])))
    assert got == expected and memory_bits(many) == memory_bits(one)


def bad_batches(dim: int) -> list[tuple[list, type[Exception], str]]:
    good = [(f"e{i}", np.ones(dim) + i * np.eye(dim)[i % dim], 10.0 + i) for i in range(5)]
    return [
        (good[:3] + [("x", np.zeros(dim), 1.0)] + good[3:], ValueError, "zero vector"),
        (good[:2] + [("x", np.ones(dim + 1), 1.0)], DimensionMismatch, "dimension mismatch"),
        (good + [("x", [np.nan] * dim, 1.0)], ValueError, "finite"),
        (good[:1] + [("x", np.ones((2, dim)), 1.0)], ValueError, "1-D"),
        (good[:4] + [("x", np.ones(dim), math.inf)], ValueError, "ts must be finite"),
        # The first bad item wins, in learn_one's order within an item (its ts before its vector).
        (good[:1] + [("x", np.zeros(dim), math.nan), ("y", np.ones(dim + 1), 1.0)], ValueError, "ts must be finite"),
    ]


@pytest.mark.parametrize("warm", [False, True])
def test_an_invalid_item_raises_what_learn_one_would_with_nothing_learned(warm):
    dim = 6
    for items, error, message in bad_batches(dim):
        m = SpaceMemory("s", PatternConfig(match_threshold=0.8))
        if warm:
            m.learn_many([(f"w{i}", np.arange(dim) + i, float(i)) for i in range(1, 20)])
        before = memory_bits(m)
        with pytest.raises(error, match=message):
            m.learn_many(items)
        assert memory_bits(m) == before and m.dim == (dim if warm else None)
        one = SpaceMemory("s", PatternConfig(match_threshold=0.8))
        if warm:
            one.learn_many([(f"w{i}", np.arange(dim) + i, float(i)) for i in range(1, 20)])
        with pytest.raises(error, match=message):
            for item in items:
                one.learn_one(*item)


def test_an_empty_batch_learns_nothing():
    m = SpaceMemory("s", PatternConfig())
    assert m.learn_many([]) == [] and m.dim is None and m.records == 0


@pytest.mark.parametrize("left", [3, 30])
def test_a_batch_outlives_more_changes_between_its_records_than_its_product_has_room_for(left):
    """Hundreds of rows created between two records of a batch: the product is taken again, for a
    window of the batch's last records too small for a product (3) and for one large enough (30)."""
    # Not centred: no refresh, so no retake for a new mu.
    cfg = PatternConfig(match_threshold=0.9, merge_threshold=2.0, max_patterns=1000, centering=False)
    items = stream(k=6, n=40 + left, dim=48, kappa=0.95, seed=6)
    others = stream(k=300, n=300, dim=48, kappa=0.99, seed=7)
    others = [(f"o{i}", v, ts) for i, (_, v, ts) in enumerate(others)]
    cut = len(items) - left

    one = SpaceMemory("s", cfg)
    expected = [learned_bits(one.learn_one(*item)) for item in items[:cut]]
    expected += [learned_bits(one.learn_one(*item)) for item in others]
    expected += [learned_bits(one.learn_one(*item)) for item in items[cut:]]

    many, got = SpaceMemory("s", cfg), []
    steps = many.learn_iter(items)
    got += [learned_bits(next(steps)) for _ in range(cut)]
    before = len(many)
    got += [learned_bits(many.learn_one(*item)) for item in others]
    assert len(many) - before > 2 * 64 + 8  # more new rows than a product keeps room for
    got += [learned_bits(r) for r in steps]
    assert got == expected and memory_bits(many) == memory_bits(one)
    check_rows(many)
