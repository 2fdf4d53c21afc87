"""`fms demo`: the whole path on a local broker, from generated features to what the memory learned.

It starts what is not running (the local broker, one worker), publishes a stream drawn from known
groups, reads the recognitions and the compacted pattern topic back, prints how the patterns match
the groups, and stops and removes what it started. Each run uses its own topics and state, so runs
never see each other's records.
"""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from schemas.codec import decode
from schemas.records import AudioFeature, Interaction, Outcome
from streams.core.quality import adjusted_rand_index, contingency, normalized_mutual_information, purity
from streams.kafka.metadata import committed_behind
from streams.ops.publish import publish, read_topic
from streams.service.settings import Settings
from streams.service.topics import delete_topics, ensure_topics, kafka_client_options, topic_specs
from streams.ops.worker_process import WorkerProcess


# The local broker of infra/ (`fms broker`, and the demo when none answers).
BROKER_SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "broker.sh"

def grouped_stream(records: int, groups: int, dim: int = 64, spread: float = 0.05, seed: int = 7,
                   space: str = "demo") -> tuple[list[AudioFeature], list[int]]:
    """Unit-norm group centres plus Gaussian noise, shuffled; returns the records and their true groups."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = rng.integers(0, groups, size=records)
    vectors = (centres[truth] + rng.normal(scale=spread, size=(records, dim))).astype(np.float32)
    t0 = 1_700_000_000.0
    feats = [AudioFeature(id=f"demo-{i}", space=space, vector=vectors[i], model_id="demo-generator",
                          ts=t0 + i * 0.01, meta=None) for i in range(records)]
    return feats, truth.tolist()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


DEMO_CONFIGS = ({"beam": 1, "lm": False}, {"beam": 4, "lm": True}, {"beam": 8, "lm": True})


def demo_interactions(feats, by_event, seed: int = 3) -> list[Interaction]:
    """An experienced model tries three configs in the context of each recognized clip (each
    pattern has a hidden best); then a new model reports one outcome per pattern."""
    rng = np.random.default_rng(seed)
    # The patterns are those the stream's second half was recognized as: a new space's first
    # records can name patterns that merges absorbed since (it starts strict, see
    # streams.core.patterns.calibration), and an interaction names its context as it is now.
    firsts: dict[str, AudioFeature] = {}
    for f in feats[len(feats) // 2:]:
        firsts.setdefault(by_event[f.id].pattern_id, f)
    out, ts = [], feats[-1].ts + 1.0
    for n, (pattern_id, f) in enumerate(sorted(firsts.items())):
        best = n % len(DEMO_CONFIGS)
        for i in range(45):
            c = i % len(DEMO_CONFIGS)
            ok = bool(rng.random() < (0.95 if c == best else 0.35))
            out.append(Interaction(id=f"demo-i-{pattern_id}-{i}", space=f.space, model_id="asr-large",
                                   config=DEMO_CONFIGS[c], event_id=f.id, ts=ts,
                                   outcome=Outcome(ok, latency_ms=40.0 + 30 * c, quality=0.9 if ok else None)))
            ts += 0.01
    for pattern_id, f in sorted(firsts.items()):
        out.append(Interaction(id=f"demo-new-{pattern_id}", space=f.space, model_id="asr-small",
                               config=DEMO_CONFIGS[0], pattern_id=pattern_id, ts=ts, outcome=Outcome(False)))
        ts += 0.01
    return out


def latest_recommendations(records) -> dict[tuple[str, str], object]:
    """(pattern_id, model_id) -> the newest `fms.optimizations` record of its key, if it recommends."""
    latest: dict[tuple[str, str], object] = {}
    for _, raw in records:
        o = decode("optimizations", raw).record
        if o.event == "recommended":
            latest[(o.pattern_id, o.model_id)] = o
        else:
            latest.pop((o.pattern_id, o.model_id), None)
    return latest


def transfer_violations(latest: Mapping[tuple[str, str], object]) -> tuple[int, list[str]]:
    """The documented rule read off the topic: a transferred effectiveness is the source's times
    FMS_TRANSFER_DISCOUNT times the patterns' similarity, so it is never above the source model's own
    record for the same config on the same pattern. Returns the rows checked and the ones that break it."""
    checked, bad = 0, []
    for (pattern_id, model), o in sorted(latest.items()):
        source = latest.get((pattern_id, o.source_model_id))
        if o.source_model_id == model or source is None or source.config != o.config:
            continue
        checked += 1
        if o.effectiveness > source.effectiveness:
            bad.append(f"{pattern_id} {model}: {o.effectiveness:.3f} transferred from {o.source_model_id}, "
                       f"whose own record says {source.effectiveness:.3f}")
    return checked, bad


async def demo_optimizations(settings: Settings, feats, by_event) -> dict[tuple[str, str], object]:
    interactions = demo_interactions(feats, by_event)
    await publish(settings, settings.topic("interactions"), interactions)
    patterns = {i.pattern_id for i in interactions if i.pattern_id}
    wanted = {(p, m) for p in patterns for m in ("asr-large", "asr-small")}
    latest: dict[tuple[str, str], object] = {}
    deadline, seen, quiet_since = time.monotonic() + 60, -1, time.monotonic()
    # Until every (pattern, model) has a recommendation and nothing new came for 1 s (records are
    # re-announced as their numbers move), or nothing new came for 3 s.
    while time.monotonic() < deadline:
        records = await read_topic(settings, settings.topic("optimizations"))
        if len(records) != seen:
            seen, quiet_since = len(records), time.monotonic()
        latest = latest_recommendations(records)
        quiet = time.monotonic() - quiet_since
        if quiet >= 3 or (set(latest) >= wanted and quiet >= 1):
            break
        await asyncio.sleep(0.2)
    print(f"\npublished {len(interactions)} interactions: asr-large tried {len(DEMO_CONFIGS)} configs on each "
          "pattern; asr-small then reported one outcome per pattern")
    print("what each model is told to run (fms.optimizations, newest per key; effectiveness as published):")
    print(f"  {'pattern_id':<20} {'model':<10} {'config':<28} {'effectiveness':>13}  from")
    for (pattern_id, model), o in sorted(latest.items()):
        config = ", ".join(f"{k}={v}" for k, v in sorted(o.config.items()))
        source = "its own results" if o.source_model_id == model else f"transferred from {o.source_model_id}"
        print(f"  {pattern_id:<20} {model:<10} {config:<28} {o.effectiveness:>13.3f}  {source}")
    checked, bad = transfer_violations(latest)
    if bad:
        print("  a transferred effectiveness above its source's own record:\n    " + "\n    ".join(bad))
    else:
        print(f"  every transferred effectiveness is at most its source's own record for that config "
              f"({checked} transfers checked)")
    return latest


async def _wait_for_commit(settings: Settings, topic: str, timeout: float) -> None:
    """Until the worker's group has committed every record of `topic` (its state and pattern events
    went out before that), or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while await committed_behind(kafka_client_options(settings), settings.memory_app_id, [topic]) > 0:
        if time.monotonic() > deadline:
            print(f"  (the worker had not committed all of {topic} after {timeout:.0f}s: the patterns below may lag)")
            return
        await asyncio.sleep(0.5)


