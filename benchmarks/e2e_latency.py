"""End-to-end latency through a real broker: from producing an audio feature to consuming its output.

The worker is a real `fms worker` process (RocksDB tables, changelogs); the baseline is the plain
aiokafka consume-and-produce loop from throughput.py, and the faust loop (faust_loop.py) that loop's
work as an agent in the worker's own app. All three read the same stream (768-dim vectors, 1,000
patterns over 8 spaces, common.stream) on their own topics, and are measured the same way:

- a producer publishes at a fixed offered rate (streams.ops.publish.publish with `rate`, which paces
  each send to its slot: a token bucket holding one token); each record's send time (time.time())
  is noted by event id and also carried in the record's `meta` as {"sent": ...};
- a consumer on the output topic (fms.recognitions for the worker, the baseline's own output topic)
  notes time.time() when each event id arrives; latency = arrival - send, same machine, same clock;
- per offered rate: p50/p90/p99/max latency, the achieved send and output rates, the backlog
  when the last record of the rate was sent (records sent but not yet output), and the 100 ms
  windows of send time where the tail came from (`slow_windows`). Each rate drains
  before the next starts. Beside them, the cores each process used and, read from the worker's
  /metrics, the garbage collections it paused for while the rate was offered; for the worker, the
  messages its records caused per input record (outputs and changelog, from the start of the rate
  to the start of the next, so that its last commits count).

Before measuring, 544 records a space (4,352 for 8) are published as fast as possible and their
outputs awaited, so that every pattern exists, every space is past its calibration phase, and
startup (worker recovery, consumer group joins) is excluded; the worker's first rate then waits for
the warm-up's commits, as each later rate waits for the commits of the rate before it.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python benchmarks/e2e_latency.py [--rates 250,500,1000] [--seconds 15]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from common import CpuSampler, broker, free_port, listener_pid, percentiles, save, stream  # noqa: E402  (sets sys.path)
import faust_loop  # noqa: E402
from throughput import baseline_loop, messages_written, worker_env
from streams.core.patterns import PatternConfig
from streams.ops.publish import publish
from streams.service.settings import Settings
from streams.service.topics import delete_topics, ensure_topics, kafka_client_options
from streams.ops.worker_process import WorkerProcess

GOAL = {"p99_ms": 50.0, "at_records_per_s": 1000}
# A space's calibration phase (streams.core.patterns.space_memory._maybe_calibrate) ends once its
# sample is full: the full choice at 256 records, regroups every 32 until 512. Spaces that cross it
# together stall the input together (seen: 8 spaces' choices, ~150 ms, in the first 0.3 s of the
# first rate). The warm-up takes every space past it, so that the rates measure the steady state;
# a new space's first minutes are the `--warmup 0` shape (e2e_latency_new_space.json).
_CFG = PatternConfig()
WARMUP_PER_SPACE = _CFG.calibration_sample + _CFG.calibration_regroup
# Kept up: when the last record of a rate was sent, less than this much input was still waiting.
KEPT_UP_BACKLOG_S = 0.25


class Arrivals:
    """Consumes an output topic from its beginning and notes when each event id first arrived.

    Its fetch long-poll is the worker's (settings.fetch_max_wait_ms), so the watcher adds no wait
    of its own that the worker's consumer would not.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.times: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(self.topic, **kafka_client_options(self.settings), group_id=None,
                                          auto_offset_reset="earliest", enable_auto_commit=False,
                                          fetch_max_wait_ms=self.settings.fetch_max_wait_ms)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    self.times.setdefault(orjson.loads(m.value)["event_id"], now)

    async def wait_for(self, ids: list[str], timeout: float, also: asyncio.Task | None = None) -> bool:
        """True once every id arrived; False after `timeout`. Raises if `also` (a producer loop) failed."""
        deadline = time.monotonic() + timeout
        while True:
            if all(i in self.times for i in ids):
                return True
            for task in (self._task, also):
                if task is not None and task.done():
                    task.result()  # raises its exception
                    if task is self._task:
                        raise RuntimeError(f"{self.topic}: watcher stopped")
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def send_paced(settings: Settings, feats, rate: float, sent: dict[str, float]) -> None:
    """publish() at `rate` (0: as fast as possible), noting each record's send time just before it is sent."""
    def stamped():
        for f in feats:
            now = time.time()
            sent[f.id] = now
            yield dataclasses.replace(f, meta={"sent": now})

    await publish(settings, settings.topic("audio-features"), stamped(), rate=rate)


