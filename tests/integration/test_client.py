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
from streams.ops.demo import grouped_stream
from streams.service.topics import ensure_topics
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


def test_publish_returns_the_record_metadata_and_following_a_missing_topic_waits(memory_env):
    from tests.kafka_broker import produce

    settings = settings_of(memory_env())  # a prefix of its own: no topic of it exists yet
    feats, _ = grouped_stream(3, 1, dim=8, seed=6, space="meta")

    async def go():
        async with MemoryClient(settings=settings) as client:
            sent = [await client.publish(f) for f in feats]
            assert [m.topic for m in sent] == [settings.topic("audio-features")] * 3
            assert len({m.partition for m in sent}) == 1 and [m.offset for m in sent] == [0, 1, 2]

            assert [c async for c in client.patterns(follow=False)] == []  # nothing yet, and it says so
            following = asyncio.ensure_future(client.patterns().__anext__())
            await asyncio.sleep(3.0)
            assert not following.done(), "follow=True waits for the topic to exist"
            await produce(settings.bootstrap_servers, settings.topic("patterns"), [("meta/p-1", None)])
            return await asyncio.wait_for(following, 60)

    change = asyncio.run(go())
    # What the topic held when it appeared is the state the subscription starts from.
    assert (change.key, change.pattern, change.bootstrap) == ("meta/p-1", None, True)


def test_a_client_that_cannot_connect_raises_and_leaves_nothing_open():
    import gc
    import warnings

    from aiokafka.errors import KafkaConnectionError

    async def go():
        client = MemoryClient("127.0.0.1:9", request_timeout_ms=2000)
        with pytest.raises(KafkaConnectionError):
            async with client:
                pass
        assert client._producer is None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(go())
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)], [str(w.message) for w in caught]


def test_options_pass_through_to_aiokafka_and_a_sasl_plain_cluster_works(tmp_path):
    from aiokafka.errors import KafkaError

    from streams.service.settings import Settings
    from tests.kafka_broker import PrivateBroker, consume_all, unique_name

    broker = PrivateBroker(tmp_path, sasl_users={"alice": "alice-secret"}).start()
    try:
        settings = dataclasses.replace(Settings.from_env(), topic_prefix=f"{unique_name('sasl')}.")
        secured = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="alice")
        feats, _ = grouped_stream(2, 1, dim=8, seed=7, space="secure")

        async def go():
            wrong = MemoryClient(broker.sasl_bootstrap, settings=settings, sasl_plain_password="wrong", **secured)
            with pytest.raises(KafkaError):
                async with wrong:
                    pass
            assert wrong._producer is None
            async with MemoryClient(broker.sasl_bootstrap, settings=settings, sasl_plain_password="alice-secret",
                                    producer_options={"linger_ms": 0}, **secured) as client:
                sent = [await client.publish(f) for f in feats]
            return sent, await consume_all(broker.bootstrap, settings.topic("audio-features"), 2)

        sent, records = asyncio.run(go())
        assert [m.offset for m in sent] == [0, 1]
        assert [k for k, _ in records] == [b"secure", b"secure"]
    finally:
        broker.close()
