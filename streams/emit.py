"""Output records, sent through the worker's own producer.

Faust flushes this producer before it commits consumer offsets, so an output sent here is on the
broker before its input counts as processed (at least once). Sending through the producer rather
than `Topic.send` skips faust's per-message FutureMessage and sensor bookkeeping, which cost more
than the pattern memory itself at thousands of records per second.
"""
from __future__ import annotations

import logging

from schemas.codec import encode

log = logging.getLogger(__name__)


class Emitter:
    def __init__(self, app, settings, metrics) -> None:
        self._app = app
        self._settings = settings
        self._metrics = metrics
        self._names: dict[str, str] = {}
        self._counters: dict[str, object] = {}

    def _topic(self, name: str) -> str:
        full = self._names.get(name)
        if full is None:
            full = self._names[name] = self._settings.topic(name)
            self._counters[name] = self._metrics.records_out.labels(topic=name)
        return full

    async def send(self, name: str, key: str | bytes | None, record) -> None:
        """`record` is a schemas record; None sends a tombstone."""
        topic = self._topic(name)
        value = None if record is None else encode(record)
        raw_key = key.encode() if isinstance(key, str) else key
        delivery = await self._app.producer.send(topic, raw_key, value, None, None, None)
        delivery.add_done_callback(self._delivered)
        self._counters[name].inc()

    def _delivered(self, delivery) -> None:
        # Nobody awaits a delivery on the hot path; a failed one must still be seen and counted.
        if not delivery.cancelled() and delivery.exception() is not None:
            self._metrics.errors.labels(operation="send").inc()
            log.error("output not delivered: %r", delivery.exception())
