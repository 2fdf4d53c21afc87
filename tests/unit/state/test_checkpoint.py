"""The checkpoint's order: repair -> begin -> keep or rollback per space, then commit and flush.
No broker: the table is a dict, and the caches and the send breaker are stand-ins that count."""
from __future__ import annotations

import asyncio

import pytest

from streams.state.checkpoint import Checkpoint
from streams.state.journal import JOURNAL_PREFIX, Journal
from schemas.state import JournalEntry


class Cache:
    def __init__(self) -> None:
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1


def checkpoint(table: dict, **kw):
    caches = (Cache(), Cache())
    return Checkpoint(Journal(table), caches=caches, **kw), caches


def test_commit_writes_the_journal_entry_then_the_writes_with_the_newest_offset_per_input():
    table: dict = {}
    cp, caches = checkpoint(table)
    with cp.transaction("s") as tx:
        cp.journal["a"] = b"1"
        tx.applied("audio-features", 3)
        assert tx.is_applied("audio-features", 2) and tx.is_applied("audio-features", 3)
        assert not tx.is_applied("audio-features", 4) and not tx.is_applied("interactions", 0)
        tx.applied("audio-features", 4)
        tx.applied("interactions", 9)
    assert table == {} and cp.held, "held until the commit"
    with cp.transaction("s") as tx:  # the next batch sees what the last one applied, and wrote
        assert tx.is_applied("audio-features", 4) and not tx.is_applied("audio-features", 5)
        assert cp.journal["a"] == b"1"
        cp.journal["a"] = b"2"
        cp.journal["b"] = b"3"
        tx.applied("audio-features", 5)
    asyncio.run(cp.commit("s"))
    assert list(table) == [JOURNAL_PREFIX + "s", "a", "b"]  # the journal entry first
    entry = JournalEntry.decode(table[JOURNAL_PREFIX + "s"])
    assert dict(entry.applied) == {"audio-features": 5, "interactions": 9}
    assert entry.writes == (("a", b"2"), ("b", b"3")), "a key written by two batches: once, its newest value"
    assert not cp.held and cp.journal.held_bytes == 0
    assert [c.invalidated for c in caches] == [0, 0]


def test_a_commit_writes_its_own_space_only():
    table: dict = {}
    cp, _ = checkpoint(table)
    for space in ("s", "t"):
        with cp.transaction(space) as tx:
            cp.journal[space] = b"1"
            tx.applied("audio-features", 0)
    asyncio.run(cp.commit("s"))
    assert set(table) == {JOURNAL_PREFIX + "s", "s"} and cp.held
    asyncio.run(cp.commit("t"))
    assert table["s"] == table["t"] == b"1" and not cp.held
    with cp.transaction("s") as tx:
        cp.journal["s"] = b"2"
        tx.applied("audio-features", 1)
    with cp.transaction("t") as tx:
        cp.journal["t"] = b"2"
        tx.applied("audio-features", 1)
    asyncio.run(cp.commit("t"))  # one space: the other's writes stay held
    assert table["t"] == b"2" and table["s"] == b"1" and cp.journal["s"] == b"2" and cp.held


def test_discard_drops_what_is_held_and_its_records_count_as_not_applied():
    table: dict = {"a": b"0"}
    cp, caches = checkpoint(table)
    with cp.transaction("s") as tx:
        cp.journal["a"] = b"1"
        tx.applied("audio-features", 0)
    cp.discard()
    assert table == {"a": b"0"} and cp.journal["a"] == b"0" and not cp.held
    assert [c.invalidated for c in caches] == [1, 1]
    with cp.transaction("s") as tx:
        assert not tx.is_applied("audio-features", 0)
    cp.discard()  # nothing held: the caches stay
    assert [c.invalidated for c in caches] == [1, 1]


def test_a_failure_drops_its_own_writes_only_and_the_caches():
    table: dict = {"a": b"0"}
    cp, caches = checkpoint(table)
    with cp.transaction("s") as tx:  # an earlier batch, held
        cp.journal["b"] = b"1"
        tx.applied("audio-features", 0)
    with pytest.raises(ZeroDivisionError):
        with cp.transaction("s") as tx:
            cp.journal["a"] = b"1"
            tx.applied("audio-features", 1)
            1 / 0
    assert cp.journal["a"] == b"0" and cp.journal["b"] == b"1"
    asyncio.run(cp.commit("s"))
    assert table == {"a": b"0", "b": b"1", JOURNAL_PREFIX + "s": table[JOURNAL_PREFIX + "s"]}
    assert [c.invalidated for c in caches] == [1, 1]
    with pytest.raises(RuntimeError):  # and the transaction is closed
        cp.journal["a"] = b"2"


def test_a_transaction_that_applies_nothing_leaves_no_journal_entry():
    table: dict = {}
    cp, _ = checkpoint(table)
    with cp.transaction("s"):
        pass
    assert table == {}


def test_repair_restores_a_cut_record_once_and_drops_the_caches_only_then():
    table: dict = {}
    cp, caches = checkpoint(table)
    with cp.transaction("s") as tx:
        cp.journal["a"] = b"1"
        cp.journal["b"] = b"2"
        tx.applied("audio-features", 0)
    asyncio.run(cp.commit("s"))
    del table["b"]  # a crash cut the record's writes after the journal entry and "a"
    cp2, caches2 = checkpoint(table)
    with cp2.transaction("s"):
        pass
    assert table["b"] == b"2" and [c.invalidated for c in caches2] == [1, 1]
    with cp2.transaction("s"):  # once per space until a rebalance
        pass
    assert [c.invalidated for c in caches2] == [1, 1]
    del table["b"]
    cp2.forget()  # a rebalance: the space is checked again, the caches dropped
    assert [c.invalidated for c in caches2] == [2, 2]
    with cp2.transaction("s"):
        pass
    assert table["b"] == b"2" and [c.invalidated for c in caches2] == [3, 3]


class Queue:
    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.flushed = 0

    def flush(self, send) -> None:
        self.flushed += 1


def test_flush_sends_the_changelog_through_the_send_breaker_only_when_something_is_queued():
    calls = []

    async def send(flush):
        calls.append(flush)
        flush(None)

    for queued, expected in ((0, 0), (2, 1)):
        calls.clear()
        log = Queue(queued)
        cp = Checkpoint(Journal({}), log, send=send)
        asyncio.run(cp.flush())
        assert len(calls) == expected and log.flushed == expected
