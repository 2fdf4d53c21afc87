"""The first slice end to end: fms.audio-features -> real worker -> fms.recognitions and fms.patterns."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
import urllib.request

import numpy as np

from schemas.codec import decode
from schemas.records import AudioFeature
from streams.core.generations import compacted_state
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.core.quality import adjusted_rand_index
from streams.ops.demo import grouped_stream
from streams.ops.publish import publish, read_topic
from streams.service.settings import Settings
from streams.service.topics import ensure_topics


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], topic_prefix=env["FMS_TOPIC_PREFIX"],
                    app_id=env["FMS_APP_ID"], partitions=int(env["FMS_PARTITIONS"]))


def two_space_stream(n: int) -> tuple[list[AudioFeature], list[str]]:
    """Two spaces with their own dimensions and groups, interleaved."""
    a, ta = grouped_stream(n // 2, 4, dim=32, seed=1, space="space-a")
    b, tb = grouped_stream(n - n // 2, 3, dim=48, seed=2, space="space-b")
    feats, truth = [], []
    for i in range(max(len(a), len(b))):
        for recs, tr, tag in ((a, ta, "a"), (b, tb, "b")):
            if i < len(recs):
                feats.append(dataclasses.replace(recs[i], id=f"{tag}-{i}"))
                truth.append(f"{tag}{tr[i]}")
    return feats, truth


def run_stream(settings: Settings, feats: list[AudioFeature]) -> tuple[dict, dict]:
    """Publish, then collect the recognitions by event id and the newest pattern state by key."""
    async def go():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        recs = await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=120)
        await settled(settings)  # pattern events are on other partitions than the recognitions
        pats = await read_topic(settings, settings.topic("patterns"))
        return recs, pats

    recs, pats = asyncio.run(go())
    recognitions = {}
    for key, raw in recs:
        decoded = decode("recognitions", raw)
        assert decoded.result.is_valid, decoded.result.errors
        assert key == decoded.record.space
        recognitions[decoded.record.event_id] = decoded.record
    patterns = {}
    for key, raw in pats:
        patterns[key] = None if raw is None else decode("patterns", raw).record
    return recognitions, patterns


async def settled(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until the memory's group has committed every record of its inputs. faust flushes a
    record's outputs before it commits its offset, so a topic read after this holds them all."""
    from streams.kafka.metadata import committed_behind
    from streams.service.topics import kafka_client_options

    inputs = [settings.topic("audio-features"), settings.topic("interactions")]
    deadline = time.monotonic() + timeout
    while behind := await committed_behind(kafka_client_options(settings), settings.memory_app_id, inputs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{settings.memory_app_id} has not committed {behind} records of {inputs}")
        await asyncio.sleep(0.2)


def expected_memory(feats: list[AudioFeature]) -> dict[str, SpaceMemory]:
    """The core run directly, in process: what the worker must have learned."""
    memories: dict[str, SpaceMemory] = {}
    for f in feats:
        memories.setdefault(f.space, SpaceMemory(f.space, PatternConfig())).learn_one(f.id, f.vector, f.ts)
    return memories


def strip_ts(record) -> dict:
    d = record.to_dict()
    d.pop("ts")
    return d


def test_features_in_recognitions_and_patterns_out(memory_env, workers):
    env = memory_env()
    feats, truth = two_space_stream(400)
    worker = workers(env)
    recognitions, patterns = run_stream(settings_of(env), feats)

    assert set(recognitions) == {f.id for f in feats}, "every accepted feature has exactly one recognition"
    expected = expected_memory(feats)
    # A recognition names the pattern of its time; one absorbed by a later merge resolves to its survivor.
    predicted = [expected[f.space].resolve(recognitions[f.id].pattern_id) for f in feats]
    assert adjusted_rand_index(truth, predicted) == 1.0
    assert sum(len(m) for m in expected.values()) == 7  # 4 groups in space-a, 3 in space-b

    live = {k: p for k, p in patterns.items() if p is not None}
    assert set(live) == {f"{s}/{p.pattern_id}" for s, m in expected.items() for p in m.patterns()}
    for space, memory in expected.items():
        for p in memory.patterns():
            event = live[f"{space}/{p.pattern_id}"]
            assert event.count == p.count
            assert event.confidence == p.confidence
            assert np.array_equal(event.centroid, p.centroid)
    counts = sorted(p.count for p in live.values())
    assert sum(counts) == len(feats)

    # Every recognized id that a merge absorbed is named by its survivor's "merged" record, so a
    # consumer can relabel what it saw; nothing live is named as absorbed.
    history = [decode("patterns", raw).record for _, raw in asyncio.run(read_topic(settings_of(env), settings_of(env).topic("patterns"))) if raw is not None]
    named = {(e.space, a): e.pattern_id for e in history if e.event == "merged" for a in e.absorbed or ()}
    gone = {(f.space, recognitions[f.id].pattern_id) for f in feats
            if f"{f.space}/{recognitions[f.id].pattern_id}" not in live}
    assert gone, "the stream's strict start split records that merges rejoined"
    assert set(named) == gone
    for (space, absorbed), survivor in named.items():
        assert expected[space].resolve(absorbed) == expected[space].resolve(survivor)
        assert f"{space}/{absorbed}" not in live
    # GET /patterns/<space> relabels them too, for a consumer that comes after compaction dropped
    # the merge records: every recognized id to the live pattern it stands for now.
    for space, memory in expected.items():
        served = json.loads(urllib.request.urlopen(f"{worker.url}/patterns/{space}", timeout=10).read())
        into = served["merged_into"]
        assert {a for s, a in gone if s == space} <= set(into)
        assert [into.get(recognitions[f.id].pattern_id, recognitions[f.id].pattern_id)
                for f in feats if f.space == space] == [memory.resolve(recognitions[f.id].pattern_id)
                                                        for f in feats if f.space == space]


def test_same_input_into_fresh_state_gives_identical_output(memory_env, workers):
    feats, _ = two_space_stream(200)
    outputs = []
    for _ in range(2):
        env = memory_env()
        worker = workers(env)
        recognitions, patterns = run_stream(settings_of(env), feats)
        worker.stop()
        outputs.append((
            {k: strip_ts(r) for k, r in recognitions.items()},
            {k: p.to_dict() if p else None for k, p in patterns.items()},
        ))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]


