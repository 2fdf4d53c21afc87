"""The memory's state between two commits, as its input sees it: transactions per space, then commits.

Modelled on Quix Streams' `Checkpoint` and Kafka Streams' commit: the agent (agents.memory) opens
a transaction for each space's records of a batch, and commits a space every `commit_interval_s`
(and every space before a rebalance or a stop). The order of everything that makes a record count as applied
exactly once is here, top to bottom:

1. **repair** (once per space, until a rebalance): the space's last journal entry is applied again,
   in case a crash cut its writes short (streams.state.journal);
2. **begin**: the space's records write into the journal's transaction; reads see those writes;
3. **keep**: the transaction's writes join what the space holds until the commit (a value many
   records write is held once, in its newest state); on any error, **rollback**: the transaction's
   writes are dropped, and the caches built from the tables with them;
4. **commit**: each space's journal entry (every held write, and the last offset applied from each
   input) and the writes go to RocksDB, their changelog messages queued (streams.state.changelog);
   then the changelog queue to the producer.

Then the agent sends what waited for the commit and acknowledges the inputs, and faust commits
their offsets after flushing its producer: the state is on the broker before the records that made
it count as processed (as with faust's own table path). A record whose state is not committed yet
was not acknowledged: after a crash it is delivered again and applied again, to the same result.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from streams.state.changelog import Changelog
from streams.state.journal import Journal


class Cache(Protocol):
    def invalidate(self) -> None: ...


class Transaction:
    """One space's records of a batch: which of them are applied already."""

    def __init__(self, journal: Journal, space: str) -> None:
        self._journal = journal
        self.space = space
        self.offsets: dict[str, int] = {}  # the newest offset applied in this transaction, per input

    def is_applied(self, source: str, offset: int) -> bool:
        """Whether the record at `offset` of input `source` was applied before: by an earlier
        transaction (a record delivered again after a crash) or earlier in this one."""
        return self._journal.is_applied(self.space, source, offset) or self.offsets.get(source, -1) >= offset

    def applied(self, source: str, offset: int) -> None:
        self.offsets[source] = offset


class Checkpoint:
    """The worker's one owner of its state's transactions (see the module docstring)."""

    def __init__(self, journal: Journal, changelog: Changelog | None = None, caches: tuple[Cache, ...] = (),
                 send: Callable[[Callable], Awaitable] | None = None) -> None:
        self.journal = journal
        self.changelog = changelog
        self.caches = caches  # built from the tables; dropped whenever the tables may differ from them
        # send(flush): runs the changelog's flush (which hands each queued write to a producer send)
        # through the worker's send breaker.
        self.send = send

    @contextmanager
    def transaction(self, space: str) -> Iterator[Transaction]:
        """repair -> begin -> (the body applies the space's records) -> keep, or rollback."""
        if self.journal.repair(space):
            self._invalidate()  # the caches predate the restored writes
        self.journal.begin()
        tx = Transaction(self.journal, space)
        try:
            yield tx
        except BaseException:
            self.journal.rollback()
            self._invalidate()  # a cache may be ahead of the tables: reload it
            raise
        if tx.offsets:
            self.journal.keep(space, tx.offsets)
        else:
            self.journal.rollback()  # nothing new was applied: nothing to commit

    @property
    def held(self) -> bool:
        """Whether any space holds writes that are not committed."""
        return bool(self.journal.held_spaces)

    async def commit(self, space: str) -> None:
        """The space's held writes to the table and its changelog, then the changelog to the
        producer, in order. The table writes to the database and changelog partition of the current
        record's: the caller makes one of the space's records current first."""
        self.journal.commit(space)
        await self.flush()

    async def flush(self) -> None:
        """The changelog writes queued so far to the producer, in order."""
        if self.changelog is not None and self.changelog.queued:
            await self.send(self.changelog.flush)

    def discard(self) -> None:
        """Drop what is held and not committed: its records are applied again when delivered again."""
        if self.journal.discard():
            self._invalidate()

    def forget(self) -> None:
        """After a rebalance: spaces may come back changed by another worker."""
        self.journal.forget()
        self._invalidate()

    def _invalidate(self) -> None:
        for cache in self.caches:
            cache.invalidate()
