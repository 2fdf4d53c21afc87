"""An async client for services that use the memory: publish inputs, follow patterns and optimizations.

    from schemas import Interaction, Outcome
    from streams.client import MemoryClient

    async with MemoryClient("127.0.0.1:9092") as client:
        await client.publish(Interaction(id="i-1", space="voice", model_id="asr-small",
                                         config={"beam": 4}, outcome=Outcome(True, quality=0.9),
                                         ts=time.time(), pattern_id="p-0123abcd"))
        patterns = await client.pattern_snapshot()          # the current state, from the compacted topic
        async for change in client.patterns():               # that state first, then every change
            ...
        async for optimization in client.optimizations():    # new recommendations and retirements
            ...

Records are validated on the client with the same schemas the worker uses (`schemas.codec.encode`
raises `ValidationError` with every reason), so a service learns of a bad record before it is sent,
and is keyed by space as the contract asks. The client needs aiokafka only: no faust, no torch.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from schemas.codec import decode, encode
from schemas.records import Audio, AudioFeature, Interaction, Optimization, PatternEvent
from streams.kafka.metadata import partitions_of
from streams.service.settings import Settings
from streams.service.topics import kafka_client_options

INPUTS = {Audio: "audio", AudioFeature: "audio-features", Interaction: "interactions"}


@dataclass(frozen=True)
class PatternChange:
    """One record of the compacted `fms.patterns` topic. `pattern` is None for a tombstone (the
    pattern was evicted or absorbed); `bootstrap` is True while replaying the state that existed
    when the subscription started."""

    key: str
    pattern: PatternEvent | None
    bootstrap: bool


class MemoryClient:
    """Publishes inputs and follows the memory's outputs.

    ``kafka_options`` go to every aiokafka client it makes (``security_protocol``,
    ``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_context``, ...), over
    the ones the settings give (the worker's KAFKA_* environment); ``producer_options`` and
    ``consumer_options`` go to the producer or the consumers only (``linger_ms``,
    ``fetch_max_wait_ms``, ...).
    """

    def __init__(self, bootstrap_servers: str | None = None, *, settings: Settings | None = None,
                 producer_options: dict | None = None, consumer_options: dict | None = None,
                 **kafka_options) -> None:
        settings = settings or Settings.from_env()
        if bootstrap_servers is not None:
            settings = dataclasses.replace(settings, bootstrap_servers=bootstrap_servers)
        self.settings = settings
        self._common = {**kafka_client_options(settings), **kafka_options}
        self._producer_options = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, **(producer_options or {})}
        self._consumer_options = dict(consumer_options or {})
        self._producer = None

    async def __aenter__(self) -> "MemoryClient":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect the producer; on any failure (a bad bootstrap, refused credentials) nothing is left open."""
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**self._common, **self._producer_options)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # -- publishing
    async def publish(self, record: Audio | AudioFeature | Interaction):
        """Validate and send one input record to its topic, keyed by its space; returns the broker's
        RecordMetadata (topic, partition, offset) once the broker has it, as aiokafka's
        ``send_and_wait`` does."""
        return await (await self._send(record))

    async def publish_many(self, records: Iterable[Audio | AudioFeature | Interaction]) -> int:
        """Validate and send records in order (each is validated before any later one is sent)."""
        pending = [await self._send(r) for r in records]
        await asyncio.gather(*pending)
        return len(pending)

    async def _send(self, record):
        name = INPUTS.get(type(record))
        if name is None:
            raise TypeError(f"{type(record).__name__} is not an input record (Audio, AudioFeature, Interaction)")
        if self._producer is None:
            raise RuntimeError("the client is not started: use `async with MemoryClient(...)`")
        value = encode(record)  # raises ValidationError before anything is sent
        return await self._producer.send(self.settings.topic(name), value=value, key=record.space.encode())

    # -- generations
    async def start_replay(self, from_ts: float | None = None, **options):
        """Rebuild the memory from the kept inputs as a new generation and switch to it: `fms replay`
        (streams.ops.replay.replay, whose keyword `options` it passes on: data_dir, web_port, lag_threshold,
        progress...). Returns the ReplayResult once the new generation is current.

        It runs the replay worker as a child process (`python -m streams.ops.cli worker`), so unlike the rest
        of the client it needs the whole project installed (faust, RocksDB), not only aiokafka."""
        from streams.ops.replay import replay

        options.setdefault("progress", False)
        return await replay(self.settings, from_ts=from_ts, **options)

    # -- subscribing
    async def patterns(self, *, follow: bool = True, space: str | None = None) -> AsyncIterator[PatternChange]:
        """The patterns' current state (the compacted topic from its start, `bootstrap=True`), then
        every change as it happens (unless `follow=False`). Filtered to one space when given."""
        async for key, raw, bootstrap in self._read("patterns", from_beginning=True, follow=follow):
            pattern = None if raw is None else decode("patterns", raw).record
            if space is not None and not key.startswith(f"{space}/"):
                continue
            yield PatternChange(key, pattern, bootstrap)

    async def pattern_snapshot(self, space: str | None = None) -> dict[str, PatternEvent]:
        """The live patterns now, by `<space>/<pattern_id>` (tombstoned ones left out)."""
        state: dict[str, PatternEvent] = {}
        async for change in self.patterns(follow=False, space=space):
            if change.pattern is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.pattern
        return state

    async def optimizations(self, *, from_beginning: bool = False, follow: bool = True) -> AsyncIterator[Optimization]:
        """`fms.optimizations` records: from now on, or the whole history."""
        async for _, raw, _ in self._read("optimizations", from_beginning=from_beginning, follow=follow):
            if raw is not None:
                yield decode("optimizations", raw).record

    async def _read(self, name: str, *, from_beginning: bool, follow: bool):
        """(key, value, bootstrap) of a topic; `bootstrap` until the end offsets seen at the start."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.settings.topic(name)
        consumer = AIOKafkaConsumer(**self._common, group_id=None, enable_auto_commit=False,
                                    **self._consumer_options)
        try:
            await consumer.start()
            # A topic that does not exist yet (no worker has run) is empty: with follow, wait for it.
            while not (partitions := (await partitions_of(self._common, [topic])).get(topic)):
                if not follow:
                    return
                await asyncio.sleep(1.0)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            if from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            end = await consumer.end_offsets(tps)
            position = {tp: await consumer.position(tp) for tp in tps}
            while True:
                booting = any(position[tp] < end[tp] for tp in tps)
                if not booting and not follow:
                    return
                batch = await consumer.getmany(timeout_ms=200)
                for tp, messages in sorted(batch.items(), key=lambda kv: kv[0].partition):
                    for m in messages:
                        position[tp] = m.offset + 1
                        key = m.key.decode() if m.key is not None else ""
                        yield key, m.value, m.offset < end[tp]
                for tp in tps:
                    position[tp] = max(position[tp], await consumer.position(tp))
        finally:
            await consumer.stop()