def first_half_then_stop(memory_env, workers):
    """A worker learns the first 150 of 300 records and stops cleanly: (env, settings, all the
    records, the first half, the second half)."""
    env = memory_env()
    settings = settings_of(env)
    feats, _ = two_space_stream(300)
    worker = workers(env)
    run_stream(settings, feats[:150])
    worker.stop()
    return env, settings, feats, feats[:150], feats[150:]


def test_state_recovers_from_changelog_after_local_state_is_deleted(memory_env, workers):
    env, settings, feats, _, second = first_half_then_stop(memory_env, workers)
    shutil.rmtree(env["FMS_DATA_DIR"])

    workers(env)
    by_id = go_on_with(settings, feats, second)
    assert not any(by_id[f.id].new for f in second), "no pattern was re-created after recovery"


def go_on_with(settings: Settings, feats: list[AudioFeature], second: list[AudioFeature]) -> dict:
    """Publish `second` (the rest of `feats`) to a restarted worker; every recognition of `feats`
    must name the pattern an uninterrupted run of the core gives. The recognitions by event id."""
    async def rest():
        await publish(settings, settings.topic("audio-features"), second)
        return await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=120)
    by_id = {r.event_id: r for r in (decode("recognitions", raw).record for _, raw in asyncio.run(rest()))}
    replay = {s: SpaceMemory(s, PatternConfig()) for s in expected_memory(feats)}
    reference = {f.id: replay[f.space].learn_one(f.id, f.vector, f.ts).pattern_id for f in feats}
    assert {i: by_id[i].pattern_id for i in reference} == reference, \
        "after the restart, recognitions keep the same pattern ids"
    return by_id


def stored_pattern_keys(data_dir: str) -> set[str]:
    """The pattern keys in every RocksDB database of the worker's local store, read directly."""
    from pathlib import Path

    from rocksdict import AccessType, Options, Rdict

    keys: set[str] = set()
    for path in Path(data_dir).rglob("memory-*.db"):
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            keys.update(k.decode() for k in db.keys(from_key=b"p/") if k.startswith(b"p/"))
        finally:
            db.close()
    return keys