async def run_demo(base: Settings, *, records: int = 2000, groups: int = 6) -> int:
    started_broker = False
    if not _reachable(base.bootstrap_servers):
        print(f"starting the local broker ({BROKER_SCRIPT})", flush=True)
        subprocess.run(["bash", str(BROKER_SCRIPT), "start"], check=True)
        started_broker = True

    run = f"demo{int(time.time())}"
    workdir = Path(tempfile.mkdtemp(prefix=f"fms-{run}-"))
    env = {"KAFKA_BOOTSTRAP_SERVERS": base.bootstrap_servers, "FMS_TOPIC_PREFIX": f"{run}.",
           "FMS_APP_ID": f"fms-{run}", "FMS_DATA_DIR": str(workdir / "state"), "FMS_LOG_LEVEL": "warning"}
    settings = dataclasses.replace(base, topic_prefix=f"{run}.", app_id=f"fms-{run}")
    worker = WorkerProcess(env, workdir / "worker.log", web_port=_free_port())
    try:
        await ensure_topics(settings)
        print(f"starting a worker (web http://127.0.0.1:{worker.web_port}, log {worker.log_path})", flush=True)
        await asyncio.to_thread(worker.start)

        feats, truth = grouped_stream(records, groups)
        t = time.perf_counter()
        await publish(settings, settings.topic("audio-features"), feats)
        print(f"published {records} feature vectors from {groups} known groups", flush=True)
        recognitions = await read_topic(settings, settings.topic("recognitions"), count=records, timeout=180)
        elapsed = time.perf_counter() - t
        print(f"received {len(recognitions)} recognitions in {elapsed:.1f}s", flush=True)

        by_event = {}
        for _, raw in recognitions:
            rec = decode("recognitions", raw).record
            by_event[rec.event_id] = rec
        predicted = [by_event[f.id].pattern_id for f in feats]

        # Pattern events go out at each space's commit, every FMS_COMMIT_INTERVAL_S; the memory
        # acknowledges its inputs after it, and faust commits their offsets as often.
        await _wait_for_commit(settings, settings.topic("audio-features"), 4 * settings.commit_interval_s + 30)
        latest: dict[str, bytes | None] = {}
        for key, raw in await read_topic(settings, settings.topic("patterns")):
            latest[key] = raw
        patterns = [decode("patterns", raw).record for raw in latest.values() if raw is not None]
        patterns.sort(key=lambda p: -p.count)

        print("\npatterns the memory learned (fms.patterns, newest state per key):")
        print(f"  {'pattern_id':<20} {'count':>6} {'confidence':>10}  established")
        for p in patterns:
            print(f"  {p.pattern_id:<20} {p.count:>6} {p.confidence:>10.3f}  "
                  f"{'yes' if p.confidence >= base.confidence_threshold else 'no'}")

        table, rows, cols = contingency(truth, predicted)
        top = [c for c, _ in Counter(predicted).most_common(8)]
        print("\nhow recognitions match the known groups (rows: group, columns: pattern):")
        print("  group " + " ".join(f"{c[-8:]:>9}" for c in top))
        for i, g in enumerate(rows):
            print(f"  {g:>5} " + " ".join(f"{table[i, cols.index(c)]:>9}" for c in top))
        print(f"\n  groups {groups}, patterns {len(patterns)}, "
              f"ARI {adjusted_rand_index(truth, predicted):.3f}, NMI {normalized_mutual_information(truth, predicted):.3f}, "
              f"purity {purity(truth, predicted):.3f}")

        await demo_optimizations(settings, feats, by_event)
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    finally:
        worker.stop()
        await delete_topics(settings, [s.name for s in topic_specs(settings)] + [
            f"fms-{run}-memory-changelog", f"fms-{run}-__assignor-__leader"])
        if started_broker:
            subprocess.run(["bash", str(BROKER_SCRIPT), "stop"], check=False)
