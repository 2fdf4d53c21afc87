"""The pattern store over plain dicts (its tables), and the pure limit arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

from streams.core.resilience.limits import Limits, crossed_interval, evictions_needed
from streams.core.patterns import PatternConfig
from schemas.state import PatternPage, SpaceState
from streams.state.patterns import SAMPLE_BLOCK, PatternStore, page_key, pattern_key, sample_block_key

MB = 1024 * 1024


def stream(n: int, groups: int, dim: int = 16, seed: int = 0, spread: float = 0.05):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    out = []
    for i in range(n):
        g = int(rng.integers(groups))
        out.append((f"e{i}", (centres[g] + rng.normal(scale=spread, size=dim)).astype(np.float32), 1000.0 + i))
    return out


def run(store: PatternStore, records, space="s"):
    results = []
    for event_id, vec, ts in records:
        learned, change = store.learn(store.space(space), event_id, vec, ts)
        results.append((learned.pattern_id, learned.new, [(p.pattern_id, e) for p, e in change.events], change.removed))
    return results


def test_evictions_needed_is_zero_below_thresholds_and_bounded_above():
    limits = Limits(cleanup_patterns=100, cleanup_memory_bytes=80 * MB, max_evictions_per_record=8)
    assert evictions_needed(100, 1 * MB, limits) == 0
    assert evictions_needed(101, 1 * MB, limits) == 8          # toward 90, at most 8 at once
    assert evictions_needed(95, 1 * MB, limits) == 0           # below the threshold: hysteresis
    assert evictions_needed(0, 0, limits) == 0


def test_memory_thresholds_soft_and_hard():
    limits = Limits(max_memory_bytes=100 * MB, cleanup_memory_bytes=80 * MB, cleanup_patterns=10_000,
                    max_evictions_per_record=4)
    # 1 MB per pattern: 85 patterns are over the 80 MB cleanup threshold, target 72.
    assert evictions_needed(85, 85 * MB, limits) == 4
    # 110 patterns are 10 MB over the hard budget: those 10 go at once, beyond the per-record bound
    # of 4; the rest of the way to the cleanup target follows on later records.
    assert evictions_needed(110, 110 * MB, limits) == 10


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(cleanup_memory_bytes=200 * MB, max_memory_bytes=100 * MB)
    with pytest.raises(ValueError):
        Limits(cleanup_target=0)


def test_crossed_interval_uses_event_time_boundaries():
    assert crossed_interval(86399.0, 86400.0, 86400.0)
    assert not crossed_interval(86400.0, 172799.0, 86400.0)
    assert not crossed_interval(None, 5.0, 86400.0)


def test_store_persists_everything_needed_to_continue_identically():
    cfg = PatternConfig(center_warmup=4, center_refresh=16, merge_threshold=0.9, max_patterns=12)
    limits = Limits(cleanup_patterns=10, max_evictions_per_record=2)
    records = stream(400, 20, seed=3, spread=0.3)

    reference = run(PatternStore({}, {}, cfg, limits), records)

    patterns, spaces = {}, {}
    first = run(PatternStore(patterns, spaces, cfg, limits), records[:170])
    # A new worker: nothing cached, only the tables.
    rest = run(PatternStore(patterns, spaces, cfg, limits), records[170:])
    assert first + rest == reference
    assert any(removed for *_, removed in reference), "the stream exercised evictions"


def test_tables_hold_exactly_the_live_patterns():
    cfg = PatternConfig(max_patterns=8)
    limits = Limits(cleanup_patterns=6, max_evictions_per_record=1)
    patterns, spaces = {}, {}
    store = PatternStore(patterns, spaces, cfg, limits)
    run(store, stream(300, 15, seed=4, spread=0.05))
    memory = store.space("s")
    assert len(memory) <= 6
    assert set(patterns) == {pattern_key("s", pid) for pid in memory.pattern_ids()}
    # The calibration sample: every record, up to its size, in blocks as it filled.
    assert len(memory.calibration_sample()) == min(300, cfg.calibration_sample)
    samples = {sample_block_key("s", n) for n in range(-(-len(memory.calibration_sample()) // SAMPLE_BLOCK))}
    assert set(spaces) == {"s"} | samples | {page_key("s", n) for n in range(SpaceState.decode(spaces["s"]).pages)}
    listed = {pid for k, v in spaces.items() if k != "s" and k not in samples for pid in PatternPage.decode(v).pattern_ids}
    assert listed == set(memory.pattern_ids()), "the pages list exactly the live patterns"


def test_events_report_evictions_with_a_tombstone():
    cfg = PatternConfig(max_patterns=50)
    limits = Limits(cleanup_patterns=3, max_evictions_per_record=5)
    store = PatternStore({}, {}, cfg, limits)
    results = run(store, stream(40, 10, seed=5, spread=0.01))
    evicted = [(pid, removed) for *_, events, removed in results for pid, e in events if e == "evicted"]
    assert evicted, "cleanup evicted something"
    for pid, removed in evicted:
        assert pid in removed


def test_constraints_the_cleanup_cannot_restore_raise_before_anything_is_written():
    from streams.core.resilience.limits import ResourceConstraintError, check_constraints

    patterns, spaces = {}, {}
    store = PatternStore(patterns, spaces, PatternConfig(), Limits(max_pattern_size=8))
    with pytest.raises(ResourceConstraintError, match="max_pattern_size"):
        store.learn(store.space("s"), "e0", np.ones(16, dtype=np.float32), 1.0)
    assert patterns == {} and spaces == {}

    # A budget smaller than the space's fixed overhead: no eviction can restore it.
    tiny = Limits(max_memory_bytes=1024, cleanup_memory_bytes=512)
    store = PatternStore(patterns, spaces, PatternConfig(), tiny)
    with pytest.raises(ResourceConstraintError, match="max_memory_bytes") as info:
        store.learn(store.space("s"), "e0", np.ones(16, dtype=np.float32), 1.0)
    assert info.value.limit == 1024 and info.value.value > 1024
    assert patterns == {} and spaces == {}

    check_constraints(Limits(max_optimizations=2), optimizations=2)
    with pytest.raises(ResourceConstraintError, match="max_optimizations"):
        check_constraints(Limits(max_optimizations=2), optimizations=3)


def test_a_new_pattern_rewrites_one_page_not_every_id_of_the_space():
    from streams.state.patterns import PAGE_SIZE

    class Sizes(dict):
        def __init__(self):
            super().__init__()
            self.written: list[int] = []

        def __setitem__(self, key, value):
            self.written.append(len(value))
            super().__setitem__(key, value)

    spaces = Sizes()
    cfg = PatternConfig(max_patterns=5000)
    store = PatternStore({}, spaces, cfg, Limits(cleanup_patterns=5000))
    rng = np.random.default_rng(11)
    for i in range(3 * PAGE_SIZE):  # every record a new pattern: far apart random directions
        store.learn(store.space("s"), f"e{i}", rng.normal(size=64).astype(np.float32), float(i))
    assert len(store.space("s")) > 2 * PAGE_SIZE
    page_bytes = len(PatternPage(tuple(f"p-{i:016x}" for i in range(PAGE_SIZE))).encode())
    # Space records carry the centring mean (64 floats); no write is ever near the size of all ids.
    assert max(spaces.written) <= page_bytes + 2048
    assert len(store.space("s")) * 20 > 2 * (page_bytes + 2048)


def test_a_change_names_what_each_survivor_absorbed_through_chains():
    from streams.state.patterns import Change

    change = Change(merged=(("a", "b"), ("c", "a"), ("d", "e")))
    assert change.absorbed_by("c") == ("b", "a")
    assert change.absorbed_by("d") == ("e",)
    assert change.absorbed_by("a") == () and change.absorbed_by("x") == ()


def test_the_calibration_sample_is_written_in_blocks_as_it_fills_and_restores_from_either_layout():
    from streams.state.patterns import sample_key

    cfg = PatternConfig(calibration_sample=40, calibration_warmup=32)
    records = stream(150, 6, seed=11, spread=0.3)
    patterns, spaces = {}, {}
    reference = run(PatternStore(patterns, spaces, cfg), records)
    # The 40 slots in 3 blocks (16, 16, 8); a replacement since is a key of its own.
    assert {k for k in spaces if "\x1fb" in k} == {sample_block_key("s", n) for n in range(3)}
    replaced = {k for k in spaces if "\x1fk" in k}
    assert replaced and replaced <= {sample_key("s", slot) for slot in range(40)}

    # A new worker every 7 records (mid-block too): the same results, and the same bytes in the tables.
    p2, s2 = {}, {}
    again = []
    for i in range(0, len(records), 7):
        again += run(PatternStore(p2, s2, cfg), records[i:i + 7])
    assert again == reference and p2 == patterns and s2 == spaces

    # A state written before the blocks (a key per slot), mid-fill: this version reads it, then fills on.
    p3, s3 = {}, {}
    first = run(PatternStore(p3, s3, cfg), records[:27])
    store = PatternStore(p3, s3, cfg)
    sample = store.space("s").calibration_sample()
    of = store.space("s").calibration_sample_patterns()
    from schemas.state import encode_pattern_state

    for key in [k for k in s3 if "\x1fb" in k]:
        del s3[key]
    for slot, (vector, pid) in enumerate(zip(sample, of)):
        s3[sample_key("s", slot)] = encode_pattern_state({"vector": vector, "pattern": pid})
    assert first + run(PatternStore(p3, s3, cfg), records[27:]) == reference