def gc_pauses(url: str) -> dict[str, tuple[float, float]]:
    """The worker's `fms_gc_pause_seconds` from its /metrics: generation -> (collections, seconds)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fms_gc_pause_seconds":
            for sample in family.samples:
                at = {"fms_gc_pause_seconds_count": 0, "fms_gc_pause_seconds_sum": 1}.get(sample.name)
                if at is not None:
                    out.setdefault(sample.labels["generation"], [0.0, 0.0])[at] = sample.value
    return {g: (c, t) for g, (c, t) in out.items()}


def gc_between(before: dict, after: dict) -> dict:
    """Collections while a rate was offered: full ones (generation 2) apart, and all of them."""
    def delta(g: str, i: int) -> float:
        return after.get(g, (0.0, 0.0))[i] - before.get(g, (0.0, 0.0))[i]

    return {"full_collections": int(delta("2", 0)), "full_collection_ms": round(delta("2", 1) * 1000, 1),
            "all_collections_ms": round(sum(delta(g, 1) for g in after) * 1000, 1)}


async def measure(settings: Settings, arrivals: Arrivals, feats, rate: float, drain_s: float,
                  also: asyncio.Task | None, cpu: CpuSampler, worker_url: str | None = None) -> dict:
    sent: dict[str, float] = {}
    gc_before = await asyncio.to_thread(gc_pauses, worker_url) if worker_url else None
    offered_from = time.perf_counter()
    await send_paced(settings, feats, rate, sent)
    cores = cpu.cores_between(offered_from, time.perf_counter())  # while the rate was offered
    gc_row = gc_between(gc_before, await asyncio.to_thread(gc_pauses, worker_url)) if worker_url else None
    ids = [f.id for f in feats]
    first, last = sent[ids[0]], sent[ids[-1]]
    drained = await arrivals.wait_for(ids, drain_s, also)
    arrived = {i: arrivals.times[i] for i in ids if i in arrivals.times}
    window = last - first
    lat = np.array([arrived[i] - sent[i] for i in arrived])
    backlog = sum(1 for i in ids if arrived.get(i, float("inf")) > last)
    out_in_window = sum(1 for t in arrived.values() if first <= t <= last)
    sent_at = np.array([sent[i] for i in arrived])

    def p50_between(lo: float, hi: float) -> float | None:
        sel = lat[(sent_at >= lo) & (sent_at < hi)]
        return round(float(np.median(sel)) * 1000, 2) if sel.size else None

    stats = percentiles(lat) if lat.size else {}
    return {
        "offered_per_s": rate,
        "records": len(ids),
        "received": len(arrived),
        "sent_per_s": round((len(ids) - 1) / window, 1),
        "output_per_s": round(out_in_window / window, 1),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items() if k != "n"},
        "max_ms": round(float(lat.max()) * 1000, 2) if lat.size else None,
        "p50_ms_first_2s": p50_between(first, first + 2),
        "p50_ms_last_2s": p50_between(last - 2, last + 1),
        "backlog_at_end": backlog,
        "drain_s": round(max(arrived.values()) - last, 2) if drained else None,
        "kept_up": drained and backlog <= KEPT_UP_BACKLOG_S * rate,
        "slow_windows": slow_windows(sent_at - first, lat),
        "cpu": cores,
        **({"worker_gc": gc_row} if gc_row is not None else {}),
    }


def slow_windows(sent_s: np.ndarray, lat_s: np.ndarray, width_s: float = 0.1, most: int = 20) -> list:
    """Where the tail comes from: the `width_s` windows of send time whose slowest record took more
    than twice the rate's p90, as [start s from the rate's first send, slowest ms, records], in
    time order (at most `most`, the slowest kept). Windows that recur at the commit interval point
    at the commits (the waves streams.core.commit_pacing spreads); a run of them at the start of a
    rate, at work the rate's first records set off (a calibration phase the warm-up did not pass)."""
    if not lat_s.size:
        return []
    bar = 2.0 * float(np.percentile(lat_s, 90))
    window = (sent_s / width_s).astype(np.int64)
    slow = []
    for w in np.unique(window[lat_s > bar]):
        sel = lat_s[window == w]
        slow.append([round(float(w) * width_s, 2), round(float(sel.max()) * 1000, 1), int(sel.size)])
    return sorted(sorted(slow, key=lambda row: -row[1])[:most])


