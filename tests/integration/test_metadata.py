"""streams.kafka.metadata against the broker: which partitions topics have, asked by name or by a test
of the name, and a missing topic left out (and not created by the asking)."""
from __future__ import annotations

import asyncio

from streams.kafka.metadata import partitions_of
from tests.kafka_broker import create_topic, unique_name


def test_partitions_of_named_topics_or_of_the_topics_a_test_accepts(kafka_bootstrap: str) -> None:
    prefix = unique_name("metadata")
    three, one, missing = f"{prefix}-three", f"{prefix}-one", f"{prefix}-missing"
    options = {"bootstrap_servers": kafka_bootstrap}

    async def scenario():
        await create_topic(kafka_bootstrap, three, partitions=3)
        await create_topic(kafka_bootstrap, one, partitions=1)
        named = await partitions_of(options, [three, missing])
        tested = await partitions_of(options, lambda t: t.startswith(prefix))
        again = await partitions_of(options, lambda t: t == missing)
        return named, tested, again

    named, tested, again = asyncio.run(scenario())
    assert named == {three: {0, 1, 2}}
    assert tested == {three: {0, 1, 2}, one: {0}}
    assert again == {}, "asking for a missing topic must not create it"
