"""streams.state.changelog over a stand-in table: writes reach the store at once and the changelog in
order at `flush`, to the current event's partition; a store with writes that never reached the
broker is behind its changelog (its stop is not clean)."""
from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace

from faust.streams import _current_event

from streams.state.changelog import Changelog


class Store(dict):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict = {}

    def set_persisted_offset(self, tp, offset: int) -> None:
        self.persisted[(tp.topic, tp.partition)] = offset


def table() -> SimpleNamespace:
    data = Store()
    return SimpleNamespace(data=data, get=data.get, changelog_topic=SimpleNamespace(get_topic_name=lambda: "cl"))


class Producer:
    """send() as streams.service.emit.Emitter.send_encoded: the message is handed over, the delivery
    future returned; `deliver` completes the deliveries, `fail` fails them."""

    def __init__(self) -> None:
        self.sent: list = []
        self.pending: list = []

    async def send(self, topic, key, value, partition):
        self.sent.append((topic, key, value, partition))
        delivery = asyncio.get_running_loop().create_future()
        self.pending.append((delivery, partition, len(self.sent) - 1))
        return delivery

    def deliver(self) -> None:
        for delivery, partition, offset in self.pending:
            delivery.set_result(SimpleNamespace(partition=partition, offset=offset))
        self.pending.clear()

    def fail(self) -> None:
        for delivery, _, _ in self.pending:
            delivery.set_exception(RuntimeError("broker gone"))
        self.pending.clear()


class Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def during(partition: int):
    event = Event(partition)
    _current_event.set(weakref.ref(event))
    return event  # kept alive by the caller: the context holds a weak reference


def test_writes_reach_the_store_at_once_and_the_changelog_in_order_at_flush():
    async def run():
        t, producer = table(), Producer()
        log = Changelog(t)
        event = during(1)
        log["a"] = b"1"
        log["b"] = b"2"
        assert log.pop("a") == b"1"
        assert dict(t.data) == {"b": b"2"} and producer.sent == [] and log.behind
        await log.flush(producer.send)
        assert producer.sent == [("cl", b"a", b"1", 1), ("cl", b"b", b"2", 1), ("cl", b"a", None, 1)]
        assert not log.behind
        producer.deliver()
        await asyncio.sleep(0)  # done callbacks run on the next loop step
        await log.flush(producer.send)  # nothing queued: only the delivered offsets are kept
        assert t.data.persisted == {("cl", 1): 2}
        del event

    asyncio.run(run())


def test_a_failed_delivery_leaves_the_store_behind_its_changelog():
    async def run():
        t, producer = table(), Producer()
        log = Changelog(t)
        event = during(0)
        log["a"] = b"1"
        await log.flush(producer.send)
        producer.fail()
        await asyncio.sleep(0)
        assert log.behind and t.data.persisted == {}
        del event

    asyncio.run(run())