async def written_since(settings: Settings, run_id: str, before: dict[str, int] | None) -> dict[str, int]:
    """Messages in the run's topics other than the inputs (outputs and changelogs), per topic; with
    `before`, only those written since."""
    now = {topic: n for topic, n in (await messages_written(settings, run_id)).items()
           if not topic.endswith("audio-features")}
    return now if before is None else {topic: n - before.get(topic, 0) for topic, n in now.items()}


def commit_wait_s(settings: Settings) -> float:
    """Long enough for the worker to commit what it applied (it reads its interval from the environment)."""
    return float(os.environ.get("FMS_COMMIT_INTERVAL_S", settings.commit_interval_s)) + 0.5


async def run_phases(name: str, settings: Settings, arrivals: Arrivals, warm, chunks, rates, pids: dict,
                     also=None, worker_url: str | None = None, run_id: str | None = None) -> list[dict]:
    """Each rate in turn; with `run_id`, also the messages each rate's records caused (from the start
    of its rate to the start of the next, so that the commits of its last second count)."""
    t = time.perf_counter()
    await send_paced(settings, warm, 0, {})
    if not await arrivals.wait_for([f.id for f in warm], 180, also):
        raise TimeoutError(f"{name}: warm-up outputs did not all arrive in 180s")
    print(f"{name}: warm-up of {len(warm)} records done in {time.perf_counter() - t:.1f}s", flush=True)
    if run_id:
        # The warm-up's commits before the first rate, as each rate's before the next: a rate's
        # latency and messages are its own records'.
        await asyncio.sleep(commit_wait_s(settings))
    rows = []
    cpu = CpuSampler(pids)
    sampling = asyncio.create_task(cpu.run())
    try:
        counted = await written_since(settings, run_id, None) if run_id else None
        for rate, feats in zip(rates, chunks):
            row = await measure(settings, arrivals, feats, rate, drain_s=max(20.0, len(feats) / rate), also=also,
                                cpu=cpu, worker_url=worker_url)
            if run_id:
                await asyncio.sleep(commit_wait_s(settings))  # its records' last commits
                written = await written_since(settings, run_id, counted)
                counted = {t: counted.get(t, 0) + n for t, n in written.items()}
                per_input = {t.removeprefix(settings.topic_prefix).removeprefix(f"{settings.app_id}-"):
                             round(n / len(feats), 3) for t, n in sorted(written.items()) if n}
                row["messages_per_input"] = per_input
                row["messages_per_input_total"] = round(sum(per_input.values()), 3)
            rows.append(row)
            print(f"{name}: {fmt(row)}", flush=True)
    finally:
        sampling.cancel()
    return rows


def start_worker(settings: Settings, bootstrap: str, tmp: Path) -> WorkerProcess:
    env = {**worker_env(settings, bootstrap), "FMS_DATA_DIR": str(tmp / "state")}
    return WorkerProcess(env, tmp / "worker.log", web_port=free_port()).start()