def test_a_clean_stop_keeps_the_local_state_and_a_restart_goes_on_from_it(memory_env, workers):
    # The store is written without RocksDB's write-ahead log (streams.state.changelog): what a clean stop
    # leaves must still be the whole state, and the next worker on the same directory goes on from it.
    env, settings, feats, first, second = first_half_then_stop(memory_env, workers)
    live = {f"p/{space}/{p.pattern_id}" for space, m in expected_memory(first).items() for p in m.patterns()}
    assert live and stored_pattern_keys(env["FMS_DATA_DIR"]) == live

    workers(env)
    go_on_with(settings, feats, second)


def recognitions_of(settings: Settings, ids, timeout: float = 120.0) -> dict[str, list]:
    """Every recognition on the topic by event id, once all of `ids` have one (redelivered records
    may have several: a count of records is not enough to know the tail has arrived)."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        by_id: dict[str, list] = {}
        for _, raw in asyncio.run(read_topic(settings, settings.topic("recognitions"))):
            r = decode("recognitions", raw).record
            by_id.setdefault(r.event_id, []).append(r)
        if wanted <= set(by_id) or time.monotonic() > deadline:
            return by_id
        time.sleep(0.5)


def test_records_delivered_again_emit_their_outputs_again_as_they_were(memory_env, workers):
    """The group's offsets sent back to the start, as `fms replay` does at its switch: every record
    comes again, is not applied again, and emits its outputs again as they were (recognitions, and
    the optimizations of interactions). The two spaces are on different partitions, so their records
    are applied and emitted in the same batches."""
    from collections import Counter

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.records import Interaction, Outcome
    from streams.service.topics import kafka_client_options

    env = memory_env()
    settings = settings_of(env)
    left, _ = grouped_stream(150, 3, dim=16, seed=5, space="left")
    right, _ = grouped_stream(150, 4, dim=24, seed=6, space="right")
    feats = [dataclasses.replace(f, id=f"{f.space}-{i}") for i in range(150) for f in (left[i], right[i])]
    worker = workers(env)
    first, _ = run_stream(settings, feats)
    ts = max(f.ts for f in feats) + 10.0
    interactions = [Interaction(id=f"{space}-i{i}", space=space, model_id=f"m-{i % 2}", config={"beam": 2 + i % 2},
                                outcome=Outcome(True, latency_ms=10.0 + i, quality=0.8), ts=ts + i,
                                pattern_id=first[f"{space}-0"].pattern_id)
                    for i in range(8) for space in ("left", "right")]
    asyncio.run(publish(settings, settings.topic("interactions"), interactions))
    asyncio.run(settled(settings))

    def optimizations() -> Counter:
        return Counter((key, repr(strip_ts(decode("optimizations", raw).record)))
                       for key, raw in asyncio.run(read_topic(settings, settings.topic("optimizations"))))

    once_optimized = optimizations()
    assert once_optimized, "the interactions gave optimizations"
    worker.stop()

    async def send_back() -> set[tuple[str, int]]:
        consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=settings.memory_app_id,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topic(name), p) for name in ("audio-features", "interactions")
                   for p in range(settings.partitions)]
            consumer.assign(tps)
            await consumer.commit({tp: 0 for tp in tps})
            return {(tp.topic, tp.partition) for tp in tps if (await consumer.end_offsets([tp]))[tp] > 0}
        finally:
            await consumer.stop()

    assert {p for _, p in asyncio.run(send_back())} == {0, 1}, "both partitions hold records"
    workers(env)
    deadline = time.monotonic() + 120
    while True:
        again = recognitions_of(settings, [f.id for f in feats])
        once = [i for i, rs in again.items() if len(rs) < 2]
        if not once or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not once, f"{len(once)} records delivered again emitted nothing again, e.g. {once[:3]}"
    assert {i: [strip_ts(r) for r in rs] for i, rs in again.items()} == \
        {i: [strip_ts(first[i])] * len(rs) for i, rs in again.items()}
    counts = {key: decode("patterns", raw).record.count
              for key, raw in compacted_state(asyncio.run(read_topic(settings, settings.topic("patterns")))).items()}
    assert counts == {f"{s}/{p.pattern_id}": p.count for s, m in expected_memory(feats).items() for p in m.patterns()}, \
        "nothing was learned twice"
    asyncio.run(settled(settings))
    assert optimizations() == Counter({k: 2 * n for k, n in once_optimized.items()}), \
        "every optimization again, as it was"
