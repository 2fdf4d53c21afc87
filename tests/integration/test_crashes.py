"""kill -9 during a stream, restart, repeat: the memory equals that of a run without crashes, and
every input record has its recognition (redelivered ones emitted again, identical but for ts)."""
from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

import numpy as np

from streams.core.patterns import PatternConfig, SpaceMemory
from streams.ops.demo import grouped_stream
from schemas.codec import decode
from streams.ops.publish import publish, read_topic
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import recognitions_of, settings_of

N = 3000
RATE = 150.0  # records per second: the stream lasts 20 s, the crashes fall inside it
COMMIT_INTERVAL_S = 0.5  # FMS_COMMIT_INTERVAL_S: what bounds the duplicates a kill leaves


def test_kill_9_at_random_points_applies_every_record_exactly_once(memory_env, workers):
    env = memory_env(FMS_PARTITIONS="1", FMS_SESSION_TIMEOUT_S="6", FMS_COMMIT_INTERVAL_S=str(COMMIT_INTERVAL_S))
    settings = settings_of(env)
    feats, _ = grouped_stream(N, 12, dim=32, seed=21, space="crashy")
    rng = random.Random(7)

    async def produce():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats, rate=RATE)

    worker = workers(env)
    publisher = asyncio.new_event_loop()
    import threading

    thread = threading.Thread(target=publisher.run_until_complete, args=(produce(),))
    thread.start()
    kills = 0
    for _ in range(3):  # kill -9 at random moments while records flow, and restart
        time.sleep(rng.uniform(0.5, 2.5))
        assert thread.is_alive(), "the stream still flows"
        worker.kill()
        kills += 1
        worker = workers(env)
    thread.join(60)
    publisher.close()

    by_id = recognitions_of(settings, [f.id for f in feats])
    assert set(by_id) == {f.id for f in feats}, "every input record has its recognition"
    duplicates = sum(len(v) for v in by_id.values()) - N
    assert duplicates > 0, "the crashes left records to deliver again"
    # Only what was applied since the group's last commit is delivered again: at most one commit
    # interval of records per kill, at the input rate, or at the worker's own top speed (~2,000/s
    # here) while a restarted worker catches up, plus one batch in flight (64 records).
    per_kill = duplicates / kills
    print(f"duplicate recognitions: {duplicates} after {kills} kills, {per_kill:.0f} per kill "
          f"(commit interval {COMMIT_INTERVAL_S} s, input at {RATE:.0f} records/s)")
    assert per_kill <= COMMIT_INTERVAL_S * 2500 + 64, per_kill

    reference = SpaceMemory("crashy", PatternConfig())
    expected = {f.id: reference.learn_one(f.id, f.vector, f.ts) for f in feats}
    for f in feats:
        for r in by_id[f.id]:  # a redelivered record's recognition is emitted again, unchanged
            e = expected[f.id]
            assert (r.pattern_id, r.similarity, r.confidence, r.new) == (e.pattern_id, e.similarity, e.confidence,
                                                                          e.new), f.id

    served = json.loads(urllib.request.urlopen(f"{worker.url}/patterns/crashy", timeout=10).read())["patterns"]
    assert sorted(p["pattern_id"] for p in served) == sorted(reference.pattern_ids())
    for p in served:
        ref = reference.get(p["pattern_id"])
        assert p["count"] == ref.count, "no record was applied twice"
        centroid = decode_vector(p["centroid"])
        assert np.array_equal(centroid, ref.centroid)
    assert kills == 3


def decode_vector(v):
    from schemas.validation import ValidationResult
    from schemas.vectors import decode_vector as dv

    return dv(v, "centroid", ValidationResult(), max_dim=None)


def test_kill_9_during_interactions_applies_each_once_and_emits_its_optimizations(memory_env, workers):
    import threading

    from schemas.records import Interaction, Outcome
    from streams.state.optimizations import OptimizationStore
    from streams.state.patterns import Prefixed

    env = memory_env(FMS_PARTITIONS="1", FMS_SESSION_TIMEOUT_S="6")
    settings = settings_of(env)
    feats, _ = grouped_stream(200, 4, dim=16, seed=5, space="crashy")
    reference = SpaceMemory("crashy", PatternConfig())
    for f in feats:
        reference.learn_one(f.id, f.vector, f.ts)
    live = sorted(set(reference.pattern_ids()))
    rng = random.Random(3)
    inters = [Interaction(id=f"i{i}", space="crashy", model_id=f"m{i % 3}", config={"beam": rng.randint(1, 3)},
                          outcome=Outcome(rng.random() < 0.7, latency_ms=10.0, quality=round(rng.random(), 3)),
                          ts=feats[-1].ts + 1 + i, pattern_id=live[i % len(live)]) for i in range(2400)]

    worker = workers(env)
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish(settings, settings.topic("audio-features"), feats))
    assert set(recognitions_of(settings, [f.id for f in feats])) == {f.id for f in feats}

    thread = threading.Thread(target=lambda: asyncio.run(
        publish(settings, settings.topic("interactions"), inters, rate=150.0)))
    thread.start()
    for _ in range(2):
        time.sleep(rng.uniform(0.5, 2.5))
        assert thread.is_alive()
        worker.kill()
        worker = workers(env)
    thread.join(60)

    # The memory without crashes, in process.
    table: dict = {}
    opt = OptimizationStore(Prefixed(table, "o/"), Prefixed(table, "oi/"))
    expected: dict[str, list] = {}

    def related_of(pid):
        pattern = reference.get(pid)
        return None if pattern is None else pattern.related

    for i in inters:
        for e in opt.learn("crashy", i.pattern_id, i.model_id, i.config, i.outcome, i.ts,
                           reference.get(i.pattern_id).related, related_of):
            expected.setdefault(e.key, []).append(e.to_record().to_dict())
        reference.apply_feedback(i.pattern_id, i.outcome.success, i.outcome.quality, i.ts)

    deadline = time.monotonic() + 120
    while True:
        got: dict[str, list] = {}
        for key, raw in asyncio.run(read_topic(settings, settings.topic("optimizations"))):
            got.setdefault(key, []).append(decode("optimizations", raw).record.to_dict())
        # Redelivered interactions emit their records again: drop exact repeats of the last one.
        deduped = {k: [r for n, r in enumerate(v) if r not in v[:n]] for k, v in got.items()}
        if deduped == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert deduped == expected, "every optimization event once, as without crashes (repeats identical)"

    deadline = time.monotonic() + 60
    while True:  # until the worker has applied the last interaction of every pattern
        served = {p["pattern_id"]: p for p in json.loads(urllib.request.urlopen(
            f"{worker.url}/patterns/crashy", timeout=10).read())["patterns"]}
        if all(served[pid]["last_ts"] == reference.get(pid).last_ts for pid in live) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for pid in live:
        ref = reference.get(pid)
        assert served[pid]["confidence"] == reference.confidence_at(ref), "feedback applied exactly once"