async def delete_run_topics(settings: Settings, run_id: str) -> None:
    """This run's topics (inputs kept forever by default, faust's changelogs): not left on a shared broker."""
    await delete_topics(settings, lambda t: t.startswith(f"{run_id}.") or t.startswith(f"{run_id}-"))


def fmt(r: dict) -> str:
    return (f"offered {r['offered_per_s']:>6.0f}/s  sent {r['sent_per_s']:>6.0f}/s  out {r['output_per_s']:>6.0f}/s  "
            f"p50 {r.get('p50_ms', float('nan')):7.1f}  p90 {r.get('p90_ms', float('nan')):7.1f}  "
            f"p99 {r.get('p99_ms', float('nan')):7.1f}  max {r['max_ms'] or float('nan'):7.1f} ms  "
            f"backlog {r['backlog_at_end']:>5}  kept up: {'yes' if r['kept_up'] else 'NO'}  "
            f"cores {r['cpu']}" + (f"  gc {r['worker_gc']}" if "worker_gc" in r else "")
            + (f"  messages per input {r['messages_per_input_total']}" if "messages_per_input" in r else ""))


async def run(bootstrap: str, args) -> dict:
    run_id = f"e2e{int(time.time())}"
    common = dict(bootstrap_servers=bootstrap, partitions=args.partitions, max_patterns=max(1000, args.patterns))
    wset = Settings(topic_prefix=f"{run_id}.worker.", app_id=f"{run_id}-worker", **common)
    bset = Settings(topic_prefix=f"{run_id}.baseline.", app_id=f"{run_id}-baseline", **common)
    fset = Settings(topic_prefix=f"{run_id}.faust.", app_id=f"{run_id}-faust", **common)
    for s in (wset, bset, fset):
        await ensure_topics(s)

    sizes = [int(r * args.seconds) for r in args.rates]
    feats = stream(args.warmup + sum(sizes), args.dim, args.spaces, args.patterns)
    warm, rest = feats[:args.warmup], feats[args.warmup:]
    chunks, at = [], 0
    for n in sizes:
        chunks.append(rest[at:at + n])
        at += n

    results: dict = {}
    try:
        # Baseline: throughput.baseline_loop reads bset's audio-features and writes bset's recognitions topic.
        arrivals = Arrivals(bset, bset.topic("recognitions"))
        await arrivals.start()
        loop_task = asyncio.create_task(baseline_loop(bset, len(feats), bset.topic("recognitions")))
        try:
            pids = {"broker": listener_pid(bootstrap), "benchmark": os.getpid()}
            results["baseline"] = await run_phases("baseline", bset, arrivals, warm, chunks, args.rates, pids, loop_task)
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await arrivals.stop()

        # The faust loop (faust_loop.py): the baseline's work as an agent in the worker's own app.
        with tempfile.TemporaryDirectory(prefix="fms-bench-") as tmp:
            arrivals = Arrivals(fset, fset.topic("recognitions"))
            await arrivals.start()
            proc = faust_loop.start({**worker_env(fset, bootstrap), "FMS_DATA_DIR": str(Path(tmp) / "state"),
                                     "FMS_WEB_PORT": str(free_port())},
                                    fset.topic("recognitions"), Path(tmp) / "faust-loop.log")
            try:
                pids = {"faust_loop": proc.pid, "broker": listener_pid(bootstrap), "benchmark": os.getpid()}
                results["faust_loop"] = await run_phases("faust loop", fset, arrivals, warm, chunks, args.rates, pids)
            finally:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 30)
                await arrivals.stop()

        with tempfile.TemporaryDirectory(prefix="fms-bench-") as tmp:
            arrivals = Arrivals(wset, wset.topic("recognitions"))
            await arrivals.start()
            t = time.perf_counter()
            worker = await asyncio.to_thread(start_worker, wset, bootstrap, Path(tmp))
            print(f"worker ready in {time.perf_counter() - t:.1f}s", flush=True)
            try:
                pids = {"worker": worker.proc.pid, "broker": listener_pid(bootstrap), "benchmark": os.getpid()}
                results["worker"] = await run_phases("worker", wset, arrivals, warm, chunks, args.rates, pids,
                                                     worker_url=worker.url, run_id=run_id)
            finally:
                worker.stop()
                await arrivals.stop()
    finally:
        if not args.keep_topics:
            await delete_run_topics(wset, run_id)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[250.0, 500.0, 1000.0, 2000.0])
    p.add_argument("--seconds", type=float, default=15.0, help="per offered rate")
    p.add_argument("--warmup", type=int, default=None,
                   help="records before the first rate (default: enough for every space to pass its "
                        "calibration phase, WARMUP_PER_SPACE records each)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--spaces", type=int, default=8)
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--keep-topics", action="store_true", help="leave this run's topics on the broker")
    p.add_argument("--save-as", default="e2e_latency",
                   help="results/<name>.json (another shape than the issue's, e.g. a new space of 128-d: "
                        "--dim 128 --spaces 1 --patterns 44 --warmup 0 --save-as e2e_latency_new_space)")
    args = p.parse_args()
    if args.warmup is None:
        args.warmup = args.spaces * WARMUP_PER_SPACE
    started = time.perf_counter()
    with broker() as bootstrap:
        results = asyncio.run(run(bootstrap, args))

    print(f"\n{'':11}{'offered/s':>10}{'sent/s':>8}{'out/s':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  "
          f"{'backlog':>7}  kept up")
    for name in ("worker", "faust_loop", "baseline"):
        for r in results[name]:
            print(f"{name:11}{r['offered_per_s']:>10.0f}{r['sent_per_s']:>8.0f}{r['output_per_s']:>8.0f}"
                  f"{r['p50_ms']:>8.1f}{r['p90_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['max_ms']:>8.1f}  "
                  f"{r['backlog_at_end']:>7}  {'yes' if r['kept_up'] else 'NO'}")
    at_goal = [r for r in results["worker"] if r["offered_per_s"] == GOAL["at_records_per_s"]]
    goal_met = bool(at_goal) and at_goal[0]["kept_up"] and at_goal[0]["p99_ms"] < GOAL["p99_ms"]
    print(f"goal p99 < {GOAL['p99_ms']:.0f} ms at {GOAL['at_records_per_s']} records/s: "
          f"{'met' if goal_met else 'not met' if at_goal else 'not measured'}")
    save(args.save_as, {
        "dim": args.dim, "spaces": args.spaces, "patterns": args.patterns, "partitions": args.partitions,
        "seconds_per_rate": args.seconds, "warmup_records": args.warmup,
        "goal": {**GOAL, "met": goal_met if at_goal else None},
        "kept_up_rule": f"all outputs arrived and, when the last record was sent, at most {KEPT_UP_BACKLOG_S}s "
                        "of input (offered rate x that) was still without an output",
        "latency": "time.time() at arrival on the output topic minus time.time() just before producer.send; "
                   "producer acks=all linger 5 ms (streams.ops.publish.publish), watcher fetch_max_wait_ms as the worker's",
        "baseline": "throughput.baseline_loop: plain aiokafka consume, orjson.loads, produce one small record per "
                    "input (acks=all, linger 5 ms), in the benchmark's process",
        "faust_loop": "the baseline's work as a faust agent in the worker's own app, its own process "
                      "(benchmarks/faust_loop.py): what the framework costs before the memory does anything",
        "cpu": "cores used while each rate was offered (CPU s / wall s): the worker process, the broker "
               "(the process listening on the bootstrap port; absent when it is not local) and this "
               "benchmark's process (publisher and watcher; in the baseline phase also the baseline loop)",
        "worker_gc": "the worker's garbage collections while each rate was offered, from its fms_gc_pause_seconds "
                     "(/metrics): how many full (generation-2) collections, their total time, and the total time "
                     "of all collections",
        "runtime_s": round(time.perf_counter() - started, 1),
        **results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
