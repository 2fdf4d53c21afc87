"""Memory footprint and cleanup pauses of the pattern memory, in process (no broker).

1. RSS growth from 0 to --patterns (10,000) patterns of --dim (768): well-separated random unit
   vectors (nearly orthogonal at 768 dims, so every record creates a pattern) learned one by one,
   with PatternConfig(max_patterns=--patterns) and Limits whose cleanup thresholds and memory
   budgets are out of reach. Each variant runs in a fresh child process, so none inherits the
   allocator state of another; RSS is read with psutil after gc.collect() before the first record
   and at 1k, 2k, 5k and 10k patterns. Before the first reading the input vectors exist and a
   throwaway subject of the same variant has learned 50 records and been dropped (then
   malloc_trim), so one-time costs (first-use buffers and caches; warmup_and_trim_rss_change_bytes)
   are not charged to the patterns:

   - store:  PatternStore over plain dicts, so the serialized table values (what a worker's RocksDB
             holds on disk) are in RSS too;
   - store_compact: the same, but the dicts keep an exact-size copy of each value. orjson >= 3.12
             returns bytes whose allocation is far larger than their length (~63 KB behind a 4.4 KB
             pattern state here; ijl/orjson#483, home-assistant/core#181513 trim it the same way),
             and a plain dict keeps that whole allocation, while RocksDB copies only the bytes;
   - core:   SpaceMemory.learn_one alone;
   - naive:  the baseline, a Python dict of patterns each holding its centroid as a Python list of
             floats (what a straightforward port of the original design keeps);
   - the theoretical minimum, patterns x dim x 4 bytes of float32 centroids (computed).

   Beside RSS: the core's own memory_estimate_bytes() and the bytes of the serialized tables.

2. Cleanup pause: default PatternConfig and Limits (cleanup above 800 patterns toward 720, at most
   64 evictions per record). Distinct patterns stream through PatternStore.learn, so the space
   crosses 800 again and again; every learn call is timed with perf_counter_ns and split by whether
   its Change has "evicted" events. The same stream again with max_evictions_per_record=1000 (an
   unbounded cleanup) is the baseline for the worst pause. Bounded and unbounded runs alternate
   over --cleanup-rounds rounds (the machine is shared: background load then hits both alike);
   samples are pooled, and each round's worst evicting call is kept. Streaming one record at a
   time, a space only ever overshoots by one pattern (801 -> 720: 81 evictions, 64 with the
   bound), so the bound barely bites there; an overshoot case shows where it does: a space
   reopened at 1,000 patterns under the default limits (281 to shed).

    python benchmarks/memory.py [--patterns 10000] [--dim 768] [--cleanup-records 10000]
                                [--cleanup-rounds 5] [--overshoot-trials 20]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import subprocess
import sys
import time

import numpy as np
import orjson
import psutil

from common import percentiles, save  # noqa: E402  (sets sys.path)
from streams.core.resilience.limits import Limits
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.state.patterns import PatternStore

MB = 1024 * 1024
GOAL_MB = 100.0  # the original design: < 100 MB RSS growth at 10,000 patterns x 768
CHECKPOINTS = (1000, 2000, 5000, 10000)
VARIANTS = ("core", "store", "store_compact", "naive")
WARMUP_RECORDS = 50
SPACE = "bench"
# Event time: a whole cleanup interval (one day) past a boundary, so no periodic stale sweep fires.
TS0 = 86400.0 * 11574 + 1.0


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux


# -- part 1: one variant per child process ----------------------------------------------------


class CompactDict(dict):
    """A table that keeps exact-size copies of its values, as RocksDB keeps only their bytes."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, bytes(memoryview(value)))


