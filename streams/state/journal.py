"""A space's state writes, committed all or nothing, and which input records they applied.

Faust writes every table change to the table's changelog partition of the record being processed,
and Kafka keeps a partition's order. The worker keeps all of its state in one table (streams.state.patterns),
so the changelog is one ordered log of every write. A crash can cut that log anywhere, also in the
middle of one commit's writes, and a record whose offset was not committed is delivered again.

Writes are held in memory until the space's next commit, like Kafka Streams' record cache in front
of its changelog: a transaction (one batch of the space's records) writes into its own layer and
reads see it; `keep` adds a finished transaction to what the space holds (a key written by many
records is held once, with its newest value); `rollback` drops only the transaction. `commit` writes,
in this order:

1. the space's journal entry `j/<space>`: every write held (every table value is a JSON document,
   embedded as it is), and the last offset applied from each input. A commit larger than
   PART_BYTES puts its writes in parts `j/<space>\x1f<slot>.<n>` written just before the entry, in
   the slot the space's last entry does not use: a cut between the parts and the entry leaves the
   last entry's parts whole;
2. the writes themselves.

Whatever prefix of the log survives a crash, it holds the journal entry of the last commit that
was fully journaled, and everything before it. `repair` re-applies that entry's writes (they are
idempotent: whole values), so the table is exactly the state after that commit; a redelivered
record at or below the entry's offsets is recognized by `is_applied` and not applied again.

This needs local state that is never ahead of the changelog, which a worker killed without a clean
shutdown cannot promise (RocksDB keeps writes whose changelog messages were still in the producer's
buffer). `streams.ops.cli` therefore deletes the local state after an unclean stop and lets faust restore
it from the changelog (Kafka Streams does the same under exactly-once).
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from schemas.state import JournalEntry, JournalPart

JOURNAL_PREFIX = "j/"
# A commit whose writes are larger than this is journaled in parts: Kafka refuses messages over 1 MB.
PART_BYTES = 512 * 1024


class Journal(MutableMapping):
    """The table as the current record sees it: its transaction's writes, then what the spaces
    hold, then the table. Outside a transaction, reads see what is held."""

    def __init__(self, table: MutableMapping, part_bytes: int = PART_BYTES) -> None:
        self._table = table
        self._part_bytes = part_bytes
        self._pending: dict[str, bytes | None] | None = None
        self._held: dict[str, dict[str, bytes | None]] = {}  # space -> writes kept, not committed
        self._held_values: dict[str, bytes | None] = {}       # every held write, for reads
        self._held_bytes = 0
        self._slots: dict[str, int] = {}  # space -> the parts slot its last entry uses (-1: none)
        self._repaired: set[str] = set()
        # Applied offsets per space, as its journal entry and what it holds say: read on every record.
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
        elif key in self._held_values:
            value = self._held_values[key]
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
        for k in keys + list(self._held_values) + list(pending):
            if k not in seen and self.get(k) is not None:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _writes(self) -> dict[str, bytes | None]:
        if self._pending is None:
            raise RuntimeError("state is written only inside a journal transaction")
        return self._pending

    # -- what was applied
    def entry(self, space: str) -> JournalEntry | None:
        raw = self._table.get(JOURNAL_PREFIX + space)
        return None if raw is None else JournalEntry.decode(raw)

    def _entry_writes(self, space: str, entry: JournalEntry) -> tuple[tuple[str, bytes | None], ...]:
        if not entry.parts:
            return entry.writes
        return tuple(w for n in range(entry.parts)
                     for w in JournalPart.decode(self._table[_part_key(space, entry.slot, n)]).writes)

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
        value had to be restored (a crash cut that commit's writes short)."""
        if space in self._repaired:
            return False
        self._repaired.add(space)
        entry = self.entry(space)
        changed = False
        for key, value in self._entry_writes(space, entry) if entry is not None else ():
            if self._table.get(key) != value:
                changed = True
                if value is None:
                    self._table.pop(key, None)
                else:
                    self._table[key] = value
        return changed

    def forget(self) -> bool:
        """After a rebalance: spaces may come back restored by another worker; check them again.
        What the spaces held is dropped (True when there was some)."""
        self._repaired.clear()
        self._applied.clear()
        self._slots.clear()
        return self.discard()

    # -- transactions
    def begin(self) -> None:
        self._pending = {}

    def rollback(self) -> None:
        self._pending = None

    def keep(self, space: str, offsets: dict[str, int]) -> None:
        """The transaction's writes join what `space` holds for its next commit, and the records
        it applied (`offsets`: the newest per input) count as applied."""
        pending, self._pending = self._writes(), None
        held = self._held.setdefault(space, {})
        for key, value in pending.items():
            old = held.get(key)
            self._held_bytes += _size(key, value) - (_size(key, old) if key in held else 0)
            held[key] = value
            self._held_values[key] = value
        self._applied[space] = {**self.applied(space), **offsets}

    @property
    def held_spaces(self) -> tuple[str, ...]:
        return tuple(self._held)

    @property
    def held_bytes(self) -> int:
        """About how large the held writes are, in bytes."""
        return self._held_bytes

    def commit(self, space: str) -> None:
        """Journal what `space` holds, then write it to the table (see the module docstring)."""
        held = self._held.pop(space, None)
        if held is None:
            return
        writes = tuple(held.items())
        chunks = _chunks(writes, self._part_bytes)
        entry = JournalEntry(self.applied(space), writes)
        if len(chunks) > 1:
            slot = 1 if self._last_slot(space) == 0 else 0
            for n, chunk in enumerate(chunks):
                self._table[_part_key(space, slot, n)] = JournalPart(chunk).encode()
            entry = JournalEntry(entry.applied, (), parts=len(chunks), slot=slot)
        self._table[JOURNAL_PREFIX + space] = entry.encode()
        self._slots[space] = entry.slot if entry.parts else -1
        for key, value in writes:
            self._held_bytes -= _size(key, value)
            self._held_values.pop(key, None)  # a key is one space's: no other space holds it
            if value is None:
                self._table.pop(key, None)
            else:
                self._table[key] = value

    def _last_slot(self, space: str) -> int:
        """The parts slot the space's last entry uses, -1 if it has none (read once, then kept)."""
        slot = self._slots.get(space)
        if slot is None:
            last = self.entry(space)
            slot = self._slots[space] = last.slot if last is not None and last.parts else -1
        return slot

    def discard(self) -> bool:
        """Drop what every space holds: its records count as not applied again."""
        if not self._held:
            return False
        for space in self._held:
            self._applied.pop(space, None)
        self._held.clear()
        self._held_values.clear()
        self._held_bytes = 0
        return True


def _part_key(space: str, slot: int, n: int) -> str:
    # \x1f never appears in a valid space name, so no part key is another space's entry.
    return f"{JOURNAL_PREFIX}{space}\x1f{slot}.{n}"


def _size(key: str, value: bytes | None) -> int:
    return len(key) + (0 if value is None else len(value))


def _chunks(writes: tuple, limit: int) -> list[tuple]:
    """`writes` in order, cut into runs of at most `limit` bytes (a larger write is a run alone)."""
    chunks, chunk, size = [], [], 0
    for write in writes:
        n = _size(*write)
        if chunk and size + n > limit:
            chunks.append(tuple(chunk))
            chunk, size = [], 0
        chunk.append(write)
        size += n
    if chunk or not chunks:
        chunks.append(tuple(chunk))
    return chunks
