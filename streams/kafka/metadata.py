"""Topic metadata through aiokafka's public admin API."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


async def partitions_of(client_options: dict[str, Any],
                        topics: Iterable[str] | Callable[[str], bool]) -> dict[str, set[int]]:
    """The partitions of each of ``topics`` that exists (a missing topic is left out); ``topics``
    may also be a test of a topic's name."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options)
    try:
        await admin.start()
        return await _partitions(admin, topics)
    finally:
        await admin.close()


async def _partitions(admin, topics: Iterable[str] | Callable[[str], bool]) -> dict[str, set[int]]:
    # It asks for every topic's metadata, not the named ones': on a broker that creates topics on
    # demand, a metadata request that names a topic can create it.
    described = await admin.describe_topics()
    wanted = topics if callable(topics) else set(topics).__contains__
    return {t["topic"]: {p["partition"] for p in t["partitions"]} for t in described if wanted(t["topic"])}


async def committed_behind(client_options: dict[str, Any], group: str, topics: list[str]) -> int:
    """How many records of ``topics`` lie past ``group``'s committed offsets (a partition the group
    never committed counts from its start): 0 once the group has committed every record there is."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options)
    consumer = AIOKafkaConsumer(**client_options, group_id=None, enable_auto_commit=False)
    try:
        await admin.start()
        await consumer.start()
        tps = [TopicPartition(topic, p) for topic, partitions in sorted((await _partitions(admin, topics)).items())
               for p in sorted(partitions)]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return sum(max(0, end - max(0, committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())
