"""The checkpoint's order: repair -> begin -> commit or rollback per space, one flush per batch.
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
    assert list(table) == [JOURNAL_PREFIX + "s", "a"]  # the journal entry first
    entry = JournalEntry.decode(table[JOURNAL_PREFIX + "s"])
    assert dict(entry.applied) == {"audio-features": 4, "interactions": 9}
    assert entry.writes == (("a", b"1"),)
    with cp.transaction("s") as tx:  # the next batch sees what the last one applied
        assert tx.is_applied("audio-features", 4) and not tx.is_applied("audio-features", 5)
    assert [c.invalidated for c in caches] == [0, 0]


def test_a_failure_writes_nothing_and_drops_the_caches():
    table: dict = {"a": b"0"}
    cp, caches = checkpoint(table)
    with pytest.raises(ZeroDivisionError):
        with cp.transaction("s") as tx:
            cp.journal["a"] = b"1"
            tx.applied("audio-features", 0)
            1 / 0
    assert table == {"a": b"0"}
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