class Subject:
    """One variant's pattern holder, learning records one by one."""

    def __init__(self, variant: str, n: int, space: str) -> None:
        self.variant, self.space = variant, space
        cfg = PatternConfig(max_patterns=n)
        huge = 1 << 40
        limits = Limits(max_memory_bytes=huge, cleanup_memory_bytes=huge, cleanup_patterns=2 * n)
        table = CompactDict if variant == "store_compact" else dict
        self.patterns_table, self.spaces_table = table(), table()
        self.store = None
        self.memory = None
        if variant.startswith("store"):
            self.store = PatternStore(self.patterns_table, self.spaces_table, cfg, limits)
            self.memory = self.store.space(space)
        elif variant == "core":
            self.memory = SpaceMemory(space, cfg)
        self.naive: dict = {}
        self.created = 0

    def learn(self, i: int, v: np.ndarray) -> None:
        if self.store is not None:
            learned, _ = self.store.learn(self.memory, f"e{i}", v, TS0 + i)
            self.created += learned.new
        elif self.memory is not None:
            self.created += self.memory.learn_one(f"e{i}", v, TS0 + i).new
        else:  # naive: a pattern record per input, centroid as a list of Python floats
            u = v / np.linalg.norm(v)
            pid = f"{self.space}/p{i:07d}"
            self.naive[pid] = {"pattern_id": pid, "count": 1, "centroid": u.tolist(), "similarity_sum": 1.0,
                               "confidence": 0.18, "created_ts": TS0 + i, "last_ts": TS0 + i, "related": []}
            self.created += 1

    def __len__(self) -> int:
        return len(self.memory) if self.memory is not None else len(self.naive)

    def table_bytes(self) -> int:
        return sum(len(k) + len(v) for t in (self.patterns_table, self.spaces_table) for k, v in t.items())


def child_rss(variant: str, n: int, dim: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng, n, dim)
    checkpoints = sorted({c for c in CHECKPOINTS if c < n} | {n})
    # Warm-up on a throwaway subject, so one-time costs (BLAS buffers, first-use caches) are in the
    # baseline: they are paid once per process, whatever the number of patterns.
    before_warmup = rss()
    warm = Subject(variant, n, "warmup")
    for i, v in enumerate(unit_rows(rng, WARMUP_RECORDS, dim)):
        warm.learn(i, v)
    del warm, v
    trim_heap()  # give the throwaway subject's freed heap back, so the patterns cannot reuse it unseen
    base = rss()
    subject = Subject(variant, n, SPACE)
    samples = []
    done = 0
    started = time.perf_counter()
    for cp in checkpoints:
        while done < cp:
            subject.learn(done, vectors[done])
            done += 1
        row = {"patterns": cp, "rss_growth_bytes": rss() - base}
        if subject.memory is not None:
            row["memory_estimate_bytes"] = subject.memory.memory_estimate_bytes()
        if subject.store is not None:
            row["table_bytes"] = subject.table_bytes()
        samples.append(row)
    elapsed = time.perf_counter() - started
    # Only at the end (trimming earlier would change what the later readings see): how much of
    # the growth is free heap the allocator kept (transient temporaries) rather than live data.
    peak = peak_rss() - base
    trim_heap()
    samples[-1]["rss_growth_after_malloc_trim_bytes"] = rss() - base
    return {"variant": variant, "records": n, "created": int(subject.created), "live_patterns": len(subject),
            "baseline_rss_bytes": base, "warmup_records": WARMUP_RECORDS,
            "warmup_and_trim_rss_change_bytes": base - before_warmup, "peak_rss_growth_bytes": peak,
            "learn_s": round(elapsed, 2), "samples": samples}


def run_child(variant: str, args) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", variant, "--patterns", str(args.patterns),
         "--dim", str(args.dim), "--seed", str(args.seed)],
        check=True, capture_output=True)
    return orjson.loads(out.stdout.splitlines()[-1])


