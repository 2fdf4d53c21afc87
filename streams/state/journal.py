"""One input record's state writes, applied all or nothing, and which records were applied.

Faust writes every table change to the table's changelog partition of the record being processed,
and Kafka keeps a partition's order. The worker keeps all of its state in one table (streams.state.patterns),
so the changelog is one ordered log of every write. A crash can cut that log anywhere, also in the
middle of one record's writes, and a record whose offset was not committed is delivered again.

To apply each record exactly once, a record's writes are collected in a transaction (reads see the
record's own writes), and `commit` writes, in this order:

1. the space's journal entry `j/<space>`: all of the record's writes (every table value is a JSON
   document, embedded as it is), and the offset of the record
   (and the last offset applied from the space's other input topic);
2. the writes themselves.

Whatever prefix of the log survives a crash, it holds the journal entry of the last record that
was fully journaled, and everything before it. `repair` re-applies that entry's writes (they are
idempotent: whole values), so the table is exactly the state after that record; a redelivered
record at or below the entry's offset is recognized by `is_applied` and not applied again.

This needs local state that is never ahead of the changelog, which a worker killed without a clean
shutdown cannot promise (RocksDB keeps writes whose changelog messages were still in the producer's
buffer). `streams.ops.cli` therefore deletes the local state after an unclean stop and lets faust restore
it from the changelog (Kafka Streams does the same under exactly-once).
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from schemas.state import JournalEntry

JOURNAL_PREFIX = "j/"
_DELETED = object()


class Journal(MutableMapping):
    """The table as the current record sees it. Outside a transaction, reads go to the table."""

    def __init__(self, table: MutableMapping) -> None:
        self._table = table
        self._pending: dict[str, bytes | None] | None = None
        self._repaired: set[str] = set()
        # Applied offsets per space, as its journal entry holds them: read on every record.
        self._applied: dict[str, dict[str, int]] = {}

    # -- the mapping
    def __getitem__(self, key: str):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default=None):
        if self._pending is not None and key in self._pending:
            value = self._pending[key]
        else:
            value = self._table.get(key)
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self._writes()[key] = value

    def __delitem__(self, key: str) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self._writes()[key] = None

    def pop(self, key: str, default=None):
        value = self.get(key)
        if value is None:
            return default
        self._writes()[key] = None
        return value

    def __iter__(self) -> Iterator[str]:
        # Only for tests and tools: a scan of the table as this record sees it.
        keys = [k for k in list(self._table) if isinstance(k, str)]
        pending = self._pending or {}
        seen = set()
        for k in keys + list(pending):
            if k not in seen and self.get(k) is not None:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _writes(self) -> dict[str, bytes | None]:
        if self._pending is None:
            raise RuntimeError("state is written only inside a journal transaction")
        return self._pending

    # -- transactions
    def entry(self, space: str) -> JournalEntry | None:
        raw = self._table.get(JOURNAL_PREFIX + space)
        return None if raw is None else JournalEntry.decode(raw)

    def applied(self, space: str) -> dict[str, int]:
        """The last offset applied to `space` from each input."""
        applied = self._applied.get(space)
        if applied is None:
            entry = self.entry(space)
            applied = self._applied[space] = {} if entry is None else dict(entry.applied)
        return applied

    def is_applied(self, space: str, source: str, offset: int) -> bool:
        """Whether the record at `offset` of input `source` was already applied to `space`."""
        return self.applied(space).get(source, -1) >= offset

    def repair(self, space: str) -> bool:
        """Re-apply the space's last journal entry, once per space until `forget`; True when a
        value had to be restored (a crash cut that record's writes short)."""
        if space in self._repaired:
            return False
        self._repaired.add(space)
        entry = self.entry(space)
        changed = False
        for key, value in entry.writes if entry is not None else ():
            if self._table.get(key) != value:
                changed = True
                if value is None:
                    self._table.pop(key, None)
                else:
                    self._table[key] = value
        return changed

    def forget(self) -> None:
        """After a rebalance: spaces may come back restored by another worker; check them again."""
        self._repaired.clear()
        self._applied.clear()

    def begin(self) -> None:
        self._pending = {}

    def rollback(self) -> None:
        self._pending = None

    def commit(self, space: str, offsets: dict[str, int]) -> None:
        """Journal and write what the transaction wrote, with the last offset it applied from
        each input (`offsets`: one record's, or a batch's newest per input)."""
        pending, self._pending = self._writes(), None
        applied = {**self.applied(space), **offsets}
        self._table[JOURNAL_PREFIX + space] = JournalEntry(applied, tuple(pending.items())).encode()
        self._applied[space] = applied
        for key, value in pending.items():
            if value is None:
                self._table.pop(key, None)
            else:
                self._table[key] = value
