"""The producer's partitioner puts every key where Kafka's default partitioner does."""
from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.transport import KeyPartitioner


def test_a_key_goes_to_the_partition_kafkas_default_partitioner_gives_it():
    rng = random.Random(7)
    default, remembering = DefaultPartitioner(), KeyPartitioner(max_keys=50)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(200)]
    keys += [b"voice", b"voice/p-00a1", "m\u00fasica".encode()]
    for _ in range(3):  # asked again: from memory, and past the bound (cleared)
        for key in keys:
            for count in (1, 3, 4, 12):
                partitions = list(range(count))
                assert remembering(key, partitions, partitions) == default(key, partitions, partitions)


def test_without_a_key_a_partition_is_one_of_the_available_ones():
    remembering = KeyPartitioner()
    assert {remembering(None, [0, 1, 2, 3], [1, 2]) for _ in range(50)} <= {1, 2}