def rss_part(args) -> dict:
    runs = {}
    for variant in VARIANTS:
        t = time.perf_counter()
        runs[variant] = r = run_child(variant, args)
        assert r["created"] == args.patterns == r["live_patterns"], f"{variant}: not every record made a pattern"
        print(f"  {variant:<13} done in {time.perf_counter() - t:.1f}s", flush=True)
    n, dim = args.patterns, args.dim
    minimum = n * dim * 4

    def last(v: str) -> dict:
        return runs[v]["samples"][-1]

    growth = {v: last(v)["rss_growth_bytes"] for v in runs}
    summary = {
        "theoretical_min_bytes": minimum,
        "theoretical_min_mb": round(minimum / MB, 2),
        **{f"{v}_rss_growth_mb": round(g / MB, 2) for v, g in growth.items()},
        **{f"{v}_bytes_per_pattern": round(g / n) for v, g in growth.items()},
        **{f"{v}_rss_growth_after_malloc_trim_mb": round(last(v)["rss_growth_after_malloc_trim_bytes"] / MB, 2)
           for v in runs},
        "core_memory_estimate_mb": round(last("core")["memory_estimate_bytes"] / MB, 2),
        "core_estimate_over_core_rss": round(last("core")["memory_estimate_bytes"] / growth["core"], 3),
        "core_estimate_over_core_rss_after_trim": round(
            last("core")["memory_estimate_bytes"] / last("core")["rss_growth_after_malloc_trim_bytes"], 3),
        "store_table_mb": round(last("store")["table_bytes"] / MB, 2),
        "store_table_bytes_per_pattern": round(last("store")["table_bytes"] / n),
        **{f"{v}_over_theoretical_min": round(g / minimum, 2) for v, g in growth.items()},
        "naive_over_core": round(growth["naive"] / growth["core"], 2),
        "naive_over_store": round(growth["naive"] / growth["store"], 2),
        "naive_over_store_compact": round(growth["naive"] / growth["store_compact"], 2),
    }
    goal = {"limit_mb": GOAL_MB, "why": "original design: < 100 MB RSS growth at 10,000 patterns x 768",
            "applies": n == 10_000 and dim == 768,
            "core_rss_growth_mb": summary["core_rss_growth_mb"],
            "store_rss_growth_mb": summary["store_rss_growth_mb"],
            "store_compact_rss_growth_mb": summary["store_compact_rss_growth_mb"],
            "met_core": summary["core_rss_growth_mb"] < GOAL_MB,
            "met_store": summary["store_rss_growth_mb"] < GOAL_MB,
            "met_store_compact": summary["store_compact_rss_growth_mb"] < GOAL_MB}
    return {"patterns": n, "dim": dim, "runs": runs, "summary": summary, "goal": goal}


# -- part 2: cleanup pauses ------------------------------------------------------------------


def stats_ms(samples_ns: list[int]) -> dict:
    if not samples_ns:
        return {"n": 0}
    s = np.asarray(samples_ns, dtype=np.float64) * 1e-9
    return percentiles(s) | {"max_ms": round(float(s.max()) * 1000.0, 4)}


BOUNDS = (("bounded", Limits().max_evictions_per_record), ("unbounded", 1000))


def cleanup_run(max_evictions: int, vectors: np.ndarray) -> dict:
    """One stream through a fresh store; raw per-call times (ns), split by kind."""
    store = PatternStore({}, {}, PatternConfig(), Limits(max_evictions_per_record=max_evictions))
    memory = store.space(SPACE)
    raw: dict[str, list] = {"evicting": [], "plain": [], "refresh": [], "filling": [], "evicted": [], "sizes": []}
    steady = False  # after the first cleanup
    gc.collect()
    started = time.perf_counter()
    for i, v in enumerate(vectors):
        mu_n = memory._mu_n  # a centring refresh (O(patterns x dim)) shows as a change of this
        t = time.perf_counter_ns()
        learned, change = store.learn(memory, f"e{i}", v, TS0 + i)
        dt = time.perf_counter_ns() - t
        assert learned.new, "a record joined a pattern: the stream is not distinct"
        k = sum(1 for _, e in change.events if e == "evicted")
        if k:
            steady = True
            raw["evicting"].append(dt)
            raw["evicted"].append(k)
        elif not steady:
            raw["filling"].append(dt)
        elif memory._mu_n != mu_n:
            raw["refresh"].append(dt)
        else:
            raw["plain"].append(dt)
        if steady:
            raw["sizes"].append(len(memory))
    raw["seconds"] = time.perf_counter() - started
    return raw


