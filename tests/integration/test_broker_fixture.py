"""The session broker works end to end: topic creation, keyed produce, consume from the beginning."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner

from tests.kafka_broker import consume_all, create_topic, produce, unique_name


def test_keyed_round_trip(kafka_bootstrap: str) -> None:
    topic = unique_name("broker-fixture")
    # 5 keys, each sent twice, so "same key -> same partition" is actually exercised.
    records = [(f"key-{i % 5}", f"value-{i}".encode()) for i in range(10)]

    async def scenario():
        await create_topic(kafka_bootstrap, topic, partitions=2)
        metadata = await produce(kafka_bootstrap, topic, records)
        everything = await consume_all(kafka_bootstrap, topic, 10, timeout=30)
        per_partition = {p: await consume_all(kafka_bootstrap, topic, n, timeout=30, partition=p)
                         for p, n in _count_by_partition(metadata).items()}
        return metadata, everything, per_partition

    metadata, everything, per_partition = asyncio.run(scenario())

    expected = [(k.encode(), v) for k, v in records]
    assert sorted(everything) == sorted(expected)

    # Each key lands on one partition, the one the default (murmur2, Java-compatible) partitioner picks.
    partitioner = DefaultPartitioner()
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for (key, _), md in zip(expected, metadata):
        assert md.topic == topic
        partitions_of_key[key].add(md.partition)
        assert md.partition == partitioner(key, [0, 1], [0, 1])
    assert all(len(ps) == 1 for ps in partitions_of_key.values()), dict(partitions_of_key)
    assert {md.partition for md in metadata} == {0, 1}, "the keys should spread over both partitions"

    # Reading each partition on its own gives back exactly what was written there, in order.
    for partition, got in per_partition.items():
        written = [rec for rec, md in zip(expected, metadata) if md.partition == partition]
        assert got == written
        offsets = [md.offset for md in metadata if md.partition == partition]
        assert offsets == list(range(len(offsets)))
    keys_0 = {k for k, _ in per_partition[0]}
    keys_1 = {k for k, _ in per_partition[1]}
    assert keys_0.isdisjoint(keys_1)


def _count_by_partition(metadata) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for md in metadata:
        counts[md.partition] += 1
    return dict(counts)
