"""Recovery: restarting a worker that holds 10,000 patterns, and takeover when one of two workers is killed.

Real `fms worker` processes (streams.ops.worker_process.WorkerProcess) on a real broker, each part with its
own topic prefix, app id (consumer group) and data directories, as tests/conftest.py's memory_env.

1. Restart from the changelog, 10,000 patterns x 768 dims in ONE space (so on one changelog partition).
   A learner worker is fed one record per pattern (well-separated unit centres plus N(0, 0.02) noise,
   as throughput.stream) as fast as the producer goes, until every recognition arrived; the limits
   are raised so that nothing is evicted (FMS_MAX_PATTERNS, FMS_CLEANUP_PATTERNS above the count,
   FMS_MAX_MEMORY_BYTES / FMS_CLEANUP_MEMORY_BYTES far above the ~68 MB estimate). The reference
   answers: the learner's POST /recognize for the centres of three patterns (first, middle, last
   created). The learner is stopped cleanly (SIGTERM). Then, per repeat, in this order:
     bare   a worker of another app id whose topics are empty, on an empty data dir (the baseline:
            what starting a worker costs with no state at all);
     fresh  a worker of the learner's app id on an EMPTY data dir: faust restores the whole table
            from `<app id>-memory-changelog`;
     warm   the fresh worker stopped cleanly and started again on the SAME dir: faust reads only the
            changelog past the offset it stored locally (the tail, here empty).
   Per start, from the spawn of the process (perf_counter): serving_http_s (first /health answer),
   assigned_s (first /health with partitions assigned), ready_s (WorkerProcess.start() returned:
   partitions assigned and not rebalancing, i.e. past recovery), first_answer_s (first POST
   /recognize, sent once ready, that answers the first probe with the reference pattern; the first
   query builds the space's matching index from RocksDB), and whether all three probes then match.
   recovery cost = fresh - bare (same repeat); warm/fresh ratio. Also the changelog: messages
   (end - start offsets) and bytes on the broker (DescribeLogDirs), before each fresh start (the
   broker's log cleaner may compact it in between), and the clean stop's duration.
   One more fresh start (--early-probe) polls /recognize for the LAST-created pattern from the
   spawn on, every 0.25 s, during recovery as a client would, and reports what it answered before
   and after ready (the matching index is cached on first use; recovery does not invalidate it).

2. Takeover: two workers (FMS_PARTITIONS=4, own data dirs and ports, FMS_STANDBY_REPLICAS=1), 8
   spaces chosen by the producer's murmur2 partitioner so that each partition holds 2, each with
   --takeover-patterns patterns x 768 dims x 2 records. After every recognition arrived, the owner
   of each space and the reference answers (pattern ids of centre 0 and centre 1) come from
   /recognize (the answer's "worker" field names the worker that answered; any worker forwards to
   the owner). Then the second worker is SIGKILLed (WorkerProcess.kill) at t0, and right after it
   one new record per space (near centre 1) is published. Every ~0.1 s the survivor is asked
   /recognize for every space (centre 0) and /health. Measured from t0:
     takeover_s        every space answered by the survivor itself (worker == its
                       health()["components"]["worker"]["name"]) with the reference pattern
     new_record_s      the latest recognition of the post-kill records of the victim's spaces
                       (their pattern must be the reference pattern of centre 1, not new: the
                       survivor continued from the victim's state)
     rebalance start/end as the survivor's /health reports it, and for the survivor's own spaces
                       how long /recognize failed while it rebalanced
   Per FMS_SESSION_TIMEOUT_S setting (10, the default, and 6, the broker's minimum), each trial on
   fresh topics; takeover - session timeout is what the group and faust add to the detection.

    python benchmarks/recovery.py [--patterns 10000] [--repeats 3] [--session-timeouts 10,6]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from common import broker, floats, free_port, save  # noqa: E402  (sets sys.path)
from e2e_latency import Arrivals, delete_run_topics
from schemas.records import AudioFeature
from streams.ops.publish import publish
from streams.service.settings import Settings
from streams.service.topics import ensure_topics, kafka_client_options
from streams.ops.worker_process import WorkerProcess

# This benchmark's own targets (the design documents give none for recovery): a takeover adds at
# most this much to the session timeout, and restored state answers exactly as before.
GOALS = {"takeover_over_session_timeout_s": 5.0}
MB = 1024 * 1024


# -- data ----------------------------------------------------------------------------------------


def well_separated(space: str, patterns: int, per_pattern: int, dim: int, seed: int,
                   prefix: str) -> tuple[list[AudioFeature], np.ndarray]:
    """`patterns` random unit centres (cosine ~0 +- 0.04 apart at 768 dims) plus N(0, 0.02) noise,
    `per_pattern` records each, cycling; returns the records and the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(patterns, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n = patterns * per_pattern
    noise = rng.normal(scale=0.02, size=(n, dim)).astype(np.float32)
    feats = [AudioFeature(id=f"{prefix}{i}", space=space, vector=centres[i % patterns] + noise[i], model_id=None,
                          ts=1_700_000_000.0 + i * 1e-3, meta=None) for i in range(n)]
    return feats, centres


def spaces_over_partitions(partitions: int, per_partition: int) -> dict[str, int]:
    """Space names whose records the producer's default partitioner (murmur2) spreads evenly."""
    from aiokafka.partitioner import murmur2

    out: dict[str, int] = {}
    counts = [0] * partitions
    i = 0
    while min(counts) < per_partition:
        name = f"space-{i}"
        p = (murmur2(name.encode()) & 0x7FFFFFFF) % partitions
        if counts[p] < per_partition:
            out[name] = p
            counts[p] += 1
        i += 1
    return out


# -- workers and HTTP ----------------------------------------------------------------------------


def worker_env(s: Settings, bootstrap: str, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FMS_TOPIC_PREFIX": s.topic_prefix, "FMS_APP_ID": s.app_id,
            "FMS_DATA_DIR": str(data_dir), "FMS_LOG_LEVEL": "warning", "FMS_PARTITIONS": str(s.partitions),
            "FMS_FAULT_INJECT": "", **(extra or {})}


def recognize(url: str, space: str, vector, timeout: float = 60.0) -> tuple[int | None, dict | None]:
    """(HTTP status, answer) of POST /recognize; (None, None) when the worker did not answer."""
    body = json.dumps({"space": space, "vector": [float(x) for x in vector], "k": 1}).encode()
    req = urllib.request.Request(f"{url}/recognize", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return None, None


def top(answer: dict | None) -> str | None:
    matches = (answer or {}).get("matches") or []
    return matches[0]["pattern_id"] if matches else None


def worker_name(worker: WorkerProcess) -> str:
    return worker.health()["components"]["worker"]["name"]


async def launch(env: dict[str, str], log_path: Path, timeout: float,
                 early: tuple[str, np.ndarray] | None = None) -> tuple[WorkerProcess, dict]:
    """Start a worker and note, from the spawn, when it served /health, had partitions, was ready.

    With `early` (space, vector), POST /recognize is polled too from the spawn on, every 0.25 s."""
    worker = WorkerProcess(env, log_path, web_port=free_port())
    t0 = time.perf_counter()
    start = asyncio.ensure_future(asyncio.to_thread(worker.start, timeout))
    marks: dict = {}
    polls: list = []
    last_early = -1.0
    while not start.done():
        h = await asyncio.to_thread(worker.health)
        now = time.perf_counter() - t0
        if h is not None:
            marks.setdefault("serving_http_s", round(now, 3))
            if h["components"]["kafka"]["assigned_partitions"] > 0:
                marks.setdefault("assigned_s", round(now, 3))
        if early is not None and now - last_early >= 0.25:
            last_early = now
            status, ans = await asyncio.to_thread(recognize, worker.url, early[0], early[1], 10.0)
            polls.append((round(time.perf_counter() - t0, 3), status, top(ans)))
        await asyncio.wait({start}, timeout=0.1)
    await start  # raises if the worker exited or did not get ready
    marks["ready_s"] = round(time.perf_counter() - t0, 3)
    marks["_t0"] = t0
    if early is not None:
        marks["_polls"] = polls
    return worker, marks


async def first_right_answer(worker: WorkerProcess, space: str, probes: np.ndarray, expected: list[str],
                             t0: float, deadline_s: float) -> dict:
    """Poll POST /recognize with probe 0 until it names expected[0]; then check every probe once."""
    tries, first_query_s = 0, None
    deadline = time.monotonic() + deadline_s
    answered = None
    while time.monotonic() < deadline:
        t = time.perf_counter()
        status, ans = await asyncio.to_thread(recognize, worker.url, space, probes[0])
        tries += 1
        if first_query_s is None:
            first_query_s = round(time.perf_counter() - t, 3)
        answered = (status, top(ans))
        if status == 200 and top(ans) == expected[0]:
            break
        await asyncio.sleep(0.05)
    else:
        return {"first_answer_s": None, "tries": tries, "last_answer": answered, "all_probes_right": False}
    first = round(time.perf_counter() - t0, 3)
    got = [top((await asyncio.to_thread(recognize, worker.url, space, v))[1]) for v in probes]
    h = worker.health()
    return {"first_answer_s": first, "first_query_s": first_query_s, "tries": tries,
            "all_probes_right": got == expected,
            "patterns_loaded": h["components"]["patterns"]["patterns"] if h else None}


async def stop(worker: WorkerProcess) -> float:
    t = time.perf_counter()
    await asyncio.to_thread(worker.stop, 60.0)
    return round(time.perf_counter() - t, 3)


# -- changelog size ------------------------------------------------------------------------------


def _log_dirs_request():
    """DescribeLogDirs (API 35) v1, which aiokafka's admin client does not offer."""
    from aiokafka.protocol.api import Request, RequestStruct, Response
    from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

    class DescribeLogDirsResponse_v1(Response):
        API_KEY = 35
        API_VERSION = 1
        SCHEMA = Schema(
            ("throttle_time_ms", Int32),
            ("log_dirs", Array(("error_code", Int16), ("log_dir", String("utf-8")),
                               ("topics", Array(("name", String("utf-8")),
                                                ("partitions", Array(("partition_index", Int32),
                                                                     ("partition_size", Int64),
                                                                     ("offset_lag", Int64),
                                                                     ("is_future_key", Boolean))))))),
        )

    class DescribeLogDirsRequestStruct_v1(RequestStruct):
        API_KEY = 35
        API_VERSION = 1
        RESPONSE_TYPE = DescribeLogDirsResponse_v1
        SCHEMA = Schema(("topics", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))))

    class DescribeLogDirsRequest(Request[DescribeLogDirsRequestStruct_v1]):
        API_KEY = 35

        def __init__(self, topics) -> None:
            self._topics = topics

        def build(self, request_struct_class):
            return request_struct_class(self._topics)

    return DescribeLogDirsRequest


