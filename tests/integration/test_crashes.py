"""kill -9 during a stream, restart, repeat: the memory equals that of a run without crashes, and
every input record has its recognition (redelivered ones emitted again, identical but for ts)."""
from __future__ import annotations

import asyncio
import random
import time

import numpy as np

from streams.core.patterns import PatternConfig, SpaceMemory
from streams.demo import grouped_stream
from streams.publish import publish
from streams.topics import ensure_topics
from tests.integration.test_recognition import recognitions_of, settings_of

N = 3000
RATE = 150.0  # records per second: the stream lasts 20 s, the crashes fall inside it


def test_kill_9_at_random_points_applies_every_record_exactly_once(memory_env, workers):
    env = memory_env(FMS_PARTITIONS="1", FMS_SESSION_TIMEOUT_S="6")
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
    assert sum(len(v) for v in by_id.values()) > N, "the crashes left records to deliver again"

    reference = SpaceMemory("crashy", PatternConfig())
    expected = {f.id: reference.learn_one(f.id, f.vector, f.ts) for f in feats}
    for f in feats:
        for r in by_id[f.id]:  # a redelivered record's recognition is emitted again, unchanged
            e = expected[f.id]
            assert (r.pattern_id, r.similarity, r.confidence, r.new) == (e.pattern_id, e.similarity, e.confidence,
                                                                          e.new), f.id

    import json
    import urllib.request
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
