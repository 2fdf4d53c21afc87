"""What streams/kafka assumes about faust's and aiokafka's internals (faust-streaming 0.15.3,
aiokafka 0.14.0, pinned in pyproject.toml). An upgrade that breaks one of these fails here, not in
a worker. No broker: nothing here connects."""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import weakref

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers import aiokafka as driver

from streams.kafka import internals
from streams.kafka.transport import TunedTransport


def test_faust_keeps_its_current_event_in_a_context_variable_of_weak_references():
    from faust.streams import _current_event, current_event

    assert isinstance(_current_event, contextvars.ContextVar)

    class Event:  # weak-referenceable, as faust's events are
        pass

    def inside():
        event = Event()
        internals.set_current_event(event)
        assert current_event() is event
        assert isinstance(_current_event.get(), weakref.ref)

    contextvars.copy_context().run(inside)


class _App(TunedTransport, faust.App):
    pass


def test_the_consumer_keeps_unacked_messages_and_committed_offsets_as_the_memory_reads_them():
    async def go():
        app = _App("kafka-internals-test", broker="kafka://127.0.0.1:9", autodiscover=False, fetch_max_wait_ms=10)
        consumer = app.consumer  # built lazily, not started: nothing connects
        # TunedTransport built transport_class's consumer, a subclass of faust's aiokafka one.
        assert isinstance(consumer, driver.Consumer) and hasattr(type(consumer), "accept_gap")
        assert isinstance(consumer._unacked_messages, weakref.WeakSet)
        assert isinstance(consumer._committed_offset, dict)
        from faust.types import TP

        tp = TP("t", 0)
        assert internals.committed_offset(consumer, tp) is None
        consumer._committed_offset[tp] = 41
        assert internals.committed_offset(consumer, tp) == 41
        # The read offset faust moves past what it hands over, and the acknowledgement waiter.
        consumer._read_offset[tp] = 50
        internals.rewind_read_offset(consumer, tp, 45)
        assert consumer._read_offset[tp] == 45
        internals.rewind_read_offset(consumer, tp, 48)  # never forward
        assert consumer._read_offset[tp] == 45
        assert consumer._waiting_for_ack is None
        waiter = asyncio.get_running_loop().create_future()
        consumer._waiting_for_ack = waiter
        internals.wake_ack_waiters(consumer)
        assert waiter.done()

    asyncio.run(go())


def test_the_transport_overrides_exist_where_faust_and_aiokafka_have_them():
    assert callable(getattr(faust.App, "_new_transport"))
    for name in ("_create_worker_consumer", "_ensure_consumer", "call_thread"):
        assert callable(getattr(driver.AIOKafkaConsumerThread, name)), name
    for name in ("_add_gap", "_new_consumer_thread", "ack"):
        assert callable(getattr(driver.Consumer, name)), name
    assert list(inspect.signature(driver.Consumer._add_gap).parameters) == ["self", "tp", "offset_from", "offset_to"]

    async def go():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # not started
        # transport.py sets these before start(), where aiokafka's Fetcher reads them.
        assert isinstance(consumer._fetch_max_wait_ms, int) and isinstance(consumer._fetch_min_bytes, int)
        await consumer.stop()

    asyncio.run(go())


def test_rocksdb_stores_open_a_database_per_partition():
    rocksdb = pytest.importorskip("faust.stores.rocksdb")
    assert callable(getattr(rocksdb.Store, "_db_for_partition"))
    assert list(inspect.signature(rocksdb.Store._db_for_partition).parameters) == ["self", "partition"]

    class NotRocks:
        data = {}

    assert internals.partition_db(NotRocks(), 0) is None  # a plain store: the caller falls back


def test_aiokafka_admin_has_no_public_group_deletion_and_a_request_sender():
    assert not hasattr(AIOKafkaAdminClient, "delete_consumer_groups"), "a public API exists now: use it"
    assert list(inspect.signature(AIOKafkaAdminClient._send_request).parameters)[:3] == ["self", "request", "node_id"]
    from aiokafka.protocol.admin import DeleteGroupsRequest

    assert DeleteGroupsRequest.API_KEY == 42  # Kafka's DeleteGroups, sent to the group's coordinator
    assert list(inspect.signature(DeleteGroupsRequest).parameters) == ["group_names"]


def test_aiokafka_fetches_only_the_partitions_faust_takes_records_from():
    """transport.fetch_only, on aiokafka's public pause and resume: an assigned partition faust does
    not take records from is paused in aiokafka, and resumed once faust takes them again."""
    from aiokafka import TopicPartition
    from faust.types import TP

    from streams.kafka.transport import fetch_only

    # faust calls the hook the transport overrides with the partitions it takes records from.
    assert list(inspect.signature(driver.AIOKafkaConsumerThread._fetch_records).parameters) == [
        "self", "consumer", "active_partitions", "timeout", "max_records"]

    async def go():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # not started: nothing connects
        inputs = [TopicPartition("in", 0), TopicPartition("in", 1)]
        changelog = TopicPartition("app-memory-changelog", 0)
        consumer.assign([*inputs, changelog])
        # After a recovery faust takes records of the inputs only (its TP type, as faust passes them).
        fetch_only(consumer, {TP("in", 0), TP("in", 1)})
        assert consumer.paused() == {changelog}
        # The memory's buffer bounds one input: faust stops taking it, then takes it again.
        fetch_only(consumer, {TP("in", 1)})
        assert consumer.paused() == {changelog, inputs[0]}
        fetch_only(consumer, {TP("in", 0), TP("in", 1)})
        assert consumer.paused() == {changelog}
        # A recovery takes the changelog's records: it is fetched again.
        fetch_only(consumer, {TP("app-memory-changelog", 0)})
        assert consumer.paused() == set(inputs)
        # A new assignment (each rebalance) starts with nothing paused, so a recovery fetches as before.
        consumer.assign([*inputs, changelog])
        assert consumer.paused() == set()
        await consumer.stop()

    asyncio.run(go())