async def changelog_size(s: Settings) -> dict:
    """Messages (end - start offsets) and bytes on the broker of `<app id>-memory-changelog`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    topic = f"{s.app_id}-memory-changelog"
    out: dict = {"topic": topic}
    consumer = AIOKafkaConsumer(**kafka_client_options(s), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if tps:
            begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            out["messages"] = sum(end[tp] - begin[tp] for tp in tps)
            out["messages_per_partition"] = [end[tp] - begin[tp] for tp in tps]
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(**kafka_client_options(s))
    await admin.start()
    try:
        req = _log_dirs_request()([(topic, sorted(parts))])
        sizes = []
        for node in admin._client.cluster.brokers():
            resp = await admin._send_request_to_node(node.nodeId, req)
            for _err, _dir, topics in resp.log_dirs:
                for name, partitions in topics:
                    if name == topic:
                        sizes += [size for _p, size, _lag, _future in partitions]
        out["bytes"] = sum(sizes)
        out["mb"] = round(sum(sizes) / MB, 1)
    except Exception as exc:  # noqa: BLE001  (the size is a nice-to-have)
        out["bytes"] = None
        out["bytes_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await admin.close()
    return out


# -- 1. restart from the changelog ---------------------------------------------------------------


class Outputs(Arrivals):
    """Arrivals that also keep each recognition (first seen)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.records: dict[str, dict] = {}

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    d = orjson.loads(m.value)
                    self.times.setdefault(d["event_id"], now)
                    self.records.setdefault(d["event_id"], d)


