"""POST /recognize and GET /patterns/<space> from a two-worker setup: whichever worker is asked, the
owner of the space's partition answers, read-only."""
from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import numpy as np

from schemas.codec import decode, decode_json, encode_json
from schemas.records import AudioFeature
from streams.ops.publish import publish, read_topic
from streams.service.topics import ensure_topics
from streams.ops.demo import grouped_stream
from tests.integration.test_recognition import recognitions_of, settings_of

SPACES = [f"space-{i}" for i in range(6)]
DIM = 24


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, decode_json(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, decode_json(exc.read())


def stable(workers_, timeout=90.0) -> None:
    """Both workers past the rebalance that the second one's arrival started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hs = [w.health() for w in workers_]
        if all(h and h["components"]["kafka"]["status"] == "healthy"
               and h["components"]["kafka"]["assigned_partitions"] > 0 for h in hs):
            return
        time.sleep(0.3)
    raise AssertionError(f"workers not stable: {[w.health() for w in workers_]}")


def test_recognize_and_patterns_answered_by_the_owner_from_either_worker(memory_env, workers):
    env = memory_env(FMS_PARTITIONS="4")
    settings = settings_of(env)
    rng = np.random.default_rng(5)
    centres = {s: rng.normal(size=(2, DIM)).astype(np.float32) for s in SPACES}
    feats = [AudioFeature(id=f"{s}-{i}", space=s, vector=centres[s][i % 2] + rng.normal(scale=0.01, size=DIM).astype(np.float32),
                          model_id=None, ts=1.0 + i, meta=None) for s in SPACES for i in range(10)]

    a = workers(env)
    b = workers({**env, "FMS_DATA_DIR": env["FMS_DATA_DIR"] + "-b"})
    stable([a, b])
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish(settings, settings.topic("audio-features"), feats))
    recs = asyncio.run(read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90))
    pattern_of = {r.event_id: r.pattern_id for r in (decode("recognitions", v).record for _, v in recs)}
    stable([a, b])

    owners = set()
    for space in SPACES:
        query = encode_json({"space": space, "vector": centres[space][1].tolist(), "k": 2})
        answers = [call(f"{w.url}/recognize", query) for w in (a, b)]
        assert answers[0] == answers[1], f"both workers give the owner's answer for {space}"
        status, body = answers[0]
        assert status == 200, body
        owners.add(body["worker"])
        assert body["matches"][0]["pattern_id"] == pattern_of[f"{space}-1"]
        assert body["matches"][0]["similarity"] > 0.99
        assert len(body["matches"]) == 2

        listings = [call(f"{w.url}/patterns/{space}") for w in (a, b)]
        assert listings[0] == listings[1]
        status, listing = listings[0]
        assert status == 200 and listing["dim"] == DIM
        assert sorted(p["pattern_id"] for p in listing["patterns"]) == sorted({pattern_of[f"{space}-0"], pattern_of[f"{space}-1"]})
        assert sum(p["count"] for p in listing["patterns"]) == 10
    assert len(owners) == 2, "the spaces are spread over both workers"

    # Read-only: asking again changed nothing.
    again = call(f"{a.url}/patterns/{SPACES[0]}")
    assert again == call(f"{b.url}/patterns/{SPACES[0]}")
    assert sum(p["count"] for p in again[1]["patterns"]) == 10

    # Errors are answered, not forwarded forever.
    assert call(f"{a.url}/patterns/nope")[0] == 404
    assert call(f"{a.url}/recognize", encode_json({"space": SPACES[0], "vector": [1.0, 2.0]}))[0] == 400
    assert call(f"{a.url}/recognize", b"{not json")[0] == 400
    assert call(f"{a.url}/recognize", b"x" * (1024 * 1024 + 10))[0] == 413


def test_no_answer_comes_from_a_half_restored_memory(memory_env, workers, tmp_path):
    """/recognize during recovery answers 503, never from a partial index, and after recovery
    answers from the whole memory (an index cached during recovery would miss patterns)."""
    import shutil
    import threading

    from streams.core.patterns import PatternConfig, SpaceMemory
    from streams.ops.worker_process import WorkerProcess

    env = memory_env(FMS_PARTITIONS="1")
    settings = settings_of(env)
    feats, _ = grouped_stream(1500, 1500, dim=256, seed=8, space="big")
    worker = workers(env)
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish(settings, settings.topic("audio-features"), feats))
    recognitions_of(settings, [f.id for f in feats])
    worker.stop()
    shutil.rmtree(env["FMS_DATA_DIR"])

    reference = SpaceMemory("big", PatternConfig())
    for f in feats:
        reference.learn_one(f.id, f.vector, f.ts)
    probes = feats[-3:]
    fresh = WorkerProcess(env, tmp_path / "fresh.log", web_port=worker.web_port)
    starting = threading.Thread(target=fresh.start)
    starting.start()
    answers = []
    after_ready = 0
    try:
        while starting.is_alive() or after_ready < 10:
            after_ready += not starting.is_alive()
            for f in probes:
                try:
                    body = encode_json({"space": "big", "vector": f.vector.tolist(), "k": 1})
                    answers.append((f, call(f"{fresh.url}/recognize", body)))
                except OSError:
                    pass
            time.sleep(0.05)
    finally:
        starting.join()
        fresh.stop()
    served = [(f, body) for f, (status, body) in answers if status == 200]
    assert served, "the restored worker answered"
    for f, body in served:
        assert body["matches"][0]["pattern_id"] == reference.predict_one(f.vector, k=1)[0].pattern_id