def summarize_cleanup(max_evictions: int, rounds: list[dict]) -> dict:
    pooled = {k: [x for r in rounds for x in r[k]] for k in ("evicting", "plain", "refresh", "filling", "evicted",
                                                             "sizes")}
    non_evicting = pooled["plain"] + pooled["refresh"]
    ev, ne = stats_ms(pooled["evicting"]), stats_ms(non_evicting)
    k = pooled["evicted"]
    return {
        "max_evictions_per_record": max_evictions, "rounds": len(rounds),
        "records_per_round": len(rounds[0]["plain"]) + sum(len(rounds[0][x]) for x in
                                                           ("evicting", "refresh", "filling")),
        "seconds_per_round": [round(r["seconds"], 2) for r in rounds],
        "evicting_calls": ev, "non_evicting_calls": ne,
        "evicting_max_ms_per_round": [round(max(r["evicting"]) / 1e6, 3) for r in rounds],
        "evicting_p99_ms_per_round": [round(float(np.percentile(r["evicting"], 99)) / 1e6, 3) for r in rounds],
        "non_evicting_p99_ms_per_round": [round(float(np.percentile(r["plain"] + r["refresh"], 99)) / 1e6, 3)
                                          for r in rounds],
        "non_evicting_max_ms_per_round": [round(max(r["plain"] + r["refresh"]) / 1e6, 3) for r in rounds],
        "non_evicting_without_refresh": stats_ms(pooled["plain"]),
        "non_evicting_with_centring_refresh": stats_ms(pooled["refresh"]),
        "filling_calls_before_first_cleanup": stats_ms(pooled["filling"]),
        "evictions_per_evicting_call": {"min": min(k), "max": max(k), "mean": round(float(np.mean(k)), 1)},
        "patterns_after_first_cleanup": {"min": min(pooled["sizes"]), "max": max(pooled["sizes"])},
        "evicting_over_non_evicting_p50": round(ev["p50_ms"] / ne["p50_ms"], 2),
    }


def overshoot_part(args, trials: int) -> dict:
    """A space far past the threshold at once: tables written with cleanup off up to max_patterns
    (1000), then reopened under default Limits (as after a worker restarts with tighter limits).
    The first records must shed 1001 - 720 = 281 patterns: all in one call when unbounded, 64 per
    record when bounded. The 16 learn calls after reopening are timed; trials alternate."""
    cfg = PatternConfig()
    rng = np.random.default_rng(args.seed + 2)
    fill = unit_rows(rng, cfg.max_patterns, args.dim)
    tables: tuple[dict, dict] = ({}, {})
    writer = PatternStore(*tables, cfg, Limits(cleanup_patterns=10 * cfg.max_patterns))
    memory = writer.space(SPACE)
    for i, v in enumerate(fill):
        writer.learn(memory, f"f{i}", v, TS0 + i)
    assert len(memory) == cfg.max_patterns
    follow = unit_rows(rng, 16, args.dim)
    acc = {label: {"first": [], "worst": [], "calls": [], "evicted": []} for label, _ in BOUNDS}
    for trial in range(trials):
        for label, bound in BOUNDS if trial % 2 == 0 else BOUNDS[::-1]:
            store = PatternStore(dict(tables[0]), dict(tables[1]), cfg, Limits(max_evictions_per_record=bound))
            mem = store.space(SPACE)  # restore, not timed
            gc.collect()
            times, ks = [], []
            for j, v in enumerate(follow):
                t = time.perf_counter_ns()
                _, change = store.learn(mem, f"g{j}", v, TS0 + cfg.max_patterns + j)
                times.append(time.perf_counter_ns() - t)
                ks.append(sum(1 for _, e in change.events if e == "evicted"))
            a = acc[label]
            a["first"].append(times[0])
            a["worst"].append(max(times))
            a["calls"].append(sum(k > 0 for k in ks))
            a["evicted"].append(sum(ks))
    out = {}
    for label, bound in BOUNDS:
        a = acc[label]
        out[label] = {"max_evictions_per_record": bound, "trials": trials,
                      "first_call": stats_ms(a["first"]), "worst_call_per_trial": stats_ms(a["worst"]),
                      "calls_with_evictions": int(np.median(a["calls"])), "evicted_per_trial": int(np.median(a["evicted"]))}
    out["unbounded_over_bounded_first_call_p50"] = round(
        out["unbounded"]["first_call"]["p50_ms"] / out["bounded"]["first_call"]["p50_ms"], 2)
    out["unbounded_over_bounded_worst_p50"] = round(
        out["unbounded"]["worst_call_per_trial"]["p50_ms"] / out["bounded"]["worst_call_per_trial"]["p50_ms"], 2)
    return out


