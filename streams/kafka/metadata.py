"""Topic metadata through aiokafka's public admin API."""
from __future__ import annotations

from typing import Any


async def partitions_of(client_options: dict[str, Any], topics: list[str]) -> dict[str, set[int]]:
    """The partitions of each of ``topics`` that exists (a missing topic is left out).

    It asks for every topic's metadata, not the named ones': on a broker that creates topics on
    demand, a metadata request that names a topic can create it.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options)
    try:
        await admin.start()
        described = await admin.describe_topics()
    finally:
        await admin.close()
    wanted = set(topics)
    return {t["topic"]: {p["partition"] for p in t["partitions"]} for t in described if t["topic"] in wanted}
