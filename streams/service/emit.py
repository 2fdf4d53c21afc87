"""Output records, sent through the worker's own producer.

Faust flushes this producer before it commits consumer offsets, so an output sent here is on the
broker before its input counts as processed (at least once). Sending through the producer rather
than `Topic.send` skips faust's per-message FutureMessage and sensor bookkeeping, which cost more
than the pattern memory itself at thousands of records per second.
"""
from __future__ import annotations

import logging

from schemas.codec import encode
from streams.core.generations import SHADOWED, shadow_name

log = logging.getLogger(__name__)

# The outputs of every input record, built by the worker from the core's results: encoding them
# without validating again saves ~25 us a 768-d pattern event (28.5 -> 3.2 measured). Tests validate
# what the core and the agents build instead (tests/unit/service/test_outputs_valid.py, on random streams,
# and every integration test decodes what it reads); the rare outputs (breaker states, resource
# metrics) are still checked on their way out.
UNCHECKED = frozenset({"recognitions", "patterns", "optimizations"})


class Emitter:
    def __init__(self, app, settings, metrics) -> None:
        self._app = app
        self._settings = settings
        self._metrics = metrics
        self._names: dict[str, str] = {}
        self._counters: dict[str, object] = {}
        # Set by streams.service.app once the guard exists: sends then run through the "send" breaker.
        self.guard = None
        self._shadow: int | None = None

    @property
    def shadow(self) -> int | None:
        """The generation whose shadow topics the memory's outputs go to; None: the contract topics.
        Set by streams.ops.generation while this worker's generation is not the current one."""
        return self._shadow

    @shadow.setter
    def shadow(self, generation: int | None) -> None:
        if generation != self._shadow:
            self._shadow = generation
            self._names.clear()

    def _topic(self, name: str) -> str:
        full = self._names.get(name)
        if full is None:
            full = self._settings.topic(name)
            if self._shadow is not None and name in SHADOWED:
                full = shadow_name(full, self._shadow)
            self._names[name] = full
            if name not in self._counters:
                self._counters[name] = self._metrics.records_out.labels(topic=name)
        return full

    async def send(self, name: str, key: str | bytes | None, record, *, guarded: bool = True) -> None:
        """`record` is a schemas record; None sends a tombstone. `guarded=False` bypasses the
        "send" breaker: for the breaker's own state records, which must go out while it is open."""
        topic = self._topic(name)
        value = None if record is None else encode(record, validate=name not in UNCHECKED)
        raw_key = key.encode() if isinstance(key, str) else key
        if guarded and self.guard is not None:
            await self.guard.call("send", self._send, name, topic, raw_key, value)
        else:
            await self._send(name, topic, raw_key, value)

    async def send_encoded(self, topic: str, key: bytes, value: bytes | None, partition: int):
        """An already encoded message to a given partition (streams.state.changelog); the delivery."""
        delivery = await self._app.producer.send(topic, key, value, partition, None, None)
        delivery.add_done_callback(self._delivered)
        return delivery

    async def _send(self, name: str, topic: str, raw_key: bytes | None, value: bytes | None) -> None:
        delivery = await self._app.producer.send(topic, raw_key, value, None, None, None)
        delivery.add_done_callback(self._delivered)
        self._counters[name].inc()

    def _delivered(self, delivery) -> None:
        # Nobody awaits a delivery on the hot path; a failed one must still be seen and counted.
        if not delivery.cancelled() and delivery.exception() is not None:
            self._metrics.errors.labels(operation="send").inc()
            log.error("output not delivered: %r", delivery.exception())