def cleanup_part(args) -> dict:
    vectors = unit_rows(np.random.default_rng(args.seed + 1), args.cleanup_records, args.dim)
    raw: dict[str, list] = {label: [] for label, _ in BOUNDS}
    for r in range(args.cleanup_rounds):  # alternating, so background load hits both alike
        for label, bound in BOUNDS if r % 2 == 0 else BOUNDS[::-1]:
            raw[label].append(cleanup_run(bound, vectors))
            print(f"  round {r + 1}: {label:<9} (max_evictions_per_record={bound}) "
                  f"{raw[label][-1]['seconds']:.1f}s", flush=True)
    runs = {label: summarize_cleanup(bound, raw[label]) for label, bound in BOUNDS}
    b, u = runs["bounded"], runs["unbounded"]
    d = Limits()
    return {
        "limits": {"cleanup_patterns": d.cleanup_patterns, "cleanup_target": d.cleanup_target,
                   "max_evictions_per_record": d.max_evictions_per_record,
                   "baseline_max_evictions_per_record": 1000},
        "records_per_round": args.cleanup_records, "rounds": args.cleanup_rounds, "dim": args.dim, "runs": runs,
        "unbounded_over_bounded_evicting_p50": round(u["evicting_calls"]["p50_ms"] / b["evicting_calls"]["p50_ms"], 2),
        # Background load stretches whole rounds, so the tails are compared per round: the median
        # round, and the quietest round (the least disturbed estimate of the pause itself).
        **{f"{stat}_evicting_{tail}_ms": {label: round(float(fn(runs[label][f"evicting_{tail}_ms_per_round"])), 3)
                                          for label, _ in BOUNDS}
           for stat, fn in (("median_round", np.median), ("quietest_round", np.min)) for tail in ("p99", "max")},
        "unbounded_over_bounded_evicting_median_round_max": round(
            float(np.median(u["evicting_max_ms_per_round"])) / float(np.median(b["evicting_max_ms_per_round"])), 2),
        "unbounded_over_bounded_evicting_quietest_round_max": round(
            min(u["evicting_max_ms_per_round"]) / min(b["evicting_max_ms_per_round"]), 2),
        "overshoot": overshoot_part(args, args.overshoot_trials),
    }


# -- main ------------------------------------------------------------------------------------


