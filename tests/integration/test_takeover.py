"""Two workers share the partitions; one is killed. The other takes over its spaces with their state,
nothing is lost, and POST /recognize keeps answering for every space."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request

from streams.core.patterns import PatternConfig, SpaceMemory
from streams.ops.demo import grouped_stream
from streams.ops.publish import publish, read_topic
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import recognitions_of, settings_of

SPACES = [f"space-{i}" for i in range(6)]


def stream(per_space: int, part: int) -> list:
    out = []
    for s, space in enumerate(SPACES):
        feats, _ = grouped_stream(2 * per_space, 3, dim=16, seed=100 + s, space=space)
        half = feats[:per_space] if part == 0 else feats[per_space:]
        out += [dataclasses.replace(f, id=f"{space}-{f.id}") for f in half]
    return out


def recognize(url: str, space: str, vector) -> dict:
    body = json.dumps({"space": space, "vector": vector.tolist(), "k": 1}).encode()
    req = urllib.request.Request(f"{url}/recognize", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_survivor_takes_over_with_state_and_answers(memory_env, workers):
    env = memory_env(FMS_PARTITIONS="4", FMS_SESSION_TIMEOUT_S="6", FMS_STANDBY_REPLICAS="1")
    settings = settings_of(env)
    first, second = stream(60, 0), stream(60, 1)
    a = workers({**env, "FMS_DATA_DIR": env["FMS_DATA_DIR"] + "-a"})
    b = workers({**env, "FMS_DATA_DIR": env["FMS_DATA_DIR"] + "-b"})

    async def send(feats, total):
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        return await read_topic(settings, settings.topic("recognitions"), count=total, timeout=120)

    asyncio.run(send(first, len(first)))
    owners = {space: recognize(a.url, space, first[0].vector if first[0].space == space else
                               next(f.vector for f in first if f.space == space))["worker"] for space in SPACES}
    assert len(set(owners.values())) == 2, f"both workers own spaces: {owners}"

    started = time.monotonic()
    b.kill()
    # The survivor answers for every space once the group has moved b's partitions to it.
    deadline = started + 90
    while True:
        try:
            answers = {space: recognize(a.url, space, next(f.vector for f in first if f.space == space))
                       for space in SPACES}
            if all(ans["worker"] == a_name(a) for ans in answers.values()):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the survivor took over every space"
        time.sleep(0.5)
    takeover_s = time.monotonic() - started

    asyncio.run(send(second, len(first) + len(second)))
    by_id = {i: rs[-1] for i, rs in recognitions_of(settings, [f.id for f in first + second]).items()}
    assert set(by_id) == {f.id for f in first + second}, "nothing was lost"
    for space in SPACES:  # the taken-over spaces continued from their state: same ids as one memory
        reference = SpaceMemory(space, PatternConfig())
        for f in [f for f in first + second if f.space == space]:
            assert by_id[f.id].pattern_id == reference.learn_one(f.id, f.vector, f.ts).pattern_id, f.id
    assert takeover_s < 60


def a_name(worker) -> str:
    return worker.health()["components"]["worker"]["name"]
