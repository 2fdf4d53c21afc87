"""Replay rate beside the live processing rate, on the same input in the same run, through a real broker.

One run, one input: N fms.audio-features records (common.stream: well-separated groups over several
spaces) are published first; then

1. live: a generation-0 `fms worker` is started on that backlog and drains it. Its rate is measured
   the way throughput.py measures it: a watcher consumes fms.recognitions and notes when the first
   and the last of the N recognitions arrive; rate = (N - 1) / (last - first).
2. interactions naming earlier events by `event_id` are published after their recognitions
   appeared, and the live worker applies them (not timed: they give no recognitions).
3. replay: `streams.ops.replay.replay()` rebuilds the same logs into generation 1 while the
   generation-0 worker keeps running (idle), then switches. Its rate is measured twice:
   - the same way as live: first to last recognition on the shadow topic fms.recognitions.g1;
   - as `replay()` reports it (`ReplayResult.rate`): input records consumed (features and
     interactions) over the time from the replay worker being ready until its committed offsets
     had caught up (polled every second; faust commits every few seconds, so this is coarser).
   Also the switch time (`switching` to `current`) and the wall time of the `replay()` call.

Both runs are checked: every feature has exactly one recognition on its topic, the replay's
recognitions equal the live ones (but for ts), no dead letters; each worker's
fms_sequence_idle_released_total (records taken out of timestamp order) is read from its /metrics, and
the workers' logs are scanned for warnings. The ratio reported is replay / live.

    python benchmarks/replay.py [--records 10000] [--dim 128] [--spaces 8] [--patterns 200] [--interactions 200]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import broker, free_port, rate, save, stream, watch_outputs  # noqa: E402  (sets sys.path)
from schemas.codec import decode
from schemas.records import Interaction, Outcome
from streams.ops.generation import shadow_specs
from streams.ops.publish import publish, read_topic
from streams.ops.replay import replay
from streams.service.settings import Settings
from streams.service.topics import ensure_topics, kafka_client_options
from streams.ops.worker_process import WorkerProcess

# Log lines worth reporting; each is counted in both workers' logs.
WATCHED = {
    "fetching_again": "fetching again",
    "older_than_recent_recognitions": "older than the recent recognitions",
    "interaction_not_in_recent_ring": "no longer in the recent ring",
    "batch_applied_one_by_one": "applying them one by one",
    "not_stopped_cleanly": "did not stop cleanly",
    "output_not_delivered": "output not delivered",
}
LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def interactions(feats, n: int) -> list[Interaction]:
    """`n` interactions, each naming one feature (spread over the stream) by its event_id."""
    ts = max(f.ts for f in feats) + 1.0
    out = []
    for j in range(n):
        f = feats[(j * len(feats)) // n]
        model, config = ("m-a", {"beam": 4}) if j % 3 else ("m-b", {"beam": 2, "lm": True})
        out.append(Interaction(id=f"i{j}", space=f.space, model_id=model, config=config,
                               outcome=Outcome(j % 5 != 0, latency_ms=10.0 + j % 7, quality=0.5 + (j % 10) / 20),
                               ts=ts + j * 1e-3, event_id=f.id))
    return out


async def committed(settings: Settings, group: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)
    finally:
        await admin.close()


async def wait_committed(settings: Settings, group: str, topic: str, total: int, timeout: float = 300.0) -> float:
    began = time.perf_counter()
    while await committed(settings, group, topic) < total:
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"{group} did not commit {total} records of {topic} in {timeout}s")
        await asyncio.sleep(0.5)
    return time.perf_counter() - began


async def recognitions(settings: Settings, topic: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for _, raw in await read_topic(settings, topic, timeout=120):
        r = decode("recognitions", raw).record
        out.setdefault(r.event_id, []).append(dataclasses.replace(r, ts=0.0))
    return out


async def dead_letters(settings: Settings, topic: str) -> dict:
    records = [decode("dead-letter", raw).record for _, raw in await read_topic(settings, topic, timeout=60)]
    return {"count": len(records),
            "codes": dict(Counter(e.code for d in records for e in d.errors)),
            "examples": [{"topic": d.topic, "partition": d.partition, "offset": d.offset,
                          "errors": [dataclasses.asdict(e) for e in d.errors]} for d in records[:3]]}


def idle_released(url: str) -> float | None:
    """fms_sequence_idle_released on a worker's /metrics (summed over its labels), None if unanswered."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("fms_sequence_idle_released_total "))


async def follow_released(url: str, seen: list) -> None:
    """Poll a worker's idle-released count every second until cancelled; the last answer wins."""
    while True:
        value = await asyncio.to_thread(idle_released, url)
        if value is not None:
            seen.append(value)
        await asyncio.sleep(1.0)


def coverage(recs: dict[str, list], ids: list[str]) -> dict:
    """Every feature exactly once?"""
    want = set(ids)
    return {"recognized": len(want & recs.keys()), "missing": len(want - recs.keys()),
            "unexpected": len(recs.keys() - want), "duplicated": sum(1 for v in recs.values() if len(v) > 1)}