async def wait_all(out: Outputs, ids: list[str], timeout: float, label: str) -> float:
    t = time.perf_counter()
    deadline = t + timeout
    last_print = t
    while True:
        got = sum(1 for i in ids if i in out.times)
        if got == len(ids):
            return time.perf_counter() - t
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"{label}: {got}/{len(ids)} recognitions after {timeout}s")
        if now - last_print > 15:
            print(f"  {label}: {got}/{len(ids)} recognitions after {now - t:.0f}s", flush=True)
            last_print = now
        if out._task is not None and out._task.done():
            out._task.result()
        await asyncio.sleep(0.5)


def rec_limits(patterns: int) -> dict[str, str]:
    cap = str(int(patterns * 1.2) + 10)
    return {"FMS_MAX_PATTERNS": cap, "FMS_CLEANUP_PATTERNS": cap,
            "FMS_MAX_MEMORY_BYTES": str(1024 * MB), "FMS_CLEANUP_MEMORY_BYTES": str(800 * MB)}


def _start_row(marks: dict, answer: dict | None, stop_s: float | None) -> dict:
    row = {k: v for k, v in marks.items() if not k.startswith("_")}
    if answer is not None:
        row.update(answer)
        if answer.get("first_answer_s") is not None:
            row["answer_after_ready_s"] = round(answer["first_answer_s"] - marks["ready_s"], 3)
    row["clean_stop_s"] = stop_s
    return row


