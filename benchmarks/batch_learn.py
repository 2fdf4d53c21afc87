"""learn_one vs learn_many, in process: microseconds per record of the same records, same run.

Two streams of 768-d records:

- `throughput`: the records of benchmarks/throughput.py (`common.stream`: 1,000 groups over 8
  spaces, records cycling through them), from empty memories;
- `restored`: one space restored with --sizes patterns (1,000 and 10,000; recognition_latency.py's
  set-up, pinned at 0.8), then noisy copies of them, every record a join: a full, settled space.

Each is learned record by record (`learn_one`) and in batches (`learn_many`). A batch is what the
worker's is: --batch records in stream order, each space's of them learned together (in
`throughput`, ~8 of each of the 8 spaces). The two ways take turns batch by batch, each into its
own memories, so that a busy machine slows both alike; the figure is CPU time (single-threaded
BLAS, as the worker runs it). The results of the two are checked to be equal.

    python benchmarks/batch_learn.py [--records 20000] [--batch 64] [--sizes 1000,10000]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the worker (streams.ops.cli), before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common import save, stream  # noqa: E402  (sets sys.path)
from streams.core.patterns import Pattern, PatternConfig, SpaceMemory, confidence  # noqa: E402


def throughput_records(records: int, dim: int, spaces: int, patterns: int) -> list[tuple[str, tuple]]:
    return [(f.space, (f.id, f.vector, f.ts)) for f in stream(records, dim, spaces, patterns)]


def restored(patterns: int, dim: int, records: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((patterns, dim), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    cfg = PatternConfig(max_patterns=patterns, match_threshold=0.8)  # a settled space: noisy copies (~0.88) join
    conf = confidence(10, 0.9, cfg)
    states = [Pattern(f"p{i:07d}", 10, c[i], 9.0, conf, float(i), float(i)) for i in range(patterns)]
    src = rng.integers(0, patterns, size=records)
    items = [(f"e{j}", c[s] + rng.normal(scale=0.02, size=dim).astype(np.float32), 1e9 + j) for j, s in enumerate(src)]

    def fresh(space: str) -> SpaceMemory:
        m = SpaceMemory(space, cfg)
        m.restore(states, {"mu": c.mean(axis=0), "mu_n": 10 * patterns})  # centred, not due a refresh
        return m

    return fresh, [("bench", item) for item in items]


def measure(name: str, fresh, records: list[tuple[str, tuple]], args) -> dict:
    """CPU per record of both ways, paired: each batch of records is learned one way, then the other
    (in turns, which first), each into its own memories, so a busy machine slows both alike."""
    n = len(records)
    spaces = sorted({space for space, _ in records})
    memories = {way: {s: fresh(s) for s in spaces} for way in ("learn_one", "learn_many")}
    out = {way: {s: [] for s in spaces} for way in memories}
    spent = dict.fromkeys(memories, 0.0)
    for k, i in enumerate(range(0, n, args.batch)):
        runs: dict[str, list] = {}  # each space's records of the batch, as the worker applies them
        for space, item in records[i : i + args.batch]:
            runs.setdefault(space, []).append(item)
        for way in ("learn_one", "learn_many")[:: 1 if k % 2 else -1]:
            mems, got = memories[way], out[way]
            t = time.process_time()
            if way == "learn_one":
                for space, items in runs.items():
                    got[space] += [mems[space].learn_one(*item) for item in items]
            else:
                for space, items in runs.items():
                    got[space] += mems[space].learn_many(items)
            spent[way] += time.process_time() - t
    summary = {way: ({s: [(r.pattern_id, r.similarity, r.new, r.merged) for r in rs] for s, rs in out[way].items()},
                     {s: m.patterns() for s, m in memories[way].items()}) for way in memories}
    assert summary["learn_one"] == summary["learn_many"], "learn_many must give learn_one's results"
    one, many = (spent[way] * 1e6 / n for way in ("learn_one", "learn_many"))
    row = {"records": n, "spaces": len(spaces), "us_per_record_learn_one": round(one, 1),
           "us_per_record_learn_many": round(many, 1), "ratio_one_to_many": round(one / many, 2),
           "patterns_after": sum(len(m) for m in memories["learn_many"].values())}
    print(f"{name:>10}: learn_one {one:7.1f} us/record, learn_many({args.batch}) {many:7.1f} us/record,"
          f" {one / many:.2f}x ({n} records, {row['patterns_after']} patterns after)")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--spaces", type=int, default=8)
    ap.add_argument("--patterns", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sizes", default="1000,10000", help="patterns of the restored space")
    args = ap.parse_args()
    started = time.perf_counter()
    throughput = measure("throughput", lambda s: SpaceMemory(s, PatternConfig(max_patterns=max(1000, args.patterns))),
                         throughput_records(args.records, args.dim, args.spaces, args.patterns), args)
    full = {}
    for size in (int(s) for s in args.sizes.split(",")):
        fresh, spaces = restored(size, args.dim, args.records // 10)
        full[str(size)] = measure(f"{size:,}", fresh, spaces, args)
    save("batch_learn", {
        "params": vars(args), "cpu": "process_time, the two ways in turns batch by batch",
        "throughput_stream": throughput, "restored_by_patterns": full,
        "elapsed_s": round(time.perf_counter() - started, 1),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
