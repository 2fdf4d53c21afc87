"""faust counts offsets it sees skipped as acknowledged; on the memory's inputs only the memory does.

The memory drops records after a gap and fetches the missing ones again (agents.memory). Had faust
counted the skipped offsets, a commit could pass records not applied yet, and once they were
acknowledged after all, the duplicates would stall the commit. No broker: the consumer is built
without its service, with only the state that faust's gap bookkeeping uses."""
from __future__ import annotations

import asyncio
from collections import defaultdict

from faust.types import TP
from intervaltree import Interval, IntervalTree

from streams.kafka.transport import transport_class


def consumer(own: set[str]):
    Consumer = transport_class(20).Consumer
    c = Consumer.__new__(Consumer)
    c._committed_offset = defaultdict(lambda: None)
    c._gap = defaultdict(IntervalTree)
    c.own_gaps = frozenset(own)
    return c


def test_a_gap_seen_on_the_memorys_input_is_not_counted_until_the_memory_accepts_it():
    c = consumer({"in"})

    async def run():
        await c._add_gap(TP("in", 0), 1, 18)  # faust saw offset 18 after 0
        assert not c._gap[TP("in", 0)], "records 1-18 come again: not acknowledged by a gap"
        await c.accept_gap(TP("in", 0), 1, 17)  # they never came; 18 did
        assert set(c._gap[TP("in", 0)]) == {Interval(1, 18)}

    asyncio.run(run())


def test_other_topics_keep_fausts_gap_bookkeeping():
    c = consumer({"in"})
    asyncio.run(c._add_gap(TP("changelog", 0), 1, 18))
    assert set(c._gap[TP("changelog", 0)]) == {Interval(1, 19)}
