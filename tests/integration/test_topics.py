"""streams.service.topics against the broker: a run's topics deleted by name or by a test of the name,
a missing name passed over, and nothing else touched."""
from __future__ import annotations

import asyncio

from streams.kafka.metadata import partitions_of
from streams.service.settings import Settings
from streams.service.topics import delete_topics
from tests.kafka_broker import create_topic, unique_name


async def _gone(options: dict, names: set[str], timeout: float = 15.0) -> None:
    """Deletion is asynchronous on the broker: wait until its metadata no longer lists `names`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await partitions_of(options, lambda t: t in names):
        assert asyncio.get_running_loop().time() < deadline, f"{sorted(names)} still listed"
        await asyncio.sleep(0.2)


def test_delete_topics_by_name_or_by_a_test_of_the_name(kafka_bootstrap: str) -> None:
    prefix = unique_name("topics")
    a, b, c, other = f"{prefix}.a", f"{prefix}.b", f"{prefix}-c", f"{unique_name('other')}.a"
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    options = {"bootstrap_servers": kafka_bootstrap}

    async def scenario():
        for name in (a, b, c, other):
            await create_topic(kafka_bootstrap, name)
        by_name = await delete_topics(settings, [a, f"{prefix}.missing"])
        await _gone(options, {a})
        by_test = await delete_topics(settings, lambda t: t.startswith(prefix))
        await _gone(options, {b, c})
        left = await partitions_of(options, lambda t: t.startswith(prefix) or t == other)
        again = await delete_topics(settings, lambda t: t.startswith(prefix))
        await delete_topics(settings, [other])
        return by_name, by_test, left, again

    by_name, by_test, left, again = asyncio.run(scenario())
    assert by_name == [a], "only what exists is deleted; a missing name is passed over"
    assert by_test == sorted([b, c])
    assert left == {other: {0}}, "a topic the test does not accept is left alone"
    assert again == []
