"""Reading an input partition completely and in order, around what faust does to it.

agents.memory applies each input partition's records in offset order, and a record after a gap
only once the missing one has come. These are the three things that takes, each a small class the
memory's processor is given:

- PartitionStarts: where a partition's records start (the group's committed offset, or the log
  start for a group without one), asked of the broker once.
- GapRepair: records that come after a gap are dropped and the missing one fetched again; a
  partition that stops delivering while behind its high-water mark is fetched again too.
- InputBuffer: a partition with FMS_BUFFER_MAX records held is paused, and resumed from the record
  after the last one held once half of them are applied.
"""
from __future__ import annotations

import asyncio
import logging
import time

from streams.kafka.internals import committed_offset, forget_unacked, rewind_read_offset

log = logging.getLogger("agents.memory")  # its lines keep the name operators know them by

# How long records after a gap in offsets are dropped while waiting for the missing one.
REFETCH_S = 2.0
# How long a start offset is asked for before the next round asks again.
START_TIMEOUT_S = 5.0


async def seek(runtime, tp, offset: int) -> bool:
    """The consumer told to fetch `tp` again from `offset`, unless a rebalance has begun or
    taken the partition away meanwhile (seen: a seek to a partition just revoked raised
    IllegalStateError and stopped the worker). The rebalance delivers it again anyway."""
    app = runtime.app
    if app.rebalancing or not app.flow_control.is_active() or tp not in app.consumer.assignment():
        return False
    try:
        await app.consumer.seek(tp, offset)
    except Exception as exc:  # the assignment changed under the seek
        log.warning("no seek of %s to %d: %r", tp, offset, exc)
        return False
    return True


class PartitionStarts:
    """Where each input partition's records start, for partitions that delivered nothing yet."""

    def __init__(self, runtime, sequencer, topics) -> None:
        self.runtime = runtime
        self.sequencer = sequencer
        self.topics = topics
        self._starts: dict = {}

    def clear(self) -> None:
        self._starts.clear()

    def caught_up(self, topic: str, partition: int, next_offset: int | None) -> bool:
        from faust.types import TP

        tp = TP(topic, partition)
        consumer = self.runtime.app.consumer
        try:
            high = consumer.highwater(tp)
        except (AssertionError, KeyError, AttributeError):  # not assigned here
            return False
        if high is None:
            return False
        start = next_offset if next_offset is not None else self.start(tp)
        return start is not None and start >= high

    def start(self, tp):
        """Where an input partition that delivered nothing yet starts: its committed offset, or
        its log start for a group without one (filled in by `_fetch`)."""
        committed = committed_offset(self.runtime.app.consumer, tp)
        return committed if committed is not None else self._starts.get(tp)

    async def start_of(self, tp) -> int | None:
        """`start`, asking the broker when it is not known yet."""
        start = self.start(tp)
        if start is None:
            await self._fetch([tp])
            start = self._starts.get(tp)
        return start

    async def fill(self) -> None:
        from faust.types import TP

        consumer = self.runtime.app.consumer
        missing = []
        for partition in self.sequencer.partitions():
            for topic in self.topics:
                tp = TP(topic, partition)
                if (self.sequencer.next_offset(topic, partition) is None and tp not in self._starts
                        and committed_offset(consumer, tp) is None):
                    missing.append(tp)
        if missing:
            await self._fetch(missing)

    async def _fetch(self, tps) -> None:
        """The group's committed offsets of `tps`, and the log start of those it has none for.

        The broker is asked for the committed offsets, because faust's own copy is filled in only
        by its seek after an assignment, and records can be delivered before that. Seen after a
        generation switch: the first record, at the rewound offset, taken as coming after a gap
        from the log start, and both input partitions stalled for REFETCH_S.
        """
        consumer = self.runtime.app.consumer
        try:
            # aiokafka asks again until the coordinator answers: not forever while the broker is down.
            committed = await asyncio.wait_for(consumer.committed_offsets(*tps), START_TIMEOUT_S)
            self._starts.update({tp: offset for tp, offset in committed.items() if offset is not None})
            without = [tp for tp in tps if committed.get(tp) is None]
            if without:
                self._starts.update(await consumer.earliest_offsets(*without))
        except Exception as exc:  # not known then: asked again on the next round, or the first record is the start
            log.warning("start offsets of %s: %r", list(tps), exc)



