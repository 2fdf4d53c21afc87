"""Worker throughput through a real broker, beside a plain aiokafka consume-and-produce loop and the
same loop as a faust agent.

All three read the same pre-published fms.audio-features records (768-dim vectors over several
spaces), and are timed the same way: a watcher consumes their output topic and notes when the
first and the last of N outputs arrive. The worker is a real `fms worker` process with RocksDB
tables and changelogs; the baseline decodes each record with orjson and produces a small record
per input; the faust loop (faust_loop.py) does the baseline's work as an agent in the worker's own
app, so that what the framework costs per record is seen apart from what the memory costs.
Beside the rate it reports where a record's cost goes: the worker's CPU per record between the
first and the last output, and the messages written per input record to every topic of the run
(outputs and the memory's changelog), the changelog's also by the kind of state they hold.

    python benchmarks/throughput.py [--records 20000] [--dim 768] [--spaces 8] [--patterns 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from common import CpuSampler, broker, free_port, rate, save, stream, watch_outputs  # noqa: E402  (sets sys.path)
import faust_loop  # noqa: E402
from streams.ops.publish import publish
from streams.service.settings import Settings
from streams.service.topics import ensure_topics, kafka_client_options
from streams.ops.worker_process import WorkerProcess


async def baseline_loop(settings: Settings, n: int, out_topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(settings.topic("audio-features"), **kafka_client_options(settings),
                                group_id=f"{settings.app_id}-baseline", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for msgs in batch.values():
                for m in msgs:
                    rec = orjson.loads(m.value)
                    await producer.send(out_topic, key=m.key, value=orjson.dumps(
                        {"v": 1, "event_id": rec["id"], "space": rec["space"], "ts": time.time()}))
                    done += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


async def run(bootstrap: str, args) -> dict:
    run_id = f"bench{int(time.time())}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.", app_id=run_id,
                        partitions=args.partitions, max_patterns=max(1000, args.patterns))
    await ensure_topics(settings)
    feats = stream(args.records, args.dim, args.spaces, args.patterns)
    t = time.perf_counter()
    await publish(settings, settings.topic("audio-features"), feats)
    print(f"published {len(feats)} records of dim {args.dim} in {time.perf_counter() - t:.1f}s", flush=True)

    # The baseline first, then the faust loop, then the worker, on the same input.
    await create_topic(settings, f"{run_id}.baseline-out", args.partitions)
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_outputs(settings, f"{run_id}.baseline-out", len(feats), ready, 600))
    await ready.wait()
    await baseline_loop(settings, len(feats), f"{run_id}.baseline-out")
    base = await watcher
    base_rate = rate(base, len(feats))
    print(f"baseline aiokafka loop: {base_rate:,.0f} records/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="fms-bench-") as tmp:
        env = worker_env(settings, bootstrap)
        faust_out = f"{run_id}.faust-loop-out"
        await create_topic(settings, faust_out, args.partitions)

        def start_faust_loop():
            proc = faust_loop.start({**env, "FMS_DATA_DIR": str(Path(tmp) / "faust-loop"),
                                     "FMS_WEB_PORT": str(free_port())}, faust_out, Path(tmp) / "faust-loop.log")
            return proc.pid, lambda: (proc.terminate(), proc.wait(30))

        f, faust_cpu = await drain(settings, faust_out, len(feats), start_faust_loop)
        faust_rate = rate(f, len(feats))
        faust_cpu_us = faust_cpu / (len(feats) - 1) * 1e6
        print(f"faust loop (the worker's app, an agent doing the baseline's work): {faust_rate:,.0f} records/s, "
              f"{faust_cpu_us:,.0f} us of CPU per record", flush=True)

        def start_worker():
            worker = WorkerProcess({**env, "FMS_DATA_DIR": str(Path(tmp) / "state")}, Path(tmp) / "worker.log",
                                   web_port=free_port())
            worker.start()
            return worker.proc.pid, worker.stop

        t0 = time.perf_counter()
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if args.profile and spy is None:
            print("py-spy is not installed (the bench extra has it): no profile this run", flush=True)
        profile = Path(tmp) / "worker.collapsed" if args.profile and spy else None
        w, cpu = await drain(settings, settings.topic("recognitions"), len(feats), start_worker, profile, spy)
        profiled = summarize_profile(profile) if profile else None
        if profile is not None and profile.exists():  # the stacks themselves, for a flame graph
            Path(__file__).with_name("results").joinpath("throughput_profile.collapsed.gz").write_bytes(
                gzip.compress(profile.read_bytes(), mtime=0))
    worker_rate = rate(w, len(feats))
    print(f"worker: {worker_rate:,.0f} records/s "
          f"(start to last recognition {w['last'] - t0:.1f}s including startup)", flush=True)
    cpu_us = cpu / (len(feats) - 1) * 1e6
    print(f"worker CPU {cpu_us:,.0f} us per record ({cpu / (w['last'] - w['first']):.0%} of a core); "
          f"5,000 records/s needs at most {1e6 / 5000:,.0f} us", flush=True)
    written = await messages_written(settings, run_id)
    per_record = {topic.removeprefix(settings.topic_prefix).removeprefix(f"{run_id}-"): round(n / len(feats), 3)
                  for topic, n in sorted(written.items()) if not topic.endswith(("audio-features", "baseline-out", "faust-loop-out"))
                  and not topic.startswith(f"{run_id}-faust-loop")}
    print(f"messages written per input record: {per_record}", flush=True)
    changelog = [t for t in written if t.endswith("-changelog")]
    counts, sizes = await changelog_kinds(settings, changelog)
    by_kind = {kind: round(n / len(feats), 3) for kind, n in counts.items()}
    bytes_by_kind = {kind: round(n / len(feats), 1) for kind, n in sizes.items()}
    print(f"changelog messages per input record, by the kind of state they hold: {by_kind}", flush=True)
    print(f"changelog bytes per input record, by kind: {bytes_by_kind}", flush=True)
    return {
        "records": len(feats), "dim": args.dim, "spaces": args.spaces, "patterns": args.patterns,
        "partitions": args.partitions,
        "worker_records_per_s": round(worker_rate, 1),
        "baseline_records_per_s": round(base_rate, 1),
        "ratio_worker_to_baseline": round(worker_rate / base_rate, 4),
        "baseline": "plain aiokafka consume, orjson.loads, produce one small record per input (acks=all)",
        "faust_loop_records_per_s": round(faust_rate, 1),
        "faust_loop_cpu_us_per_record": round(faust_cpu_us, 1),
        "ratio_worker_to_faust_loop": round(worker_rate / faust_rate, 4),
        "faust_loop": "the baseline's work as a faust agent in the worker's own app (benchmarks/faust_loop.py)",
        "worker_cpu_us_per_record": round(cpu_us, 1),
        "worker_cpu_share_of_a_core": round(cpu / (w["last"] - w["first"]), 3),
        "messages_per_record": per_record,
        "messages_per_record_total": round(sum(per_record.values()), 3),
        "changelog_messages_per_record_by_kind": by_kind,
        "changelog_bytes_per_record_by_kind": bytes_by_kind,
        "changelog_kinds": CHANGELOG_KINDS,
        "profile": profiled,
    }


async def drain(settings: Settings, topic: str, n: int, start, profile: Path | None = None,
                py_spy: str | None = None) -> tuple[dict, float]:
    """`start()` a process that turns the input into `n` records on `topic` (it returns the pid and
    a stop function); when the first and the last of them arrived, and the process's CPU seconds
    between those two moments (start-up left out). With `profile`, py-spy samples the process
    meanwhile (without stopping it; `py_spy` is its executable) and writes its stacks there, collapsed."""
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_outputs(settings, topic, n, ready, 900))
    await ready.wait()
    pid, stop = await asyncio.to_thread(start)
    cpu = CpuSampler({"process": pid})
    sampler = asyncio.create_task(cpu.run())
    spy = None
    if profile is not None and py_spy:
        spy = await asyncio.create_subprocess_exec(
            # --function: a frame's line is its function's first, not the current one. Reading the
            # current line from a running process's line table is what makes py-spy 0.4.0 panic
            # (benfred/py-spy#653, #735: seen in 2 of 3 runs here), and the summary drops lines anyway.
            py_spy, "record", "--nonblocking", "--function",
            "--rate", "100", "--format", "raw", "--output", str(profile), "--pid", str(pid),
            stdout=asyncio.subprocess.DEVNULL, stderr=profile.with_suffix(".log").open("wb"))
    try:
        out = await watcher
    finally:
        sampler.cancel()
        if spy is not None:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled when interrupted
            await spy.wait()
        await asyncio.to_thread(stop)
    return out, cpu.seconds_between("process", out["first"], out["last"])


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Where the worker's samples were, from py-spy's collapsed stacks: the functions that were
    running (self) and those on the stack (inclusive), as shares of all samples, and the shares of
    the worker's own code, faust/mode/aiokafka, RocksDB and numpy among the running functions."""
    self_n: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines() if path.exists() else ():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # "function (path/of/module.py:line)": one entry per function, whatever its line
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";") if f.strip()]
        n = int(count)
        total += n
        if frames:
            self_n[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def area(frame: str) -> str:
        where = frame[frame.rfind("(") + 1:]
        for name, roots in (("memory (agents, streams, schemas)", ("agents/", "streams/", "schemas/")),
                            ("faust, mode", ("faust/", "mode/")), ("aiokafka", ("aiokafka/", "kafka/")),
                            ("rocksdict", ("rocksdict/",)), ("numpy", ("numpy/",)), ("asyncio", ("asyncio/",))):
            if where.startswith(roots):
                return name
        return "other"

    areas: Counter = Counter()
    for frame, n in self_n.items():
        areas[area(frame)] += n
    share = lambda n: round(n / total, 4) if total else 0.0  # noqa: E731
    log = path.with_suffix(".log")
    if not total:
        return {"error": (log.read_text().strip().splitlines() or ["py-spy wrote nothing"])[-1] if log.exists() else "no profile"}
    return {
        "sampler": "py-spy record --nonblocking --function --rate 100, the worker process from its first output to its last",
        "stacks": "benchmarks/results/throughput_profile.collapsed.gz (collapsed stacks: flamegraph.pl, speedscope)",
        "samples": total,
        "self_share_by_area": {k: share(v) for k, v in areas.most_common()},
        "top_self": [{"frame": f, "share": share(n)} for f, n in self_n.most_common(top)],
        "top_inclusive": [{"frame": f, "share": share(n)} for f, n in incl.most_common(top)],
    }


async def create_topic(settings: Settings, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def worker_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The environment of a benchmark's worker (or faust loop) for `settings`; FMS_DATA_DIR is the caller's."""
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FMS_TOPIC_PREFIX": settings.topic_prefix,
            "FMS_APP_ID": settings.app_id, "FMS_LOG_LEVEL": "warning",
            "FMS_PARTITIONS": str(settings.partitions), "FMS_MAX_PATTERNS": str(settings.max_patterns)}


async def partitions_of(settings: Settings, select) -> list:
    """The partitions of the topics `select` names, or of every topic whose name it accepts."""
    from aiokafka import TopicPartition

    from streams.kafka import metadata

    found = await metadata.partitions_of(kafka_client_options(settings), select)
    return [TopicPartition(topic, p) for topic, partitions in sorted(found.items()) for p in sorted(partitions)]


async def messages_written(settings: Settings, run_id: str) -> dict[str, int]:
    """Messages in every topic of the run (changelog, outputs): the sum of their end offsets."""
    from aiokafka import AIOKafkaConsumer

    tps = await partitions_of(settings, lambda t: t.startswith(run_id))
    consumer = AIOKafkaConsumer(**kafka_client_options(settings))
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + end
    return out


# The memory table's views by key prefix (streams.state.patterns, streams.state.optimizations,
# streams.state.journal), and what they hold.
CHANGELOG_KINDS = {
    "p": "pattern states, one value per pattern",
    "s": "space states, pattern-id pages, calibration-sample blocks and replaced sample slots",
    "j": "journal entries and their parts, one entry per space per commit",
    "rq": "recent recognitions, ring values of 64 records",
    "iq": "recent interactions, ring values of 64 records",
    "o": "optimization states",
    "oi": "optimization indexes",
}


async def changelog_kinds(settings: Settings, topics: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """The messages of the memory's changelog topics, and their bytes (key and value), counted by
    the view their key belongs to (the key's prefix up to its first "/", CHANGELOG_KINDS)."""
    from aiokafka import AIOKafkaConsumer

    tps = await partitions_of(settings, topics)
    if not tps:
        return {}, {}
    counts: Counter = Counter()
    sizes: Counter = Counter()
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        consumer.assign(tps)
        left = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for m in messages:
                    key = (m.key or b"").decode(errors="replace")
                    kind = key.split("/", 1)[0] if "/" in key else "other"
                    counts[kind] += 1
                    sizes[kind] += len(m.key or b"") + len(m.value or b"")
            for tp in list(left):  # read to its end (compaction may have left gaps before it)
                if await consumer.position(tp) >= left[tp]:
                    del left[tp]
    finally:
        await consumer.stop()
    return dict(sorted(counts.items())), dict(sorted(sizes.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--spaces", type=int, default=8)
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="do not sample the worker with py-spy (the bench extra installs it)")
    args = p.parse_args()
    with broker() as bootstrap:
        results = asyncio.run(run(bootstrap, args))
    save("throughput", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
