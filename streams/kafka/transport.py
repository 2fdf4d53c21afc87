"""faust's aiokafka transport, with five changes to its consumer: a short fetch long-poll,
fetches only of the partitions faust takes records from (`fetch_only`), acknowledgements that only
the memory's processor makes (`Consumer.ack_filter`), gaps in offsets that only the memory accepts
(`Consumer.own_gaps`), and the group's committed offsets asked of the broker
(`Consumer.committed_offsets`). Also the producer's partitioner (`KeyPartitioner`).

faust creates its consumer with `fetch_max_wait_ms=1500` and no setting to change it. aiokafka keeps
one fetch in flight per broker; while the partitions that have data are still buffered, the next
fetch names only partitions without new data (other input partitions, changelogs, faust's leader
topic), and the broker holds it for the full long-poll. The partitions with data cannot be
refetched until it returns, so a busy worker starves between batches. Measured with
benchmarks/throughput.py (10,000 records): 600 records/s at 1500 ms, 790-870 at 10 ms.
A shorter poll costs idle fetch requests: 1000 / FMS_FETCH_MAX_WAIT_MS per second when idle.
"""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from faust.transport.drivers import aiokafka as driver


def transport_class(fetch_max_wait_ms: int, fetch_min_bytes: int = 1):
    class ConsumerThread(driver.AIOKafkaConsumerThread):
        async def committed_offsets(self, partitions) -> dict:
            consumer = self._ensure_consumer()
            return await self.call_thread(_committed, consumer, partitions)

        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            # Runs in the consumer's thread, where aiokafka's pause and resume must run.
            if active_partitions is not None:
                fetch_only(consumer, active_partitions)
            return await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                                max_records=max_records)

        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by aiokafka's Fetcher at start()
            consumer._fetch_min_bytes = fetch_min_bytes
            return consumer

    class Consumer(driver.Consumer):
        # Set by agents.memory: which acknowledgements may advance the committed offset.
        ack_filter = None
        # Set by agents.memory: the topics whose gaps in offsets only it accepts (`accept_gap`).
        own_gaps: frozenset = frozenset()

        def ack(self, message) -> bool:
            # faust acknowledges a record it drops unread during a rebalance or a shutdown (a
            # "skipped" record); committing past it would lose it. Only the memory's own
            # acknowledgements, of records it applied, count.
            if self.ack_filter is not None and not self.ack_filter(message):
                return False
            return super().ack(message)

        async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
            # faust counts the offsets skipped between two records it hands over as acknowledged,
            # for transaction markers. The memory drops records after a gap and fetches the missing
            # ones again: counted so, they let a commit pass records not applied yet, and when they
            # are acknowledged after all, the duplicates in faust's list of acknowledged offsets
            # split its runs and the commit advances one offset per commit (seen: a group stuck
            # short of its inputs' ends for a minute after records 1-17 were fetched again).
            if tp.topic not in self.own_gaps:
                await super()._add_gap(tp, offset_from, offset_to)

        async def accept_gap(self, tp, offset_from: int, offset_to: int) -> None:
            """Offsets `offset_from`..`offset_to` of `tp` will not come: a commit may pass them."""
            await super()._add_gap(tp, offset_from, offset_to)

        async def committed_offsets(self, *partitions) -> dict:
            """The group's committed offset of each partition, asked of the broker (None: the group
            has none). faust's own copy is filled in by its seek after an assignment, and records
            can be delivered before that."""
            return await self._thread.committed_offsets(partitions)

        def _new_consumer_thread(self):
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class TunedTransport:
    """A faust.App mixin (put it first) whose transport is :func:`transport_class`'s, built with the
    app's ``fetch_max_wait_ms`` and ``fetch_min_bytes``.

    faust builds its transport in ``App._new_transport()`` (faust-streaming 0.15.3), lazily, on first
    use, and takes no transport class by setting (``broker`` picks a driver by URL scheme): the hook
    is overridden here.
    """

    def __init__(self, *args, fetch_max_wait_ms: int, fetch_min_bytes: int = 1, **kwargs) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return transport_class(self.fetch_max_wait_ms, self.fetch_min_bytes)(self.conf.broker_consumer, self)


def fetch_only(consumer, active) -> None:
    """Let aiokafka fetch only the assigned partitions faust takes records from (`active`): pause
    the others in aiokafka (public API), resume those that are active again.

    faust pauses a partition in its own bookkeeping only: after a recovery its tables' changelog
    partitions, which the worker then only writes, and an input partition the memory's buffer
    bounds. aiokafka still fetches them, and keeps what it fetched until it is taken; while a
    partition's fetched records wait (100 ms, aiokafka's prefetch backoff), it sends no fetch for
    any partition to that broker. So a changelog's first records after a recovery (the first
    commit of a new space) stalled the input for 100 ms: measured with e2e_latency.py on a new
    128-d space at 500/s, ~50 records 60-150 ms late. A new assignment (each rebalance) starts
    with nothing paused in aiokafka, so a recovery fetches its changelogs as before.
    """
    assigned = consumer.assignment()
    paused = consumer.paused()
    stop = [tp for tp in assigned if tp not in active and tp not in paused]
    go = [tp for tp in paused if tp in active]
    if stop:
        consumer.pause(*stop)
    if go:
        consumer.resume(*go)


async def _committed(consumer, partitions) -> dict:
    return {tp: await consumer.committed(tp) for tp in partitions}


class KeyPartitioner:
    """aiokafka's DefaultPartitioner (Kafka's murmur2 of the key; a random partition without a key),
    remembering each key's partition: aiokafka's murmur2 is pure Python, 6-9 us a key, and the
    memory's output keys repeat (a recognition is keyed by its space, a pattern event by its
    pattern)."""

    def __init__(self, max_keys: int = 1 << 16) -> None:
        self._max_keys = max_keys
        self._known: dict[tuple[bytes, int], int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        count = len(all_partitions)
        index = self._known.get((key, count))
        if index is None:
            if len(self._known) >= self._max_keys:  # bounded: pattern ids come and go
                self._known.clear()
            index = self._known[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        return all_partitions[index]