def scan_log(path: Path) -> dict:
    """Warning/error lines of a worker's log, counted by message (numbers and names of this run masked)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    levels = [ln for ln in lines if LEVEL.search(ln)]
    kinds = Counter(re.sub(r"\d+(\.\d+)?", "N", ln[LEVEL.search(ln).start():])[:200] for ln in levels)
    return {"lines": len(lines), "warnings_or_errors": len(levels),
            "watched": {k: sum(phrase in ln for ln in lines) for k, phrase in WATCHED.items()},
            "by_message": dict(kinds.most_common(12))}


def seconds(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def run(bootstrap: str, args, tmp: Path, logs: Path) -> dict:
    run_id = f"replay{int(time.time())}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.", app_id=run_id,
                        partitions=args.partitions, max_patterns=max(1000, args.patterns))
    # The replay worker's environment is replay.worker_env(settings) over os.environ: whatever else
    # the two workers should share goes into os.environ, and the live worker gets the same.
    shared = {"FMS_LOG_LEVEL": "warning", "FMS_MAX_PATTERNS": str(settings.max_patterns)}
    os.environ.update(shared)
    await ensure_topics(settings)
    feats = stream(args.records, args.dim, args.spaces, args.patterns)
    ids = [f.id for f in feats]
    n = len(feats)
    t = time.perf_counter()
    await publish(settings, settings.topic("audio-features"), feats)
    print(f"published {n} records of dim {args.dim} over {args.spaces} spaces in {time.perf_counter() - t:.1f}s",
          flush=True)

    # 1. Live: generation 0 drains the backlog from the start.
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FMS_TOPIC_PREFIX": settings.topic_prefix, "FMS_APP_ID": run_id,
           "FMS_DATA_DIR": str(tmp / "live" / "state"), "FMS_PARTITIONS": str(args.partitions), **shared}
    live_worker = WorkerProcess(env, logs / "live-worker.log", web_port=free_port())
    replay_log = logs / "replay-worker.log"
    try:
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_outputs(settings, settings.topic("recognitions"), n, ready, 900))
        await ready.wait()
        spawned = time.perf_counter()
        await asyncio.to_thread(live_worker.start)
        live_ready = time.perf_counter() - spawned
        live = await watcher
        live_rate = rate(live, n)
        print(f"live (generation 0): {live_rate:,.0f} records/s, first to last recognition "
              f"{live['last'] - live['first']:.1f}s (ready {live_ready:.1f}s, last recognition "
              f"{live['last'] - spawned:.1f}s after the spawn)", flush=True)

        # 2. Interactions naming recognized events, applied by generation 0 before the replay.
        inter = interactions(feats, args.interactions)
        if inter:
            await publish(settings, settings.topic("interactions"), inter)
            waited = await wait_committed(settings, settings.memory_app_id, settings.topic("interactions"), len(inter))
            print(f"{len(inter)} interactions by event_id applied by generation 0 (committed in {waited:.1f}s)",
                  flush=True)

        # 3. Replay into generation 1, generation 0 still running; then the switch.
        await ensure_topics(settings, specs=shadow_specs(settings, 1))
        ready = asyncio.Event()
        shadow_topic = settings.topic("recognitions") + ".g1"
        watcher = asyncio.create_task(watch_outputs(settings, shadow_topic, n, ready, 900))
        await ready.wait()
        live_released = await asyncio.to_thread(idle_released, live_worker.url)
        replay_port = free_port()
        replay_released: list[float] = []
        poller = asyncio.create_task(follow_released(f"http://127.0.0.1:{replay_port}", replay_released))
        t0 = time.perf_counter()
        try:
            result = await replay(settings, data_dir=tmp / "replay" / "state", web_port=replay_port,
                                  lag_threshold=0, progress=False, log_path=replay_log)
        finally:
            poller.cancel()
        wall = time.perf_counter() - t0
        shadow = await asyncio.wait_for(watcher, 60)
        replay_rate = rate(shadow, n)
        print(f"replay (generation 1): {replay_rate:,.0f} records/s first to last recognition on {shadow_topic} "
              f"({shadow['last'] - shadow['first']:.1f}s); replay() reports {result.replayed} records in "
              f"{result.seconds:.1f}s = {result.rate:,.0f}/s; switch {result.switch_seconds:.1f}s; "
              f"replay() wall {wall:.1f}s; rewound {result.rewound or 'nothing'}", flush=True)

        # The generation-0 worker re-executes itself as generation 1 (restoring generation 1's changelogs).
        t1 = time.perf_counter()
        try:
            await asyncio.to_thread(live_worker.wait_ready, 180)
            switched_ready = time.perf_counter() - t1
        except (RuntimeError, TimeoutError) as exc:
            print(f"the generation-0 worker did not come back as generation 1: {exc}", flush=True)
            switched_ready = None
    finally:
        await asyncio.to_thread(live_worker.stop)

    # Checks: every feature recognized once in each run, the same recognitions, no dead letters.
    live_recs = await recognitions(settings, settings.topic("recognitions"))
    shadow_recs = await recognitions(settings, shadow_topic)
    common_ids = [i for i in ids if i in live_recs and i in shadow_recs]
    same = sum(live_recs[i][0] == shadow_recs[i][0] for i in common_ids)
    same_structure = sum((live_recs[i][0].pattern_id, live_recs[i][0].similarity, live_recs[i][0].new)
                         == (shadow_recs[i][0].pattern_id, shadow_recs[i][0].similarity, shadow_recs[i][0].new)
                         for i in common_ids)
    dead = {name: await dead_letters(settings, name)
            for name in (settings.topic("dead-letter"), settings.topic("dead-letter") + ".g1")}
    position = {i: k for k, i in enumerate(ids)}
    differ = sorted((i for i in common_ids if live_recs[i][0] != shadow_recs[i][0]), key=position.get)
    checks = {
        "live": coverage(live_recs, ids), "replay": coverage(shadow_recs, ids),
        "replay_equal_to_live": same, "replay_equal_to_live_but_confidence": same_structure,
        "replay_differs_from_live": {
            "count": len(differ),
            "first_positions": [position[i] for i in differ[:5]], "last_position": position[differ[-1]] if differ else None,
            "examples": [{"event_id": i, "live": dataclasses.asdict(live_recs[i][0]),
                          "replay": dataclasses.asdict(shadow_recs[i][0])} for i in differ[:3]]},
        "dead_letters": dead,
        "idle_released": {"live": live_released, "replay": replay_released[-1] if replay_released else None},
        "replayed_is_features_plus_interactions": result.replayed == n + len(inter),
        "new_patterns": dict(sorted(Counter(r[0].space for r in live_recs.values() if r[0].new).items())),
    }
    log_scan = {"live_worker": scan_log(live_worker.log_path), "replay_worker": scan_log(replay_log)}
    print(f"checks: {checks}", flush=True)
    for name, scan in log_scan.items():
        print(f"{name} log: {scan['warnings_or_errors']} warning/error lines, watched {scan['watched']}", flush=True)
        for line, count in scan["by_message"].items():
            print(f"    {count:>5} x {line}", flush=True)

    return {
        "records": n, "dim": args.dim, "spaces": args.spaces, "patterns": args.patterns,
        "partitions": args.partitions, "interactions": len(inter),
        "live_records_per_s": round(live_rate, 1),
        "replay_records_per_s": round(replay_rate, 1),
        "ratio_replay_to_live": round(replay_rate / live_rate, 4),
        "replay_result_rate_per_s": round(result.rate, 1),
        "ratio_replay_result_rate_to_live": round(result.rate / live_rate, 4),
        "switch_s": round(result.switch_seconds, 3),
        "replay_wall_s": round(wall, 3),
        "live": {
            "first_to_last_recognition_s": seconds(live["last"] - live["first"]),
            "spawn_to_ready_s": seconds(live_ready),
            "spawn_to_first_recognition_s": seconds(live["first"] - spawned),
            "spawn_to_last_recognition_s": seconds(live["last"] - spawned),
        },
        "replay": {
            "first_to_last_recognition_s": seconds(shadow["last"] - shadow["first"]),
            "call_to_first_recognition_s": seconds(shadow["first"] - t0),
            "call_to_last_recognition_s": seconds(shadow["last"] - t0),
            "result_replayed": result.replayed, "result_seconds": seconds(result.seconds),
            "rewound": {f"{tp.topic}[{tp.partition}]": o for tp, o in result.rewound.items()},
            "patterns_written": result.patterns_written, "optimizations_written": result.optimizations_written,
            "generation_0_worker_ready_as_generation_1_s": seconds(switched_ready),
        },
        "checks": checks,
        "logs": log_scan,
        "how": {
            "live": "a generation-0 `fms worker` started on the published backlog; (N - 1) / (last - first) "
                    "recognition seen on fms.recognitions by a watcher consumer",
            "replay": "streams.ops.replay.replay(lag_threshold=0) into generation 1 while the generation-0 worker "
                      "keeps running idle; the same watcher on fms.recognitions.g1",
            "replay_result_rate": "ReplayResult.rate: input records consumed (features + interactions) / "
                                  "time from the replay worker ready until its committed offsets reached the "
                                  "inputs' ends (polled every 1 s, faust commits every few seconds)",
            "switch": "ReplayResult.switch_seconds: `switching` written to `current` written (generation 0 "
                      "stops cleanly, the replay worker stops, offsets rewound if needed, compacted topics "
                      "reconciled)",
            "worker_settings": shared,
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--spaces", type=int, default=8)
    p.add_argument("--patterns", type=int, default=200, help="groups over all spaces")
    p.add_argument("--interactions", type=int, default=200, help="interactions naming earlier events by event_id")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--logs", type=Path, default=None, help="where to keep the workers' logs (default: a new /tmp dir)")
    args = p.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="fms-bench-replay-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"worker logs in {logs}", flush=True)
    started = time.perf_counter()
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="fms-bench-replay-") as tmp:
        results = asyncio.run(run(bootstrap, args, Path(tmp), logs))
    results["total_s"] = round(time.perf_counter() - started, 1)
    save("replay", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