def print_rss(part: dict) -> None:
    n, dim, s = part["patterns"], part["dim"], part["summary"]
    print(f"\n1. RSS growth, 0 -> {n:,} patterns x {dim} (each in a fresh process; MB = 2^20 bytes)")
    print(f"{'patterns':>9} | {'core RSS':>9} {'estimate':>9} | {'store RSS':>9} {'compact':>8} {'tables':>7} | "
          f"{'naive RSS':>9}")
    rows = zip(*(part["runs"][v]["samples"] for v in VARIANTS))
    for c, st, sc, nv in rows:
        print(f"{c['patterns']:>9,} | {c['rss_growth_bytes'] / MB:>9.1f} {c['memory_estimate_bytes'] / MB:>9.1f} | "
              f"{st['rss_growth_bytes'] / MB:>9.1f} {sc['rss_growth_bytes'] / MB:>8.1f} {st['table_bytes'] / MB:>7.1f} | "
              f"{nv['rss_growth_bytes'] / MB:>9.1f}")
    print(f"at {n:,}: theoretical minimum (float32 centroids) {s['theoretical_min_mb']} MB ({dim * 4} B/pattern)")
    for v, label in (("core", "SpaceMemory alone"), ("store", "PatternStore + dict tables"),
                     ("store_compact", "  ... tables exact-size"), ("naive", "naive dict of float lists")):
        print(f"  {label:<27} {s[f'{v}_rss_growth_mb']:>7.1f} MB  {s[f'{v}_bytes_per_pattern']:>6,} B/pattern  "
              f"x{s[f'{v}_over_theoretical_min']} of minimum  (after malloc_trim "
              f"{s[f'{v}_rss_growth_after_malloc_trim_mb']:.1f} MB; peak "
              f"{part['runs'][v]['peak_rss_growth_bytes'] / MB:.1f} MB; learned in {part['runs'][v]['learn_s']}s)")
    print(f"  core memory_estimate_bytes {s['core_memory_estimate_mb']} MB (x{s['core_estimate_over_core_rss']} "
          f"of its RSS growth, x{s['core_estimate_over_core_rss_after_trim']} after malloc_trim); serialized tables {s['store_table_mb']} MB ({s['store_table_bytes_per_pattern']:,} "
          f"B/pattern)")
    print(f"  naive / core x{s['naive_over_core']}, naive / store x{s['naive_over_store']}, "
          f"naive / store exact-size x{s['naive_over_store_compact']}")
    g = part["goal"]
    verdict = {True: "met", False: "NOT met"}
    print(f"goal < {g['limit_mb']:.0f} MB ({g['why']}): core {g['core_rss_growth_mb']} MB {verdict[g['met_core']]}; "
          f"with dict tables {g['store_rss_growth_mb']} MB {verdict[g['met_store']]}; with exact-size tables "
          f"{g['store_compact_rss_growth_mb']} MB {verdict[g['met_store_compact']]}")


