"""A backlog far larger than the memory's buffer, behind an open breaker: read as fast as it is
applied, not into memory, and nothing lost or applied twice."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import urllib.request

from streams.ops.demo import grouped_stream
from streams.ops.publish import publish
from streams.service.topics import ensure_topics
from streams.core.patterns import PatternConfig, SpaceMemory
from tests.integration.test_recognition import recognitions_of, settings_of

BUFFER_MAX = 40


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_a_backlog_behind_an_open_breaker_pauses_its_partitions_and_each_record_is_applied_once(memory_env, workers):
    # While the learn breaker is open nothing is applied, and nothing else holds the consumer back.
    env = memory_env(FMS_BUFFER_MAX=str(BUFFER_MAX), FMS_FAULT_INJECT="learn:5")
    settings = settings_of(env)
    feats = [dataclasses.replace(f, id=f"{f.space}-{i}")
             for space, n, groups, seed in (("backlog", 6000, 5, 3), ("backlog-b", 2000, 3, 4))
             for i, f in enumerate(grouped_stream(n, groups, dim=8, seed=seed, space=space)[0])]

    async def backlog():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
    asyncio.run(backlog())  # all of it waits before the worker starts

    worker = workers(env)
    by_id = recognitions_of(settings, [f.id for f in feats], timeout=240)

    assert {i: len(rs) for i, rs in by_id.items() if len(rs) != 1} == {}, "each record recognized once"
    assert set(by_id) == {f.id for f in feats}
    memories = {f.space: SpaceMemory(f.space, PatternConfig()) for f in feats}
    reference = {f.id: memories[f.space].learn_one(f.id, f.vector, f.ts).pattern_id for f in feats}
    assert {i: rs[0].pattern_id for i, rs in by_id.items()} == reference, "the same memory as in one pass"
    assert metric(worker.url, "fms_sequence_paused_total") > 0, "the backlog paused its partitions"
    # Per input partition, the buffer and no more: what reaches the memory past it is read again.
    bound = int(env["FMS_PARTITIONS"]) * BUFFER_MAX
    assert metric(worker.url, "fms_sequence_held_peak_records") <= bound < len(feats) / 2
