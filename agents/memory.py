"""fms.audio-features and fms.interactions -> the memory -> recognitions, patterns, optimizations.

One agent reads both inputs, because what an interaction does depends on what was learned before
it, and feedback changes what is learned after. streams.core.sequence merges each partition's two
inputs into one timestamp-ordered sequence, the same live and in a replay.

The agent only hands what it consumes to the sequencer; `run` applies what is ready. Records
that are waiting are applied in batches, held open for FMS_APPLY_LINGER_MS after the first record:
each space's records of a batch are one journal transaction (streams.state.journal), whose writes
are held until the space's next commit, every FMS_COMMIT_INTERVAL_S (the spaces' commits spread
over it, streams.core.commit_pacing): a pattern that many records touch between two commits is
written to the table and its changelog once (the order of repair, begin, keep and commit is
streams.state.checkpoint's). Each record is still applied exactly as it would be
alone, and gets its recognition or optimization records when its batch is applied; a pattern's
"updated" records are folded into its newest until the commit (agents.recognition.PatternEvents),
so what fms.patterns keeps of each key is what the records applied one by one would have left
(tests/unit/agents/test_memory_batches).
A batch is applied only while its breaker is closed, and is tried once: after a failure its records
are applied one by one, so that the breaker's retries and trial calls are single records and only
a bad record is dead-lettered.

Offsets are acknowledged only after a record's outputs are sent and its state is committed. During
a rebalance faust suspends the flow and waits for unacknowledged records: what was applied is
committed first, the sequencer forgets what it holds, and those records are delivered again from
the committed offsets. Reading each input partition completely and in order (where it starts,
gaps, stalls, the bounded buffer) is agents.input_partitions'.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from agents import interactions as interaction_steps
from agents import recognition as recognition_steps
from agents.dead_letter import send_dead_letter, send_failure
from agents.input_partitions import GapRepair, InputBuffer, PartitionStarts
from agents.recognition import PatternEvents
from schemas.codec import decode
from schemas.validation import ValidationResult
from schemas.vectors import check_dimension
from streams.core.commit_pacing import due_at
from streams.core.sequence import Held, Sequencer
from streams.kafka.internals import set_current_event, wake_ack_waiters

log = logging.getLogger(__name__)

FEATURES, INTERACTIONS = "audio-features", "interactions"
# Tie order of the sequence: a feature record before an interaction of the same millisecond.
INPUTS = (FEATURES, INTERACTIONS)

APPLIED, DUPLICATE, REJECTED, FAILED = "applied", "duplicate", "rejected", "failed"
# How long a stop or a rebalance waits for the last commit before it lets its records go.
COMMIT_ON_STOP_S = 5.0


@dataclass
class Step:
    """One input record of a batch, and what became of it."""

    held: Held
    source: str
    record: object
    result: ValidationResult
    outcome: str | None = None
    output: object = None

    @property
    def event(self):
        return self.held.item

    @property
    def offset(self) -> int:
        return self.held.offset

    @property
    def operation(self) -> str:
        """The breaker the record's work runs through."""
        return "learn" if self.source == FEATURES else "interaction"


@dataclass
class Uncommitted:
    """A space's records applied since its last commit."""

    since: float  # when the first of them was applied (time.monotonic)
    event: object  # one of them: the space's writes go to its partition's database and changelog
    records: list[Held] = field(default_factory=list)
    patterns: PatternEvents = field(default_factory=PatternEvents)


@dataclass
class SpaceBatch:
    space: str
    steps: list[Step] = field(default_factory=list)

    @property
    def operation(self) -> str:
        # The breaker a batch runs through: "learn" when it learns anything.
        return "learn" if any(s.operation == "learn" for s in self.steps) else "interaction"


def apply_steps(runtime, space: str, steps: list[Step]) -> None:
    """Apply `steps` (one space's records, in sequence order) as one transaction of the checkpoint.

    Each step's outcome is set: rejected (its context or dimension does not fit the memory as the
    steps before it left it), duplicate (applied before a crash and delivered again), or applied
    with the output its emission needs. Raises, with nothing written, when any record fails.
    The feature records between two interactions are learned together (SpaceMemory.learn_many,
    which gives what one by one gives); an interaction is applied after the records before it.
    """
    with runtime.checkpoint.transaction(space) as tx:
        learning: list[Step] = []  # feature records admitted and not learned yet
        for step in steps:
            if step.source != FEATURES:
                _learn(runtime, space, learning)
            step.outcome, step.output = _apply_one(runtime, space, step, tx, learning)
            if step.outcome == APPLIED:
                tx.applied(step.source, step.offset)
        _learn(runtime, space, learning)


def _learn(runtime, space: str, learning: list[Step]) -> None:
    if not learning:
        return  # and no memory is made for a space nothing was learned in
    outputs = recognition_steps.learn(runtime, space, [(step.record, step.offset) for step in learning])
    for step, output in zip(learning, outputs, strict=True):
        step.output = output
    learning.clear()