def print_cleanup(part: dict) -> None:
    lim = part["limits"]
    print(f"\n2. Cleanup pauses: {part['records_per_round']:,} distinct records x {part['rounds']} alternating rounds "
          f"through PatternStore.learn, default config (cleanup above {lim['cleanup_patterns']} toward "
          f"{int(lim['cleanup_patterns'] * lim['cleanup_target'])}); ms per learn call, pooled over rounds")
    print(f"{'cleanup':>20} | {'calls':>5} {'p50':>6} {'p99':>6} {'max':>6} | {'max per round':<26} | evicted | "
          f"{'calls':>6} {'p50':>6} {'p99':>6} {'max':>6} | patterns")
    print(f"{'':>20} | {'-- evicting':<55}| {'-- not evicting (steady state)':<30} |")
    for label, r in part["runs"].items():
        e, ne, k, sz = (r["evicting_calls"], r["non_evicting_calls"], r["evictions_per_evicting_call"],
                        r["patterns_after_first_cleanup"])
        name = f"{label} (<= {r['max_evictions_per_record']})"
        per_round = " ".join(f"{x:.2f}" for x in r["evicting_max_ms_per_round"])
        print(f"{name:>20} | {e['n']:>5} {e['p50_ms']:>6.3f} {e['p99_ms']:>6.3f} {e['max_ms']:>6.3f} | {per_round:<26} | "
              f"{k['min']:>3}-{k['max']:<3} | {ne['n']:>6} {ne['p50_ms']:>6.3f} {ne['p99_ms']:>6.3f} {ne['max_ms']:>6.3f} | "
              f"{sz['min']}-{sz['max']}")
        rf, pl = r["non_evicting_with_centring_refresh"], r["non_evicting_without_refresh"]
        print(f"{'':>20}   not evicting per round: p99 {r['non_evicting_p99_ms_per_round']}, "
              f"max {r['non_evicting_max_ms_per_round']}")
        print(f"{'':>20}   not evicting: {pl['n']} plain p99 {pl['p99_ms']:.3f} max {pl['max_ms']:.3f}; {rf['n']} ran a "
              f"centring refresh (O(patterns x dim)): p50 {rf['p50_ms']:.3f} max {rf['max_ms']:.3f}")
    for stat in ("median_round", "quietest_round"):
        p99, mx = part[f"{stat}_evicting_p99_ms"], part[f"{stat}_evicting_max_ms"]
        print(f"evicting calls, {stat.replace('_', ' ')}: " + "; ".join(
            f"{label} p99 {p99[label]:.3f} max {mx[label]:.3f}" for label, _ in BOUNDS))
    print(f"unbounded / bounded evicting call: p50 x{part['unbounded_over_bounded_evicting_p50']}, "
          f"max: median round x{part['unbounded_over_bounded_evicting_median_round_max']}, "
          f"quietest round x{part['unbounded_over_bounded_evicting_quietest_round_max']}")
    o = part["overshoot"]
    print(f"overshoot: a space reopened at 1,000 patterns under default limits ({o['bounded']['trials']} alternating "
          f"trials, ms; worst = slowest of the 16 learn calls after reopening)")
    for label, _ in BOUNDS:
        r = o[label]
        print(f"{label:>20} | first call p50 {r['first_call']['p50_ms']:.3f} max {r['first_call']['max_ms']:.3f}; "
              f"worst p50 {r['worst_call_per_trial']['p50_ms']:.3f} max {r['worst_call_per_trial']['max_ms']:.3f} | "
              f"{r['evicted_per_trial']} evicted over {r['calls_with_evictions']} call(s)")
    print(f"unbounded / bounded (p50 over trials): first call x{o['unbounded_over_bounded_first_call_p50']}, "
          f"worst call x{o['unbounded_over_bounded_worst_p50']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patterns", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--cleanup-records", type=int, default=10_000)
    ap.add_argument("--cleanup-rounds", type=int, default=5)
    ap.add_argument("--overshoot-trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(orjson.dumps(child_rss(args.child, args.patterns, args.dim, args.seed)).decode())
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()
    print(f"1. RSS growth to {args.patterns:,} patterns x {args.dim}", flush=True)
    rss_result = rss_part(args)
    print(f"2. cleanup pauses: {args.cleanup_records:,} records x {args.cleanup_rounds} rounds", flush=True)
    cleanup_result = cleanup_part(args)
    total_s = time.perf_counter() - started
    print_rss(rss_result)
    print_cleanup(cleanup_result)
    load = {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]}
    print(f"\ntotal run time {total_s:.0f}s; load average (1, 5, 15 min) at start {load['start']}, end {load['end']}")

    save("memory", {
        "rss": rss_result,
        "cleanup_pause": cleanup_result,
        "goals": {"rss_growth_mb_at_10000x768": rss_result["goal"]},
        "notes": {
            "rss": "psutil RSS after gc.collect(), growth from a reading taken after the input vectors exist; "
                   "each variant in a fresh child process. store = SpaceMemory plus the PatternStore's dict "
                   "tables of serialized values (what a worker's RocksDB holds on disk); core = SpaceMemory alone; "
                   "store_compact = the same with exact-size copies of the values (orjson >= 3.12 returns bytes whose "
                   "allocation is ~14x their length here; a plain dict keeps it all, RocksDB copies only the bytes); "
                   "naive = dict of pattern dicts with the centroid as a list of Python floats.",
            "malloc_trim": "RSS growth at the last checkpoint is also read after glibc malloc_trim(0): the "
                           "difference is free heap the allocator kept after transient temporaries (centring "
                           "refresh blocks, encode buffers), not live data.",
            "cleanup": "perf_counter_ns around PatternStore.learn; 'steady state' = calls after the first "
                       "cleanup; gc stays enabled, as in a worker.",
        },
        "load_avg": load, "run_s": round(total_s, 1),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
