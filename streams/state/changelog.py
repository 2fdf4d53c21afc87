"""The memory table written straight to its RocksDB store and its changelog topic.

A faust table sends each write to its changelog through faust's producer buffer: one coroutine
step, one FutureMessage and one sensor round per write, and the worker's input stops while that
buffer holds more than 100 writes. The memory writes several values per record, so that buffer,
not the memory, set the worker's pace (faust's "producer buffer full" warnings while draining a
backlog). Here a write (made at a space's commit, streams.state.checkpoint) goes to the store at once
and its changelog message is queued; `flush` hands the queue to the producer in order, after the
commit. The producer keeps a partition's order, and faust flushes it before committing input
offsets (which the memory acknowledges only after the commit), so the changelog is on the broker
before the records it holds count as processed, as with faust's own path.

Like faust, it remembers per changelog partition the last offset that reached the broker, in the
partition's RocksDB (`set_persisted_offset`), so that a warm restart reads only the rest.
Reads go through the faust table. Writes must happen while the current event is one of the space's
partition (agents.memory sets it): RocksDB keeps a database per partition.

The store's RocksDB databases are written without their write-ahead log: the changelog is the log.
A crash deletes the local state anyway (streams.state.local_state), and what survives of a database
without its WAL is what it had flushed, in write order, with its persisted offsets: a prefix that
faust completes from the changelog. The WAL cost more per write than the rest of the write.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, MutableMapping

from faust.streams import current_event  # the shell: this module writes a faust table
from faust.types import TP
from rocksdict import WriteOptions

from streams.kafka.internals import partition_db


def _write_options():
    options = WriteOptions()
    options.disable_wal = True
    return options


class Changelog(MutableMapping):
    def __init__(self, table) -> None:
        self._table = table
        self._queued: deque[tuple[int, bytes, bytes | None]] = deque()
        self._delivered: dict[int, int] = {}
        self._failed = False
        self._topic: str | None = None
        # partition -> id of the database told to skip its WAL. Not the database: a reference
        # would keep it open after faust lets go of it, and faust could not open it again.
        self._unlogged: dict[int, int] = {}

    # -- reads: the current partition's database, as faust's own read would
    def __getitem__(self, key: str):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default=None):
        db = self._current_db()
        if db is None:  # no record of a partition being processed (an HTTP answer): faust looks in every one
            return self._table.get(key, default)
        # Straight to RocksDB: faust's read path (a key check and a read, its serializers, a sensor
        # call) cost four times the read itself, on every record.
        value = db.get(key.encode())
        return default if value is None else value

    def _current_db(self):
        event = current_event()
        if event is None:
            return None
        return partition_db(self._table, event.message.partition)  # None: not RocksDB (unit tests' stand-in)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    # -- writes: the store now, the changelog at `flush`
    def __setitem__(self, key: str, value: bytes) -> None:
        partition = self._write_partition()
        self._table.data[key] = value
        self._queued.append((partition, key.encode(), value))

    def _write_partition(self) -> int:
        """The current event's partition, whose database is then sure to skip its WAL."""
        partition = current_event().message.partition
        # faust opens a partition's database when it is first used, and again after a rebalance.
        db = partition_db(self._table, partition)
        if db is None:  # not a RocksDB store (the unit tests' stand-in)
            return partition
        if self._unlogged.get(partition) != id(db):
            db.set_write_options(_write_options())
            self._unlogged[partition] = id(db)
        return partition

    def __delitem__(self, key: str) -> None:
        if self._table.get(key) is None:
            raise KeyError(key)
        self.pop(key)

    def pop(self, key: str, default=None):
        value = self._table.get(key)
        if value is None:
            return default
        partition = self._write_partition()
        del self._table.data[key]
        self._queued.append((partition, key.encode(), None))
        return value

    @property
    def queued(self) -> int:
        return len(self._queued)

    @property
    def behind(self) -> bool:
        """Whether the store holds writes whose changelog messages did not reach the broker: the
        store is then no prefix of the changelog, and a stop is not clean (streams.state.local_state)."""
        return bool(self._queued) or self._failed

    async def flush(self, send) -> None:
        """Queued changelog messages to `send(topic, key, value, partition)` (an awaitable that
        returns the delivery future), in the order they were written; then the offsets that
        reached the broker since the last flush to the store."""
        if self._topic is None:
            self._topic = self._table.changelog_topic.get_topic_name()
        while self._queued:  # a failed send leaves it and the rest queued, for a retry
            partition, key, value = self._queued[0]
            delivery = await send(self._topic, key, value, partition)
            self._queued.popleft()
            delivery.add_done_callback(self._on_delivered)
        self._persist()

    def _on_delivered(self, delivery) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self._failed = True  # the send is counted and logged where it was made
            return
        meta = delivery.result()
        if meta.offset > self._delivered.get(meta.partition, -1):
            self._delivered[meta.partition] = meta.offset

    def _persist(self) -> None:
        delivered, self._delivered = self._delivered, {}
        for partition, offset in delivered.items():
            self._table.data.set_persisted_offset(TP(self._topic, partition), offset)
