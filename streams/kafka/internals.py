"""faust's and aiokafka's private attributes, one function each (see streams/kafka/__init__.py).

Checked against faust-streaming 0.15.3 and aiokafka 0.14.0; tests/unit/kafka/test_kafka_internals.py
states what each function assumes.
"""
from __future__ import annotations

import weakref
from typing import Any


def set_current_event(event: Any) -> None:
    """Make ``event`` faust's current event.

    Why: a faust table reads and writes the RocksDB database and changelog partition of the current
    event's partition. The memory applies records of several partitions in one batch, outside
    faust's own iteration, so it says whose turn it is. faust keeps the current event in the context
    variable ``faust.streams._current_event`` (a weak reference) and offers no setter.
    """
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def forget_unacked(consumer: Any, message: Any) -> None:
    """Drop ``message`` from the faust consumer's unacknowledged set, so that it is not waited for.

    Why: the memory drops a record it will fetch again (after a gap); faust tracks delivered,
    unacknowledged messages in ``Consumer._unacked_messages`` (a WeakSet) and has no public way to
    forget one. Not acknowledged, it is not committed: it comes again from the committed offset.
    """
    consumer._unacked_messages.discard(message)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """faust's copy of the group's committed offset of ``tp`` (None before its seek after an assignment).

    Why: the memory needs it on every turn of its sequencer, where asking the broker would cost a
    round trip; faust keeps it in ``Consumer._committed_offset`` (a dict by TP).
    """
    return consumer._committed_offset.get(tp)


def rewind_read_offset(consumer: Any, tp: Any, offset: int) -> None:
    """Let faust hand over ``offset`` of ``tp`` and what follows when they are fetched again.

    Why: faust moves a partition's read offset past every record it hands to an agent and drops a
    fetched record below it unseen; after the memory drops records (a gap) and seeks back, those
    records would never reach it. faust keeps it in ``Consumer._read_offset`` (a defaultdict by TP,
    None when unknown) and has no public way to move it back.
    """
    read_offset = consumer._read_offset
    if (read_offset.get(tp) or 0) > offset:
        read_offset[tp] = offset


def wake_ack_waiters(consumer: Any) -> None:
    """Wake whatever in faust waits for acknowledgements (its commit, a rebalance).

    Why: after a rebalance the memory forgets the records it held but had not applied; faust waits
    on ``Consumer._waiting_for_ack`` (a future, None when nobody waits) for unacknowledged ones, and
    mode's ``notify`` is how faust itself wakes it when an acknowledgement arrives.
    """
    from mode.utils.futures import notify

    notify(consumer._waiting_for_ack)


def partition_db(table: Any, partition: int) -> Any | None:
    """The RocksDB database of one partition of a faust table, or None for a store that is not RocksDB.

    Why: the memory reads its state straight from RocksDB (faust's read path cost four times the
    read) and turns off the WAL of the partition it writes (the changelog is its log). faust's
    RocksDB store opens a partition's database with ``Store._db_for_partition(partition)``.
    """
    open_db = getattr(table.data, "_db_for_partition", None)
    return None if open_db is None else open_db(partition)


async def delete_group(admin: Any, group_id: str) -> None:
    """Delete a consumer group with aiokafka's admin client.

    Why: aiokafka 0.14's AIOKafkaAdminClient has no ``delete_consumer_groups``; its
    ``_send_request(request, node)`` sends a DeleteGroups request to the group's coordinator.
    """
    from aiokafka.protocol.admin import DeleteGroupsRequest

    coordinator = await admin.find_coordinator(group_id)
    await admin._send_request(DeleteGroupsRequest([group_id]), coordinator)


class _MillisecondsToSeconds:
    """Takes faust's millisecond observations into a histogram in seconds, Prometheus' base unit."""

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram

    def observe(self, milliseconds: float) -> None:
        self._histogram.observe(milliseconds / 1000.0)


def faust_monitor(registry: Any, prefix: str, events_runtime_seconds: Any) -> Any:
    """faust's Prometheus monitor over ``registry``, its events runtime observed into
    ``events_runtime_seconds`` (a histogram in seconds) instead of ``<prefix>_events_runtime_ms``.

    Why: faust's ``setup_prometheus_sensors`` offers no way to rename or rescale a series. This does
    what it does (faust-streaming 0.15.3): ``FaustMetrics.create(registry, prefix)`` and
    ``PrometheusMonitor(metrics=...)``, module-level classes outside faust's ``__all__``, with the one
    histogram unregistered and replaced (``FaustMetrics`` is a NamedTuple: ``_replace``).
    """
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    metrics = FaustMetrics.create(registry, prefix)
    registry.unregister(metrics.events_runtime_latency)
    return PrometheusMonitor(metrics=metrics._replace(events_runtime_latency=_MillisecondsToSeconds(events_runtime_seconds)))
