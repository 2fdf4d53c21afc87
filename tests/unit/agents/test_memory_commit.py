"""The memory's commit, a space at a time: the state it held since its last commit goes to the table
first, then its pattern events, then the acknowledgements; a commit that cannot finish before a rebalance lets its
records go, to be delivered and applied again. No broker: the table is a dict, and the stream, the
emitter and the consumer are stand-ins that record what they are given."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from unittest.mock import MagicMock

import numpy as np

import agents.memory
from agents.memory import FEATURES, MemoryProcessor, Uncommitted
from streams.core.patterns import Pattern
from streams.core.sequence import Held
from streams.state.checkpoint import Checkpoint
from streams.state.journal import JOURNAL_PREFIX, Journal

TOPIC = "t." + FEATURES


class Event:  # faust keeps a weak reference to the current event
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


class Record:
    def __init__(self, table: dict, log: list) -> None:
        self.table, self.log = table, log

    async def ack(self, event) -> None:
        self.log.append(("ack", event, len(self.table)))

    async def send(self, topic, key, value) -> None:
        self.log.append(("send", topic, key, len(self.table)))


def processor(table: dict, log: list, send_fails: bool = False):
    record = Record(table, log)
    forgotten: list = []

    async def send(flush):
        if send_fails:
            raise ConnectionError("no broker")

    settings = SimpleNamespace(topic=lambda name: "t." + name, max_idle_ms=1000, batch_max=64, buffer_max=1000,
                               apply_linger_ms=0.0, commit_interval_s=1.0, state_cache_max_bytes=1 << 20)
    consumer = SimpleNamespace(_waiting_for_ack=None, _unacked_messages=set(), _acked=set())
    app = SimpleNamespace(consumer=consumer, flow_control=SimpleNamespace(is_active=lambda: True))
    checkpoint = Checkpoint(Journal(table), changelog=SimpleNamespace(queued=1, flush=None), send=send)
    runtime = SimpleNamespace(settings=settings, app=app, metrics=MagicMock(), checkpoint=checkpoint, emit=record)
    proc = MemoryProcessor(runtime)
    proc.stream = record
    proc.gaps.forget = forgotten.append
    return proc, checkpoint, forgotten


def apply_one(proc, checkpoint, offset: int, space: str = "s") -> Held:
    """What MemoryProcessor.apply leaves after one record: its writes held, its pattern event
    folded, the record waiting for its space's commit."""
    with checkpoint.transaction(space) as tx:
        checkpoint.journal[f"p/{space}/{offset}"] = b"1"
        tx.applied(FEATURES, offset)
    uncommitted = proc._uncommitted.setdefault(space, Uncommitted(0.0, Event(0)))
    pattern = Pattern(pattern_id="a", count=offset + 1, centroid=np.array([1.0, 0.0], dtype=np.float32),
                      similarity_sum=offset + 1.0, confidence=0.5, created_ts=0.0, last_ts=float(offset))
    uncommitted.patterns.add(space, pattern, "updated", 0.0)
    held = Held(TOPIC, 0, offset, 0.0, f"event{offset}")
    uncommitted.records.append(held)
    return held


def test_a_commit_writes_the_state_then_sends_the_pattern_events_then_acknowledges(monkeypatch):
    table: dict = {}
    log: list = []
    proc, checkpoint, _ = processor(table, log)
    current: list = []  # the table writes to the database and changelog of the current event's partition
    monkeypatch.setattr(agents.memory, "set_current_event", lambda event: current.append((event, len(table))))
    for offset in range(3):
        apply_one(proc, checkpoint, offset)
    apply_one(proc, checkpoint, 3, space="t")
    proc._uncommitted["t"].since = time.monotonic()  # not due yet
    assert table == {} and log == []
    s_event = proc._uncommitted["s"].event
    asyncio.run(proc._commit_due())
    written = len(table)
    assert written == 4 and JOURNAL_PREFIX + "s" in table and checkpoint.held
    assert current == [(s_event, 0)], "one of the space's records was made current before its writes"
    assert log == [("send", "patterns", "s/a", written)] + [("ack", f"event{n}", written) for n in range(3)], \
        "one pattern event for three updates, after the state; then the acknowledgements"
    assert list(proc._uncommitted) == ["t"]
    assert proc.may_ack(SimpleNamespace(topic=TOPIC, partition=0, offset=2))
    asyncio.run(proc._commit_due())  # the other space is not due
    assert len(log) == 4


def test_a_rebalance_commits_what_was_applied_and_a_commit_that_fails_lets_it_go():
    table: dict = {}
    log: list = []
    proc, checkpoint, forgotten = processor(table, log)
    apply_one(proc, checkpoint, 0)
    apply_one(proc, checkpoint, 1, space="t")
    asyncio.run(proc._abandon())
    assert [entry[0] for entry in log] == ["send", "ack"] * 2 and forgotten == []
    assert not checkpoint.held and not proc._uncommitted

    table, log = {}, []
    proc, checkpoint, forgotten = processor(table, log, send_fails=True)
    apply_one(proc, checkpoint, 0)
    asyncio.run(proc._abandon())
    assert log == [], "no pattern event and no acknowledgement for a state that is not on the broker"
    assert forgotten == ["event0"] and not checkpoint.held and not proc._uncommitted
    assert not proc.may_ack(SimpleNamespace(topic=TOPIC, partition=0, offset=0))