def _apply_one(runtime, space: str, step: Step, tx, learning: list[Step]):
    store, record = runtime.store, step.record
    applied = tx.is_applied(step.source, step.offset)
    if step.source == FEATURES:
        memory = store.peek(space)
        dim = memory.dim if memory is not None else None
        if dim is None and learning:  # the first record to be learned fixes the space's dimension
            dim = len(learning[0].record.vector)
        if not check_dimension(record.vector, dim, "vector", step.result):
            return REJECTED, None
        if applied:
            return DUPLICATE, None
        learning.append(step)
        return APPLIED, None  # its output comes when it is learned, with the records around it
    pattern_id = interaction_steps.resolve_context(record, store.peek(space), runtime.recent, step.result)
    if pattern_id is None:
        return REJECTED, None
    if applied:
        return DUPLICATE, None
    return APPLIED, interaction_steps.apply(runtime, record, pattern_id, step.offset)


async def emit_step(runtime, step: Step, patterns: PatternEvents) -> None:
    """The step's own outputs; what it changed of the patterns is added to `patterns`, the batch's."""
    record = step.record
    if step.outcome == REJECTED:
        await send_dead_letter(runtime, step.event, step.result)
    elif step.source == FEATURES:
        if step.outcome == DUPLICATE:
            await recognition_steps.emit_again(runtime, record, patterns)
        else:
            await recognition_steps.emit_learned(runtime, record, *step.output, patterns)
    else:
        applied = step.output if step.outcome == APPLIED else interaction_steps.again(runtime, record.space, record)
        if applied is not None:
            await interaction_steps.emit_applied(runtime, record, applied, patterns)


def _in_partition_of(event) -> None:
    """Make `event` faust's current event. The memory table's reads and writes go to the RocksDB
    database and changelog partition of the current event's partition, so a space's state is read
    and written only while one of its own records is current: a read in another partition's
    database finds nothing (seen: records of two spaces delivered again in one batch, and the
    first space's recognitions not emitted again)."""
    set_current_event(event)


