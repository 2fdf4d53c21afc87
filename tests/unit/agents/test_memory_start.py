"""The memory's first record of an input partition is checked against where the partition starts.

After a restart faust once delivered a partition from 352 records past its committed offset; with
nothing held yet, nothing looked missing, the later records were applied first, and the journal
then counted the missing ones as applied when they came again: they were never learned.
No broker: the consumer and the stream are stand-ins."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from unittest.mock import MagicMock

from faust.types import TP

from agents.input_partitions import seek
from agents.memory import FEATURES, MemoryProcessor

TOPIC = "t." + FEATURES


class Message:
    pass


class Consumer:
    def __init__(self, committed: dict, earliest: dict, group: dict | None = None) -> None:
        self._committed_offset = committed  # faust's copy, filled in by its seek after an assignment
        self._group = group or {}  # what the broker holds for the group
        self._earliest = earliest
        self._unacked_messages: set = set()
        self._read_offset: dict = {}
        self.highwaters: dict = {}
        self.ack_filter = None
        self.asked: list = []
        self.sought: list = []
        self.accepted: list = []

    async def committed_offsets(self, *tps):
        return {tp: self._group.get(tp) for tp in tps}

    async def earliest_offsets(self, *tps):
        self.asked.extend(tps)
        return {tp: self._earliest[tp] for tp in tps}

    async def seek(self, tp, offset):
        self.sought.append((tp, offset))

    async def accept_gap(self, tp, offset_from, offset_to):
        self.accepted.append((tp, offset_from, offset_to))

    def pause_partitions(self, tps):
        pass

    def assignment(self):
        return set(self._earliest) | set(self._committed_offset) | set(self.highwaters)

    def highwater(self, tp):
        return self.highwaters[tp]


def processor(committed: dict | None = None, earliest: dict | None = None, group: dict | None = None) -> MemoryProcessor:
    settings = SimpleNamespace(topic=lambda name: "t." + name, max_idle_ms=1000, batch_max=64, buffer_max=1000,
                               apply_linger_ms=0.0, commit_interval_s=1.0, state_cache_max_bytes=1 << 20)
    app = SimpleNamespace(consumer=Consumer(committed or {}, earliest or {}, group), in_recovery=False, rebalancing=False,
                          flow_control=SimpleNamespace(is_active=lambda: True))
    return MemoryProcessor(SimpleNamespace(settings=settings, app=app, metrics=MagicMock()))


def consume(proc: MemoryProcessor, offsets: list[int]) -> None:
    def event(offset):
        message = Message()  # hashable, as faust's are: the consumer keeps sets of them
        message.topic, message.partition, message.offset, message.timestamp = TOPIC, 0, offset, float(offset)
        message.tp = TP(TOPIC, 0)
        return SimpleNamespace(message=message)

    async def events():
        for offset in offsets:
            yield event(offset)

    asyncio.run(proc.consume(SimpleNamespace(events=events)))


def test_a_first_record_past_the_committed_offset_waits_for_the_missing_ones():
    proc = processor(committed={TP(TOPIC, 0): 148})
    consume(proc, [500, 501])
    assert proc.sequencer.held == 0, "nothing applied ahead of the records before it"
    assert proc.gaps.refetching[(TOPIC, 0)][0] == 148
    consume(proc, [148, 149])
    assert proc.sequencer.held == 2 and proc.sequencer.next_offset(TOPIC, 0) == 150
    assert not proc.gaps.refetching


def test_without_a_committed_offset_the_log_start_is_where_a_partition_starts():
    proc = processor(earliest={TP(TOPIC, 0): 0})
    consume(proc, [3])
    assert proc.sequencer.held == 0 and proc.gaps.refetching[(TOPIC, 0)][0] == 0
    consume(proc, [0])
    assert proc.sequencer.held == 1
    assert proc.runtime.app.consumer.asked == [TP(TOPIC, 0)], "asked once, then known"


def test_a_first_record_before_faust_knows_the_committed_offset_starts_at_the_groups_commit():
    # Seen after a generation switch: the first record, at the rewound offset, came before faust's
    # seek; with the log start taken for the start, both inputs stalled REFETCH_S.
    proc = processor(earliest={TP(TOPIC, 0): 0}, group={TP(TOPIC, 0): 1236})
    consume(proc, [1236, 1237])
    assert proc.sequencer.held == 2 and not proc.gaps.refetching
    assert proc.runtime.app.consumer.asked == [], "the log start is not asked for a group with a commit"


def test_a_first_record_before_the_committed_offset_is_not_applied():
    proc = processor(committed={TP(TOPIC, 0): 10})
    consume(proc, [9, 10])
    assert proc.sequencer.held == 1 and proc.sequencer.next_offset(TOPIC, 0) == 11


def test_records_after_a_gap_do_not_move_faust_past_the_missing_one():
    # faust set its read offset past each record it handed over; fetched again, the missing ones
    # would be dropped below it.
    proc = processor(committed={TP(TOPIC, 0): 148})
    read_offset = proc.runtime.app.consumer._read_offset
    read_offset[TP(TOPIC, 0)] = 501
    consume(proc, [501])
    assert read_offset[TP(TOPIC, 0)] == 148


def test_a_gap_nothing_comes_after_is_sought_again_until_it_comes(monkeypatch):
    import agents.memory as memory

    now = [0.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    proc = processor(committed={TP(TOPIC, 0): 148})
    consume(proc, [500])
    sought = proc.runtime.app.consumer.sought
    for t in (1.0, 2.5, 3.0, 5.0):
        now[0] = t
        asyncio.run(proc.gaps.resolve_gaps())
    assert sought == [(TP(TOPIC, 0), 148), (TP(TOPIC, 0), 148)], "every REFETCH_S while nothing comes"
    consume(proc, [148])
    assert not proc.gaps.refetching and proc.sequencer.held == 1


def test_a_gap_whose_records_never_come_is_accepted_and_only_then_passed_to_the_commit(monkeypatch):
    # Transaction markers: the records after the gap keep coming, the missing ones never do.
    import agents.memory as memory

    now = [0.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    proc = processor(committed={TP(TOPIC, 0): 148})
    consumer = proc.runtime.app.consumer
    consume(proc, [150])
    assert consumer.accepted == [], "waiting for 148: the commit must not pass it"
    now[0] = 2.5
    consume(proc, [150])  # sought again from 148; 150 comes again, 148 and 149 do not
    now[0] = 5.0
    consume(proc, [150])
    assert consumer.accepted == [(TP(TOPIC, 0), 148, 149)]
    assert proc.sequencer.held == 1 and proc.sequencer.next_offset(TOPIC, 0) == 151


def test_a_partition_behind_its_high_water_mark_that_gets_nothing_is_fetched_again(monkeypatch):
    # faust dropped the rest of the partition and nothing followed: no gap to see.
    import agents.memory as memory

    now = [0.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    proc = processor(earliest={TP(TOPIC, 0): 0})
    consumer = proc.runtime.app.consumer
    consumer.highwaters[TP(TOPIC, 0)] = 200
    consume(proc, [0])
    for t in (1.0, 2.5, 3.0, 5.0):
        now[0] = t
        asyncio.run(proc.gaps.resolve_stalls())
    assert consumer.sought == [(TP(TOPIC, 0), 1), (TP(TOPIC, 0), 1)], "from the record awaited, every REFETCH_S"
    consumer.highwaters[TP(TOPIC, 0)] = 1  # caught up: nothing is missing
    now[0] = 10.0
    asyncio.run(proc.gaps.resolve_stalls())
    assert len(consumer.sought) == 2


def test_a_gap_at_the_start_is_sought_from_the_committed_offset_known_by_then(monkeypatch):
    # The first records came while faust was still seeking to the committed offsets: the log start
    # stood in for the start, and a seek there would fetch records the group is long past.
    import agents.memory as memory

    now = [0.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    proc = processor(earliest={TP(TOPIC, 0): 0})
    consume(proc, [1216])
    assert proc.gaps.refetching[(TOPIC, 0)][0] == 0
    proc.runtime.app.consumer._committed_offset[TP(TOPIC, 0)] = 1216
    now[0] = 2.5
    asyncio.run(proc.gaps.resolve_gaps())
    assert proc.runtime.app.consumer.sought == [(TP(TOPIC, 0), 1216)]


def test_no_seek_during_a_rebalance_or_of_a_partition_no_longer_assigned():
    """A seek of a partition just revoked raised IllegalStateError and stopped a worker."""
    tp = TP("t.audio-features", 0)
    proc = processor(committed={tp: 0})
    consumer = proc.runtime.app.consumer
    proc.runtime.app.rebalancing = True
    assert asyncio.run(seek(proc.runtime, tp, 0)) is False
    proc.runtime.app.rebalancing = False
    assert asyncio.run(seek(proc.runtime, TP("t.audio-features", 1), 0)) is False  # not assigned here
    assert consumer.sought == []
    assert asyncio.run(seek(proc.runtime, tp, 0)) is True and consumer.sought == [(tp, 0)]


def test_a_start_offset_the_broker_does_not_answer_for_is_asked_again_later(monkeypatch):
    # aiokafka asks the coordinator until it answers; with the broker down the memory's loop
    # must not wait with it (a rebalance waits for that loop to let go of its records).
    import agents.input_partitions as input_partitions

    monkeypatch.setattr(input_partitions, "START_TIMEOUT_S", 0.05)
    proc = processor(earliest={TP(TOPIC, 0): 0}, group={TP(TOPIC, 0): 7})
    consumer = proc.runtime.app.consumer
    answered = consumer.committed_offsets

    async def no_answer(*tps):
        await asyncio.sleep(3600)

    consumer.committed_offsets = no_answer
    assert asyncio.run(asyncio.wait_for(proc.starts.start_of(TP(TOPIC, 0)), 2.0)) is None
    consumer.committed_offsets = answered
    assert asyncio.run(proc.starts.start_of(TP(TOPIC, 0))) == 7
