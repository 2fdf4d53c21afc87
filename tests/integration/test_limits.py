"""Limits through the real worker: evictions show as "evicted" events and tombstones on the
compacted fms.patterns topic, and the live patterns there are exactly the memory's."""
from __future__ import annotations

import asyncio

import numpy as np

from schemas.codec import decode
from schemas.records import AudioFeature
from streams.core.generations import compacted_state
from streams.core.resilience.limits import Limits
from streams.core.patterns import PatternConfig
from streams.ops.publish import publish, read_topic
from streams.state.patterns import PatternStore
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import settings_of, settled


def test_cleanup_evicts_with_tombstones_on_the_compacted_topic(memory_env, workers):
    env = memory_env(FMS_MAX_PATTERNS="12", FMS_CLEANUP_PATTERNS="8")
    settings = settings_of(env)
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(30, 32)).astype(np.float32)
    feats = [AudioFeature(id=f"f{i}", space="lim", vector=centres[i % 30] + rng.normal(scale=0.01, size=32).astype(np.float32),
                          model_id=None, ts=100.0 + i, meta=None) for i in range(90)]
    workers(env)

    expected = PatternStore({}, {}, PatternConfig(max_patterns=12), Limits(cleanup_patterns=8))
    memory = expected.space("lim")
    for f in feats:
        expected.learn(memory, f.id, f.vector, f.ts)

    asyncio.run(ensure_topics(settings))
    asyncio.run(publish(settings, settings.topic("audio-features"), feats))
    asyncio.run(read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90))
    asyncio.run(settled(settings))  # pattern events are on other partitions than the recognitions
    records = asyncio.run(read_topic(settings, settings.topic("patterns")))
    evicted_events = [k for k, v in records if v is not None and decode("patterns", v).record.event == "evicted"]
    tombstones = [k for k, v in records if v is None]
    assert evicted_events and sorted(set(evicted_events)) == sorted(set(tombstones))
    live = set(compacted_state(records))
    assert live == {f"lim/{pid}" for pid in memory.pattern_ids()}
    assert len(live) <= 8