class InputBuffer:
    """A bounded buffer: the consumer pauses an input partition with buffer_max records held."""

    def __init__(self, runtime, sequencer, buffer_max: int) -> None:
        self.runtime = runtime
        self.sequencer = sequencer
        self.buffer_max = buffer_max
        self.paused: set = set()

    def clear(self) -> None:
        # faust paused every assigned partition for a rebalance, and resumes them after it.
        self.paused.clear()

    def pause(self, topic: str, partition: int) -> None:
        from faust.types import TP

        tp = TP(topic, partition)  # faust's own type: its resume_partitions keeps what it is given
        if tp not in self.paused:
            self.paused.add(tp)
            self.runtime.metrics.sequence_paused.inc()
        # Each time: the end of a recovery resumes every partition faust paused.
        self.runtime.app.consumer.pause_partitions([tp])

    async def resume_drained(self) -> None:
        """Resume the paused input partitions that have half their held records applied.

        A partition resumes from the record after the last one held: faust drops what it had
        already fetched for a partition it pauses (its getmany delivers only records of the
        partitions active at that moment), and the memory drops what reached it past the bound,
        so that is fetched again (faust's seek moves its read offset back too).
        """
        app = self.runtime.app
        if app.in_recovery:
            return
        drained = [tp for tp in self.paused
                   if self.sequencer.held_in(tp.topic, tp.partition) <= self.buffer_max // 2]
        for tp in drained:
            self.paused.discard(tp)
            after = self.sequencer.next_offset(tp.topic, tp.partition)
            if after is not None:
                await seek(self.runtime, tp, after)
            app.consumer.resume_partitions([tp])



class GapRepair:
    """Records after a gap in a partition's offsets, and partitions that stall."""

    def __init__(self, runtime, sequencer, topics, starts: PartitionStarts, buffer: InputBuffer) -> None:
        self.runtime = runtime
        self.sequencer = sequencer
        self.topics = topics
        self.starts = starts
        self.buffer = buffer
        self.refetching: dict = {}  # (topic, partition) -> (first offset missing, since, sought)
        self._arrived: dict = {}  # (topic, partition) -> when a record of it last arrived
        self._stalled: set = set()

    def arrived(self, message) -> None:
        """A record of the partition arrived: it is not stalled."""
        self._arrived[(message.topic, message.partition)] = time.monotonic()
        self._stalled.discard((message.topic, message.partition))

    def clear(self) -> None:
        self.refetching.clear()
        self._arrived.clear()
        self._stalled.clear()

    async def check(self, message, expected: int) -> bool:
        """True when the record is to be dropped: it came after a gap in its partition's offsets.

        faust drops a record now and then around a rebalance or its seek to the committed offsets
        (seen: the one record in flight at that seek), and then usually delivers the partition
        again from the committed offset. So records after a gap are dropped (not acknowledged, so
        they come again) while waiting REFETCH_S for the missing one; a record from before it (the
        partition delivered again) ends the wait. If it does not come, the consumer is told to
        fetch again from it (again while nothing comes at all: `resolve_gaps`); a gap that later
        records still arrive after is real (transaction markers) and is accepted. Applying a record
        after a gap first would make the journal count the missing ones as applied, and they would
        be lost.
        """
        key = (message.topic, message.partition)
        now = time.monotonic()
        gap = self.refetching.get(key)
        if gap is None or gap[0] != expected:
            self.refetching[key] = (expected, now, False)
            log.warning("%s[%d]: offset %d arrived after %d; waiting for %d", message.topic, message.partition,
                        message.offset, expected - 1, expected)
            return True
        missing, since, sought = gap
        if now - since < REFETCH_S:
            return True
        if sought:
            self.refetching.pop(key, None)
            log.warning("%s[%d]: offset %d never came; going on from %d", message.topic, message.partition,
                        missing, message.offset)
            await self.runtime.app.consumer.accept_gap(message.tp, missing, message.offset - 1)
            return False
        await self._seek_gap(key, missing)
        return True

    async def resolve_gaps(self) -> None:
        """A gap whose missing record did not come in REFETCH_S, with nothing after it either:
        fetch again from it, and again every REFETCH_S while nothing comes (seen: a worker that
        sought once after a restart and then got nothing for two minutes)."""
        from faust.types import TP

        now = time.monotonic()
        for key, (missing, since, _) in list(self.refetching.items()):
            if now - since < REFETCH_S:
                continue
            if self.sequencer.next_offset(*key) is None:
                # A gap at the partition's start: records can arrive while faust is still seeking
                # to the committed offsets (seen after a generation switch), with the start taken
                # from the log start then. It is known by now.
                missing = await self.starts.start_of(TP(*key))
                if missing is None:
                    continue
            await self._seek_gap(key, missing)

    async def resolve_stalls(self) -> None:
        """Fetch an assigned input partition again from the record it is waiting for when it is
        behind its high-water mark and nothing of it has arrived for REFETCH_S.

        A gap is seen when a record after it arrives; when faust drops the tail of what is there
        and nothing follows, nothing would (seen: 199 feature records dropped at a restart, and the
        interactions then released one per FMS_MAX_IDLE_MS while the memory waited for them). The
        partition is not paused meanwhile: a transactional input's high-water mark stays past its
        last record, and there such a seek finds nothing, as it should.
        """
        from faust.types import TP

        app = self.runtime.app
        if app.in_recovery or app.rebalancing or not app.flow_control.is_active():
            return
        consumer, now = app.consumer, time.monotonic()
        for tp in consumer.assignment():
            key = (tp.topic, tp.partition)
            if tp.topic not in self.topics or key in self.refetching or TP(*key) in self.buffer.paused:
                continue
            if now - self._arrived.setdefault(key, now) < REFETCH_S:
                continue
            self._arrived[key] = now  # looked at once every REFETCH_S
            missing = self.sequencer.next_offset(*key)
            if missing is None:
                missing = await self.starts.start_of(TP(*key))
            if missing is None or self.starts.caught_up(tp.topic, tp.partition, missing):
                continue
            if key not in self._stalled:
                self._stalled.add(key)
                log.warning("%s[%d]: nothing from offset %d on has come; fetching again from it", tp.topic,
                            tp.partition, missing)
            await seek(self.runtime, TP(*key), missing)

    def read_again_from(self, tp, offset: int) -> None:
        """Let faust hand over `offset` and what follows when they are fetched again.

        faust moves a partition's read offset on past every record it hands to the agent, the ones
        dropped here after a gap too, and drops a fetched record below it unseen: records fetched
        before a seek (faust's to the committed offset, or ours to a missing record) would hide the
        records that seek fetches again.
        """
        rewind_read_offset(self.runtime.app.consumer, tp, offset)

    async def _seek_gap(self, key: tuple[str, int], missing: int) -> None:
        from faust.types import TP

        topic, partition = key
        self.refetching[key] = (missing, time.monotonic(), True)
        log.warning("%s[%d]: offset %d did not come again; fetching again from it", topic, partition, missing)
        for held in self.sequencer.abandon_from(topic, partition, missing):
            self.forget(held.item)
        await seek(self.runtime, TP(topic, partition), missing)

    def forget(self, event) -> None:
        # Not acknowledged, so not committed: it comes again from the committed offset.
        forget_unacked(self.runtime.app.consumer, event.message)