async def restart(bootstrap: str, run_id: str, args, tmp: Path) -> dict:
    n = args.patterns
    s = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.rec.", app_id=f"{run_id}-rec",
                 partitions=args.partitions)
    bare = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.bare.", app_id=f"{run_id}-bare",
                    partitions=args.partitions)
    await ensure_topics(s)
    await ensure_topics(bare)
    limits = rec_limits(n)
    space = "big"
    feats, centres = well_separated(space, n, 1, args.dim, seed=11, prefix="b")
    probe_idx = [0, n // 2, n - 1]
    probes = centres[probe_idx]

    # Learn.
    out = Outputs(s, s.topic("recognitions"))
    await out.start()
    learner, marks = await launch(worker_env(s, bootstrap, tmp / "learner", limits), tmp / "learner.log", 120)
    print(f"learner ready in {marks['ready_s']:.1f}s; publishing {n} records ({args.dim} dims, one space)", flush=True)
    try:
        t = time.perf_counter()
        await publish(s, s.topic("audio-features"), feats)
        published_s = time.perf_counter() - t
        learn_s = await wait_all(out, [f.id for f in feats], args.learn_timeout, "learning")
        created = sum(1 for f in feats if out.records[f.id]["new"])
        expected = [top((await asyncio.to_thread(recognize, learner.url, space, v))[1]) for v in probes]
        h = learner.health()
        learned_patterns = h["components"]["patterns"]["patterns"] if h else None
    finally:
        learner_stop_s = await stop(learner)
        await out.stop()
    learn = {"records": n, "published_s": round(published_s, 1), "all_recognized_s": round(learn_s, 1),
             "records_per_s": round(n / learn_s, 1), "patterns_created": created,
             "patterns_loaded_in_learner": learned_patterns, "learner_clean_stop_s": learner_stop_s,
             "reference_pattern_ids": expected}
    print(f"learned: {created} patterns created from {n} records in {learn_s:.1f}s ({n / learn_s:.0f}/s); "
          f"learner holds {learned_patterns}; clean stop {learner_stop_s}s", flush=True)
    if created != n or None in expected:
        print(f"  WARNING: expected {n} new patterns and three reference answers, got {created}, {expected}")
    size0 = await changelog_size(s)
    print(f"changelog {size0['topic']}: {size0.get('messages')} messages, {size0.get('mb')} MB on the broker "
          f"{size0.get('bytes_error', '')}", flush=True)

    rows: dict[str, list] = {"bare": [], "fresh": [], "warm": []}
    sizes = []
    for r in range(args.repeats):
        # bare: no state at all
        w, m = await launch(worker_env(bare, bootstrap, tmp / f"bare{r}"), tmp / f"bare{r}.log", 120)
        status, _ = await asyncio.to_thread(recognize, w.url, space, probes[0])
        m["recognize_status"] = status
        rows["bare"].append(_start_row(m, None, await stop(w)))

        # fresh: empty data dir, the whole changelog
        sizes.append(await changelog_size(s))
        d = tmp / f"fresh{r}"
        w, m = await launch(worker_env(s, bootstrap, d, limits), tmp / f"fresh{r}.log", args.recovery_timeout)
        ans = await first_right_answer(w, space, probes, expected, m["_t0"], 120)
        rows["fresh"].append(_start_row(m, ans, await stop(w)))

        # warm: same dir after a clean stop, only the changelog's tail
        w, m = await launch(worker_env(s, bootstrap, d, limits), tmp / f"warm{r}.log", args.recovery_timeout)
        ans = await first_right_answer(w, space, probes, expected, m["_t0"], 120)
        rows["warm"].append(_start_row(m, ans, await stop(w)))
        shutil.rmtree(d, ignore_errors=True)
        b, f, wm = rows["bare"][-1], rows["fresh"][-1], rows["warm"][-1]
        print(f"repeat {r}: bare ready {b['ready_s']:.2f}s | fresh ready {f['ready_s']:.2f}s, first right answer "
              f"{_f(f.get('first_answer_s'))}s (first query {_f(f.get('first_query_s'))}s, all probes right "
              f"{f['all_probes_right']}) | warm ready {wm['ready_s']:.2f}s, first right answer "
              f"{_f(wm.get('first_answer_s'))}s (first query {_f(wm.get('first_query_s'))}s, all probes right "
              f"{wm['all_probes_right']}) | changelog {sizes[-1].get('mb')} MB", flush=True)

    early = None
    if args.early_probe:
        early = await early_probe(bootstrap, s, limits, space, probes, expected, tmp)

    def med(kind: str, key: str):
        vals = [row[key] for row in rows[kind] if row.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None

    medians = {kind: {key: med(kind, key) for key in
                      ("serving_http_s", "assigned_s", "ready_s", "first_answer_s", "first_query_s",
                       "answer_after_ready_s", "clean_stop_s")} for kind in rows}

    def diff(a, b):
        return round(a - b, 3) if a is not None and b is not None else None

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    fm, wm, bm = medians["fresh"], medians["warm"], medians["bare"]
    return {
        "space": space, "patterns": n, "dim": args.dim, "partitions": args.partitions, "limits_env": limits,
        "learn": learn,
        "changelog_after_learning": size0,
        "changelog_before_each_fresh_start": sizes,
        "starts": rows,
        "median": medians,
        "fresh_recovery_cost_s": {"ready": diff(fm["ready_s"], bm["ready_s"]),
                                  "first_answer": diff(fm["first_answer_s"], bm["ready_s"])},
        "warm_recovery_cost_s": {"ready": diff(wm["ready_s"], bm["ready_s"]),
                                 "first_answer": diff(wm["first_answer_s"], bm["ready_s"])},
        "ratio_warm_to_fresh": {"ready": ratio(wm["ready_s"], fm["ready_s"]),
                                "first_answer": ratio(wm["first_answer_s"], fm["first_answer_s"])},
        "restore_mb_per_s": round(size0["bytes"] / MB / (fm["ready_s"] - bm["ready_s"]), 1)
        if size0.get("bytes") and fm["ready_s"] and bm["ready_s"] and fm["ready_s"] > bm["ready_s"] else None,
        "early_probe": early,
    }


async def early_probe(bootstrap: str, s: Settings, limits: dict, space: str, probes: np.ndarray,
                      expected: list[str], tmp: Path) -> dict:
    """A fresh start polled with /recognize (the last-created pattern) from the spawn on."""
    d = tmp / "early"
    w, m = await launch(worker_env(s, bootstrap, d, limits), tmp / "early.log", 600, early=(space, probes[-1]))
    try:
        t0, polls = m["_t0"], m["_polls"]
        after = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status, ans = await asyncio.to_thread(recognize, w.url, space, probes[-1])
            after.append((round(time.perf_counter() - t0, 3), status, top(ans)))
            if status == 200 and top(ans) == expected[-1]:
                break
            await asyncio.sleep(0.25)
        h = w.health()
        loaded = h["components"]["patterns"]["patterns"] if h else None
        others = [top((await asyncio.to_thread(recognize, w.url, space, v))[1]) for v in probes]
    finally:
        stop_s = await stop(w)
        shutil.rmtree(d, ignore_errors=True)
    before_ok = [p for p in polls if p[1] == 200]
    wrong_before = [p for p in before_ok if p[2] != expected[-1]]
    row = {
        "ready_s": m["ready_s"], "serving_http_s": m.get("serving_http_s"), "assigned_s": m.get("assigned_s"),
        "polls_before_ready": len(polls),
        "statuses_before_ready": {str(k): sum(1 for p in polls if p[1] == k) for k in {p[1] for p in polls}},
        "answered_200_before_ready": len(before_ok),
        "wrong_answers_before_ready": len(wrong_before),
        "first_200_s": before_ok[0][0] if before_ok else (after[0][0] if after and after[0][1] == 200 else None),
        "right_after_ready": bool(after) and after[-1][1] == 200 and after[-1][2] == expected[-1],
        "first_right_answer_s": after[-1][0] if after and after[-1][2] == expected[-1] else None,
        "polls_after_ready": len(after),
        "patterns_loaded_after": loaded,
        "all_probes_right_after": others == expected,
        "clean_stop_s": stop_s,
        "polls": polls[:40] + after[:10],
    }
    print(f"early probe: {len(polls)} /recognize polls during startup ({row['statuses_before_ready']}), "
          f"{len(wrong_before)} answered 200 with another pattern; ready {m['ready_s']:.2f}s; right after ready: "
          f"{row['right_after_ready']} ({row['polls_after_ready']} polls), index holds {loaded} patterns, "
          f"all probes right {row['all_probes_right_after']}", flush=True)
    return row


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# -- 2. takeover ---------------------------------------------------------------------------------


async def takeover_trial(bootstrap: str, run_id: str, k: int, session_s: float, args, tmp: Path) -> dict:
    s = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.tk{k}.", app_id=f"{run_id}-tk{k}",
                 partitions=4)
    await ensure_topics(s)
    spaces = spaces_over_partitions(4, 2)
    feats, centres = [], {}
    for j, space in enumerate(spaces):
        f, c = well_separated(space, args.takeover_patterns, 2, args.dim, seed=1000 + 17 * k + j, prefix=f"{space}-")
        feats += f
        centres[space] = c
    extra = {"FMS_SESSION_TIMEOUT_S": f"{session_s:g}", "FMS_STANDBY_REPLICAS": "1"}
    base = tmp / f"tk{k}"
    out = Outputs(s, s.topic("recognitions"))
    await out.start()
    a = b = None
    try:
        a, _ = await launch(worker_env(s, bootstrap, base / "a", extra), base / "a.log", 120)
        b, _ = await launch(worker_env(s, bootstrap, base / "b", extra), base / "b.log", 120)
        await asyncio.to_thread(a.wait_ready, 60)  # a has rebalanced for b
        await publish(s, s.topic("audio-features"), feats)
        await wait_all(out, [f.id for f in feats], 180, f"takeover trial {k}")
        a_name, b_name = worker_name(a), worker_name(b)
        owner, ref0, ref1 = {}, {}, {}
        for space, c in centres.items():
            status, ans = await asyncio.to_thread(recognize, a.url, space, c[0])
            owner[space], ref0[space] = ans["worker"], top(ans)
            ref1[space] = top((await asyncio.to_thread(recognize, a.url, space, c[1]))[1])
        victim_spaces = [sp for sp in spaces if owner[sp] == b_name]
        own_spaces = [sp for sp in spaces if owner[sp] == a_name]
        if not victim_spaces or not own_spaces:
            raise RuntimeError(f"trial {k}: both workers should own spaces: {owner}")
        after = {space: AudioFeature(id=f"{space}-after-kill", space=space,
                                     vector=centres[space][1] + np.float32(0.01), model_id=None,
                                     ts=1_700_000_000.0 + 3600.0, meta=None) for space in spaces}

        kill_wall, t0 = time.time(), time.monotonic()
        b.kill()
        killed_s = time.monotonic() - t0
        await publish(s, s.topic("audio-features"), list(after.values()))
        published_s = time.monotonic() - t0

        answered: dict[str, float] = {}
        failures: dict[str, list[float]] = {sp: [] for sp in own_spaces}
        statuses: dict[str, int] = {}
        rebalance_start = rebalance_end = None
        deadline = t0 + args.takeover_timeout
        while time.monotonic() < deadline:
            for space in spaces:
                if space in answered and space in victim_spaces:
                    continue
                status, ans = await asyncio.to_thread(recognize, a.url, space, centres[space][0], 10.0)
                now = time.monotonic() - t0
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                ok = status == 200 and ans.get("worker") == a_name and top(ans) == ref0[space]
                if ok:
                    answered.setdefault(space, now)
                elif space in failures:
                    failures[space].append(now)
            h = await asyncio.to_thread(a.health)
            now = time.monotonic() - t0
            if h is not None and h["components"]["kafka"]["rebalancing"]:
                rebalance_start = rebalance_start if rebalance_start is not None else now
            elif h is not None and rebalance_start is not None and rebalance_end is None:
                rebalance_end = now
            if (all(sp in answered for sp in victim_spaces) and all(f"{sp}-after-kill" in out.times for sp in spaces)
                    and (rebalance_start is None or rebalance_end is not None)):
                break
            await asyncio.sleep(0.1)
        arrivals = {sp: out.times[f"{sp}-after-kill"] - kill_wall for sp in spaces if f"{sp}-after-kill" in out.times}
        continued = {sp: (out.records[f"{sp}-after-kill"]["pattern_id"] == ref1[sp]
                          and not out.records[f"{sp}-after-kill"]["new"]) for sp in spaces
                     if f"{sp}-after-kill" in out.records}
    finally:
        if b is not None:
            await stop(b)
        if a is not None:
            await stop(a)
        await out.stop()

    victim_answers = [answered.get(sp) for sp in victim_spaces]
    takeover = round(max(victim_answers), 3) if None not in victim_answers else None
    victim_new = [arrivals.get(sp) for sp in victim_spaces]
    new_record = round(max(victim_new), 3) if None not in victim_new else None
    own_gaps = {sp: [round(v[0], 2), round(v[-1], 2), len(v)] if v else None for sp, v in failures.items()}
    heartbeat = min(3.0, session_s / 4)
    row = {
        "session_timeout_s": session_s,
        "heartbeat_interval_s": heartbeat,
        "spaces": spaces,
        "records": len(feats),
        "patterns_per_space": args.takeover_patterns,
        "victim_spaces": victim_spaces,
        "survivor_spaces": own_spaces,
        "kill_s": round(killed_s, 3),
        "post_kill_records_published_s": round(published_s, 3),
        "takeover_s": takeover,
        "takeover_minus_session_timeout_s": round(takeover - session_s, 3) if takeover is not None else None,
        "per_victim_space_answer_s": {sp: round(answered[sp], 3) for sp in victim_spaces if sp in answered},
        "new_record_recognized_s": new_record,
        "new_record_minus_session_timeout_s": round(new_record - session_s, 3) if new_record is not None else None,
        "survivor_spaces_new_record_s": {sp: round(arrivals[sp], 3) for sp in own_spaces if sp in arrivals},
        "continued_from_state": all(continued.get(sp, False) for sp in spaces),
        "survivor_rebalance_s": [_r(rebalance_start), _r(rebalance_end)],
        "survivor_own_spaces_failed_polls": own_gaps,
        "statuses": statuses,
    }
    print(f"takeover trial {k} (session timeout {session_s:g}s, heartbeat {heartbeat:g}s): victim owned "
          f"{len(victim_spaces)}/{len(spaces)} spaces; survivor answered all of them {_f(takeover)}s after the "
          f"kill (timeout + {_f(row['takeover_minus_session_timeout_s'])}s), new records recognized "
          f"{_f(new_record)}s; survivor rebalancing {row['survivor_rebalance_s']}; state continued "
          f"{row['continued_from_state']}; survivor's own spaces failed polls {own_gaps}", flush=True)
    return row


def _r(x):
    return None if x is None else round(x, 3)


async def takeover(bootstrap: str, run_id: str, args, tmp: Path) -> dict:
    trials, by_setting = [], {}
    k = 0
    for session_s in args.session_timeouts:
        rows = []
        for _ in range(args.takeover_trials):
            rows.append(await takeover_trial(bootstrap, run_id, k, session_s, args, tmp))
            k += 1
        trials += rows

        def med(key):
            vals = [r[key] for r in rows if r[key] is not None]
            return round(statistics.median(vals), 3) if vals else None

        by_setting[f"{session_s:g}"] = {
            "session_timeout_s": session_s, "trials": len(rows),
            "takeover_s": med("takeover_s"), "takeover_minus_session_timeout_s": med("takeover_minus_session_timeout_s"),
            "new_record_recognized_s": med("new_record_recognized_s"),
            "new_record_minus_session_timeout_s": med("new_record_minus_session_timeout_s"),
            "each_takeover_s": [r["takeover_s"] for r in rows],
            "continued_from_state": all(r["continued_from_state"] for r in rows),
        }
    return {"by_session_timeout": by_setting, "trials": trials}


# -- main ----------------------------------------------------------------------------------------


async def broker_parts(bootstrap: str, args) -> dict:
    run_id = f"rcv{int(time.time())}"
    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="fms-bench-recovery-"))
    try:
        if not args.skip_restart:
            results["restart"] = await restart(bootstrap, run_id, args, tmp)
        if not args.skip_takeover:
            results["takeover"] = await takeover(bootstrap, run_id, args, tmp)
    finally:
        if not args.keep_topics:
            await delete_run_topics(Settings(bootstrap_servers=bootstrap), run_id)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patterns", type=int, default=10_000, help="patterns (one record each) in the restarted space")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--partitions", type=int, default=4, help="FMS_PARTITIONS for the restart part")
    p.add_argument("--repeats", type=int, default=3, help="bare / fresh / warm starts each")
    p.add_argument("--no-early-probe", dest="early_probe", action="store_false",
                   help="skip the fresh start polled with /recognize during recovery")
    p.add_argument("--learn-timeout", type=float, default=600.0)
    p.add_argument("--recovery-timeout", type=float, default=600.0)
    p.add_argument("--session-timeouts", type=floats, default=[10.0, 6.0])
    p.add_argument("--takeover-trials", type=int, default=2, help="per session timeout")
    p.add_argument("--takeover-patterns", type=int, default=50, help="patterns per space (2 records each)")
    p.add_argument("--takeover-timeout", type=float, default=90.0)
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--skip-takeover", action="store_true")
    p.add_argument("--keep-topics", action="store_true")
    p.add_argument("--name", default="recovery", help="results/<name>.json")
    args = p.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()

    with broker() as bootstrap:
        results = asyncio.run(broker_parts(bootstrap, args))

    goals: dict = {}
    observations: dict = {}
    rs = results.get("restart")
    if rs:
        m = rs["median"]
        print(f"\nrestart with {rs['patterns']} patterns x {rs['dim']} in one space "
              f"(changelog {rs['changelog_after_learning'].get('messages')} messages, "
              f"{rs['changelog_after_learning'].get('mb')} MB), medians of {args.repeats}:")
        for kind in ("bare", "fresh", "warm"):
            k = m[kind]
            print(f"  {kind:<5}: http {_f(k['serving_http_s'])}s  assigned {_f(k['assigned_s'])}s  ready "
                  f"{_f(k['ready_s'])}s  first right answer {_f(k['first_answer_s'])}s (first query "
                  f"{_f(k['first_query_s'])}s)  clean stop {_f(k['clean_stop_s'])}s")
        print(f"  recovery cost over a bare start: fresh {rs['fresh_recovery_cost_s']}, warm {rs['warm_recovery_cost_s']};"
              f" warm/fresh {rs['ratio_warm_to_fresh']}; restore ~{rs['restore_mb_per_s']} MB/s")
        observations["fresh_ready_s_10k"] = m["fresh"]["ready_s"]
        observations["fresh_first_answer_s_10k"] = m["fresh"]["first_answer_s"]
        observations["warm_ready_s_10k"] = m["warm"]["ready_s"]
        observations["warm_first_answer_s_10k"] = m["warm"]["first_answer_s"]
        observations["bare_ready_s"] = m["bare"]["ready_s"]
        observations["changelog_mb_10k"] = rs["changelog_after_learning"].get("mb")
        observations["changelog_messages_10k"] = rs["changelog_after_learning"].get("messages")
        observations["learn_records_per_s"] = rs["learn"]["records_per_s"]
        goals["restored_state_answers_as_before"] = all(
            r["all_probes_right"] for kind in ("fresh", "warm") for r in rs["starts"][kind])
        goals["warm_restart_faster_than_fresh"] = (m["warm"]["first_answer_s"] or 1e9) < (m["fresh"]["first_answer_s"] or 0)
        if rs["early_probe"]:
            e = rs["early_probe"]
            goals["queries_during_recovery_leave_no_stale_index"] = bool(e["right_after_ready"]
                                                                         and e["all_probes_right_after"])
    tk = results.get("takeover")
    if tk:
        print("\ntakeover, one of two workers SIGKILLed (medians per session timeout):")
        for key, row in tk["by_session_timeout"].items():
            print(f"  session timeout {key}s: takeover {_f(row['takeover_s'])}s (timeout + "
                  f"{_f(row['takeover_minus_session_timeout_s'])}s), new record recognized "
                  f"{_f(row['new_record_recognized_s'])}s, each {row['each_takeover_s']}, state continued "
                  f"{row['continued_from_state']}")
            observations[f"takeover_s_session_{key}"] = row["takeover_s"]
            observations[f"takeover_minus_session_timeout_s_session_{key}"] = row["takeover_minus_session_timeout_s"]
            observations[f"new_record_s_session_{key}"] = row["new_record_recognized_s"]
        over = [r["takeover_minus_session_timeout_s"] for r in tk["trials"]]
        goals["takeover_within_session_timeout_plus_5s"] = None not in over and max(over) < GOALS[
            "takeover_over_session_timeout_s"]
        goals["takeover_continues_from_state"] = all(r["continued_from_state"] for r in tk["trials"])
    print(f"observations: {observations}")
    print(f"goals: {goals}")
    save(args.name, {
        "goal_targets": GOALS,
        "goals": goals,
        "observations": observations,
        **results,
        "method": {
            "restart": "real fms worker per start; times from the process spawn (perf_counter); ready = "
                       "WorkerProcess.start() returned (partitions assigned, not rebalancing: past recovery); "
                       "first_answer = first POST /recognize sent after ready that names the learner's pattern; "
                       "repeats interleave bare, fresh, warm; medians",
            "takeover": "two fms workers, 4 partitions, standby replicas 1, 8 spaces 2 per partition; SIGKILL one "
                        "after learning; poll the survivor's /recognize (every space) and /health every ~0.1 s",
        },
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "runtime_s": round(time.perf_counter() - started, 1),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