class MemoryProcessor:
    """The shell around the sequencer: what the agent consumed in, applied batches out."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.topics = {settings.topic(name): name for name in INPUTS}
        self.sequencer = Sequencer(tuple(self.topics), settings.max_idle_ms / 1000.0)
        self.batch_max = settings.batch_max
        self.linger_s = settings.apply_linger_ms / 1000.0
        self.commit_s = settings.commit_interval_s
        self.cache_max_bytes = settings.state_cache_max_bytes
        self.buffer_max = max(2, settings.buffer_max)
        self._peak = 0
        self._released_counted = 0  # sequencer.released already added to fms_sequence_idle_released
        self.stream = None
        self._wake = asyncio.Event()
        self.starts = PartitionStarts(runtime, self.sequencer, self.topics)
        self.buffer = InputBuffer(runtime, self.sequencer, self.buffer_max)
        self.gaps = GapRepair(runtime, self.sequencer, self.topics, self.starts, self.buffer)
        # Offsets being acknowledged after they were applied: the only acknowledgements the
        # consumer honours for the inputs (streams.kafka.transport).
        self._applied: set = set()
        # Per space, what was applied since its last commit, oldest first: acknowledged once the
        # space's state is committed, after the pattern events of its batches (folded per key).
        self._uncommitted: dict[str, Uncommitted] = {}
        self._last_commit = -math.inf  # when a space was last committed (time.monotonic)
        metrics = runtime.metrics
        self._records_in = {name: metrics.records_in.labels(topic=name) for name in INPUTS}
        self._seconds = {FEATURES: metrics.recognition_seconds, INTERACTIONS: metrics.interaction_seconds}

    def may_ack(self, message) -> bool:
        if message.topic not in self.topics:
            return True
        key = (message.topic, message.partition, message.offset)
        if key in self._applied:
            self._applied.discard(key)
            return True
        return False

    # -- fed by the agent
    async def consume(self, stream) -> None:
        self.stream = stream
        self.runtime.app.consumer.ack_filter = self.may_ack
        self.runtime.app.consumer.own_gaps = frozenset(self.topics)
        # Never blocks: faust drops records that arrive while an agent's buffer is full (seen as
        # gaps of offsets when the agent waited here), so the sequencer takes whatever is delivered.
        async for event in stream.events():
            message = event.message
            self.gaps.arrived(message)
            expected = self.sequencer.next_offset(message.topic, message.partition)
            if expected is None:
                # The partition's first record since its assignment (or since the sequence let go
                # of it): faust does not always begin where the partition starts (seen after a
                # restart: the first 352 records never reached the agent, which began 352 records
                # past the committed offset). Without this, nothing would look missing.
                expected = await self.starts.start_of(message.tp)
            if expected is not None and message.offset < expected:
                # Delivered again (the partition was sought back) while its first delivery is
                # held or applied, or from before the committed offset: that one is acknowledged.
                self.gaps.forget(event)
                continue
            if self.sequencer.held_in(message.topic, message.partition) >= self.buffer_max:
                # Full: what faust had queued for the agent before the pause took effect (seen:
                # 1,319 records held with a bound of 80, queued while the partition's start was
                # asked for). Not held, so not acknowledged: read again from the record after the
                # last one held when the partition resumes. Before the gap check, whatever the
                # offset: the records after one dropped here are no gap.
                self.buffer.pause(message.topic, message.partition)
                self.gaps.forget(event)
                continue
            if expected is not None and message.offset > expected and await self.gaps.check(message, expected):
                self.gaps.forget(event)
                self.gaps.read_again_from(message.tp, expected)
                continue
            self.gaps.refetching.pop((message.topic, message.partition), None)
            self.sequencer.push(message.topic, message.partition, message.offset, message.timestamp, event)
            if self.sequencer.held_in(message.topic, message.partition) >= self.buffer_max:
                self.buffer.pause(message.topic, message.partition)
            self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:  # a stopping consumer waits for every record it delivered to be acknowledged
            await self._abandon()

    async def _run(self) -> None:
        app = self.runtime.app
        while not app.should_stop:
            if not app.flow_control.is_active():
                # A rebalance: faust waits for every record it delivered to be acknowledged.
                while not app.flow_control.is_active() and not app.should_stop:
                    await self._abandon()
                    await asyncio.sleep(0.01)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._wait_s())
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._commit_due()
            if self.gaps.refetching:
                await self.gaps.resolve_gaps()
            await self.gaps.resolve_stalls()
            if not self.sequencer.held:
                continue
            await self._gather()
            if self.linger_s and self.sequencer.held < self.batch_max:
                await asyncio.sleep(self.linger_s)  # records that came alone would each cost a batch
                if not app.flow_control.is_active():  # a rebalance began meanwhile: nothing is applied
                    continue
                await self._gather()
            await self.starts.fill()
            paused = frozenset(partition for _, partition in self.gaps.refetching)
            ready = self.sequencer.pop_ready(self.starts.caught_up, time.monotonic(), self.batch_max, paused)
            self._peak = max(self._peak, self.sequencer.held + len(ready))
            self.runtime.metrics.sequence_held.set(self.sequencer.held)
            self.runtime.metrics.sequence_held_peak.set(self._peak)
            released = self.sequencer.released  # cumulative; a counter takes what is new since the last look
            if released > self._released_counted:
                self.runtime.metrics.sequence_released.inc(released - self._released_counted)
            self._released_counted = released
            if ready:
                await self.apply(ready)
                await self._commit_due()
            if self.buffer.paused:
                await self.buffer.resume_drained()

    async def _gather(self) -> None:
        """Let the agent hand over what faust has fetched before a batch is taken.

        The agent takes one record per turn of the event loop, and this task would otherwise
        take whatever is there at each turn: batches of about one record per space even when
        thousands wait, and a journal entry and a ring write per record. It yields while the
        agent keeps adding and a batch is not full, so a quiet stream waits for nothing.
        """
        held, idle = self.sequencer.held, 0
        while idle < 3 and self.sequencer.held < self.batch_max:
            await asyncio.sleep(0)
            idle = idle + 1 if self.sequencer.held == held else 0
            held = self.sequencer.held

    def _wait_s(self) -> float:
        wait = 0.02 if self.sequencer.held else 0.5
        if self._uncommitted:
            wait = min(wait, max(0.0, self._due_at() - time.monotonic()))
        return wait

    def _due_at(self) -> float:
        """When the space held longest is to be committed (streams.core.commit_pacing)."""
        oldest = next(iter(self._uncommitted.values()))
        return due_at(oldest.since, self._last_commit, len(self._uncommitted), self.commit_s)

    async def _commit_due(self) -> None:
        """Commit the space whose commit is due, if one is: the one held longest, once
        commit_pacing says so or when the held writes are over their bound. One space per turn,
        so that the spaces' commits spread out instead of stalling the input together."""
        if not self._uncommitted:
            return
        if (time.monotonic() >= self._due_at()
                or self.runtime.checkpoint.journal.held_bytes >= self.cache_max_bytes):
            await self.commit(next(iter(self._uncommitted)))

    async def commit(self, space: str) -> None:
        """The space's state held since its last commit, then the pattern events of its batches,
        then the acknowledgements of its records (streams.state.checkpoint)."""
        runtime = self.runtime
        uncommitted = self._uncommitted[space]
        _in_partition_of(uncommitted.event)  # the space's writes go to its partition's database and changelog
        await runtime.checkpoint.commit(space)
        await uncommitted.patterns.send(runtime.emit)  # each pattern changed, once, in its newest state
        del self._uncommitted[space]
        self._last_commit = time.monotonic()
        await self._ack(uncommitted.records)

    async def _ack(self, records: list[Held]) -> None:
        for held in records:
            self._applied.add((held.topic, held.partition, held.offset))
            await self.stream.ack(held.item)

    async def _commit_all(self) -> None:
        for space in list(self._uncommitted):
            await self.commit(space)

    async def _abandon(self) -> None:
        """A rebalance or a stop: what was applied is committed, what was not is let go."""
        try:
            await asyncio.wait_for(self._commit_all(), COMMIT_ON_STOP_S)
        except (Exception, asyncio.TimeoutError):
            log.exception("could not commit before a rebalance or a stop: %d records will be applied again",
                          sum(len(u.records) for u in self._uncommitted.values()))
            self.runtime.checkpoint.discard()
            for uncommitted in self._uncommitted.values():
                for held in uncommitted.records:
                    self.gaps.forget(held.item)
            self._uncommitted.clear()
            wake_ack_waiters(self.runtime.app.consumer)
        dropped = self.sequencer.abandon()
        self.starts.clear()
        self.gaps.clear()
        self.buffer.clear()
        if dropped:
            for held in dropped:
                self.gaps.forget(held.item)
            wake_ack_waiters(self.runtime.app.consumer)
            log.info("rebalance: %d records not yet in sequence will be delivered again", len(dropped))

    # -- a batch
    async def apply(self, ready: list[Held]) -> None:
        runtime = self.runtime
        batches: dict[str, SpaceBatch] = {}
        steps: list[Step] = []
        for held in ready:
            source = self.topics[held.topic]
            self._records_in[source].inc()
            decoded = decode(source, held.item.message.value, runtime.limits)
            step = Step(held, source, decoded.record, decoded.result)
            steps.append(step)
            if decoded.record is None:
                step.outcome = REJECTED
            else:
                batches.setdefault(decoded.record.space, SpaceBatch(decoded.record.space)).steps.append(step)
        for batch in batches.values():
            await self._apply_space(batch)
        now, unread = time.monotonic(), []
        for step in steps:  # outputs in input order, dead letters included
            _in_partition_of(step.event)  # what a record delivered again emits is read from its state
            if step.record is None:  # unreadable: no space, no state; its dead letter is all it does
                await emit_step(runtime, step, None)
                unread.append(step.held)
                continue
            uncommitted = self._uncommitted.get(step.record.space)
            if uncommitted is None:
                uncommitted = self._uncommitted[step.record.space] = Uncommitted(now, step.event)
            if step.outcome == FAILED:
                await send_failure(runtime, step.event, step.result, step.operation, step.output)
            else:
                await emit_step(runtime, step, uncommitted.patterns)
            # Acknowledged at the space's commit. A crash before it delivers them again, and they
            # are applied again to the same state and outputs (the same input gives the same memory).
            uncommitted.records.append(step.held)
        await self._ack(unread)

    async def _apply_space(self, batch: SpaceBatch) -> None:
        from streams.core.resilience.breaker import GuardGaveUp

        runtime = self.runtime
        if len(batch.steps) > 1 and not runtime.guard.closed(batch.operation):
            for step in batch.steps:
                await self._apply_space(SpaceBatch(batch.space, [step]))
            return
        _in_partition_of(batch.steps[0].event)
        started = time.perf_counter()
        try:
            # A batch is tried once; a failure is retried (and waited out) record by record.
            await runtime.guard.call(batch.operation, apply_steps, runtime, batch.space, batch.steps,
                                     retry=len(batch.steps) == 1)
        except GuardGaveUp as exc:
            if len(batch.steps) == 1:
                step = batch.steps[0]
                step.outcome, step.output = FAILED, exc.__cause__ or exc
                return
            log.warning("a batch of %d records of space %s failed; applying them one by one",
                        len(batch.steps), batch.space)
            for step in batch.steps:
                step.outcome, step.output = None, None
                await self._apply_space(SpaceBatch(batch.space, [step]))
            return
        elapsed = (time.perf_counter() - started) / len(batch.steps)
        for step in batch.steps:
            if step.outcome == APPLIED:
                self._seconds[step.source].observe(elapsed)


def register(runtime) -> MemoryProcessor:
    app, settings = runtime.app, runtime.settings
    processor = MemoryProcessor(runtime)
    inputs = app.topic(*processor.topics, partitions=settings.partitions,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="memory")
    async def memory(stream):
        await processor.consume(stream.noack())

    @app.task
    async def sequence():
        try:
            await processor.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a stalled memory must not look alive: stop the worker
            log.exception("the memory's sequence failed")
            await app.crash(exc)

    return processor
