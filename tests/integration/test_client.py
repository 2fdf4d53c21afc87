"""The service client against a real worker: validated publishing, the pattern state bootstrapped
from the compacted topic and then followed, and optimizations as they are published."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request

import pytest

from schemas.codec import ValidationError
from schemas.records import Interaction, Outcome
from streams.client import MemoryClient
from streams.demo import grouped_stream
from streams.topics import ensure_topics
from tests.integration.test_recognition import settings_of


def test_client_publishes_bootstraps_patterns_and_follows_optimizations(memory_env, workers):
    env = memory_env()
    settings = settings_of(env)
    worker = workers(env)
    feats, _ = grouped_stream(40, 2, dim=12, seed=4, space="svc")

    async def go():
        await ensure_topics(settings)
        async with MemoryClient(settings=settings) as client:
            with pytest.raises(ValidationError):
                await client.publish(dataclasses.replace(feats[0], id=""))  # refused before sending
            with pytest.raises(TypeError):
                await client.publish("not a record")
            assert await client.publish_many(feats) == len(feats)

            snapshot: dict = {}
            for _ in range(300):  # until every feature has been learned
                snapshot = await client.pattern_snapshot(space="svc")
                if sum(p.count for p in snapshot.values()) == len(feats):
                    break
                await asyncio.sleep(0.1)
            served = json.loads(urllib.request.urlopen(f"{worker.url}/patterns/svc", timeout=5).read())
            assert {f"svc/{p['pattern_id']}": p["count"] for p in served["patterns"]} == {
                k: p.count for k, p in snapshot.items()}

            target = next(iter(snapshot.values())).pattern_id
            changes: list = []

            async def follow_patterns():
                async for change in client.patterns(space="svc"):
                    changes.append(change)
                    if not change.bootstrap and change.pattern is not None and change.pattern.pattern_id == target:
                        return  # the feedback's update, after the bootstrapped state

            following = asyncio.ensure_future(follow_patterns())
            follower = client.optimizations()
            first = asyncio.ensure_future(follower.__anext__())
            await asyncio.sleep(1.0)  # both followers are positioned before anything is sent
            await client.publish_many(
                Interaction(id=f"i{i}", space="svc", model_id="m", config={"beam": 2}, outcome=Outcome(True),
                            ts=100.0 + i, pattern_id=target) for i in range(4))
            optimization = await asyncio.wait_for(first, 60)
            await follower.aclose()
            await asyncio.wait_for(following, 60)
            return snapshot, optimization, changes, target

    snapshot, optimization, changes, target = asyncio.run(go())
    assert (optimization.event, optimization.pattern_id, optimization.config) == ("recommended", target, {"beam": 2})
    booted = [c for c in changes if c.bootstrap]
    assert {c.key for c in booted} >= set(snapshot) and all(c.key.startswith("svc/") for c in changes)
    assert not changes[-1].bootstrap
