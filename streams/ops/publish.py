"""Publishing feature files and watching topics, for the CLI and the demo.

Records are validated with the same schemas the worker uses before they leave, so a bad row is
reported here by line instead of surfacing later on the dead-letter topic.
"""
from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from schemas.codec import decode, decode_json, encode, encode_json
from schemas.records import AudioFeature
from schemas.vectors import encode_vector
from streams.kafka.metadata import partitions_of
from streams.service.settings import Settings
from streams.service.topics import INPUTS, OUTPUTS, ensure_topics, kafka_client_options


def feature_records(path: Path, *, space: str, model_id: str | None, id_prefix: str | None,
                    ts: float | None = None) -> Iterator[AudioFeature]:
    """Rows of a .npy matrix or a .jsonl file as validated AudioFeature records.

    A .jsonl line is either a full contract record or an object with at least "vector"
    (and optionally "id", "space", "model_id", "ts", "meta").
    """
    prefix = id_prefix or path.stem
    now = time.time() if ts is None else ts
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a .npy or .jsonl file")
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except ValueError as exc:  # not a .npy file, or one holding Python objects
            raise ValueError(f"{path}: not a .npy array of numbers ({exc.args[0].split('.')[0]})") from None
        if matrix.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array of vectors, got shape {matrix.shape}")
        rows: Iterable[dict] = ({"vector": encode_vector(row.astype(np.float32))} for row in matrix)
    elif path.suffix in {".jsonl", ".ndjson"}:
        rows = (_json_line(path, n, line) for n, line in enumerate(path.read_bytes().splitlines()) if line.strip())
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r} (use .npy or .jsonl)")
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n + 1}: expected a JSON object")
        record = {"v": 1, "id": f"{prefix}-{n}", "space": space, "ts": now + n * 1e-3, **row}
        if model_id and "model_id" not in row:
            record["model_id"] = model_id
        decoded = decode("audio-features", encode_json(record))
        if decoded.record is None:
            reasons = "; ".join(f"{e.code}: {e.message}" for e in decoded.result.errors)
            raise ValueError(f"{path}:{n + 1}: invalid record: {reasons}")
        yield decoded.record


class PublishFailed(Exception):
    """Kafka refused or lost part of a publish; the message says how many records it has acknowledged."""


def _json_line(path: Path, n: int, line: bytes):
    try:
        return decode_json(line)
    except ValueError as exc:
        raise ValueError(f"{path}:{n + 1}: not JSON ({exc})") from None


async def publish_records(settings: Settings, topic: str, records: Iterable, *, key=lambda r: r.space,
                          rate: float = 0.0) -> list:
    """Send contract records keyed by `key`, at `rate` per second (0: as fast as possible); the
    broker's RecordMetadata (topic, partition, offset) of each, in order.

    On a failure, PublishFailed says how many records the broker had acknowledged: with the
    idempotent producer those are in the topic once, and the rest are not.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=256 * 1024)
    futures: list[asyncio.Future] = []
    try:
        await producer.start()
        started = time.perf_counter()
        for record in records:
            futures.append(await producer.send(topic, key=key(record).encode(), value=encode(record)))
            if rate > 0:
                delay = started + len(futures) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
        return [await f for f in futures]
    except KafkaError as exc:
        done = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
        raise PublishFailed(f"{done} records were acknowledged before Kafka failed: {exc}") from exc
    finally:
        await producer.stop()


async def publish(settings: Settings, topic: str, records: Iterable, *, key=lambda r: r.space,
                  rate: float = 0.0) -> int:
    """:func:`publish_records`, counted."""
    return len(await publish_records(settings, topic, records, key=key, rate=rate))


def describe_offsets(sent: list) -> str:
    """``partition 0: offsets 10-14; partition 3: offset 7`` for a publish's RecordMetadata."""
    spans: dict[int, list[int]] = {}
    for m in sent:
        span = spans.setdefault(m.partition, [m.offset, m.offset])
        span[0], span[1] = min(span[0], m.offset), max(span[1], m.offset)
    return "; ".join(f"partition {p}: offset{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''}"
                     for p, (a, b) in sorted(spans.items()))


async def publish_file(settings: Settings, path: Path, *, space: str, model_id: str | None = None,
                       rate: float = 0.0, id_prefix: str | None = None) -> int:
    await ensure_topics(settings)
    records = list(feature_records(path, space=space, model_id=model_id, id_prefix=id_prefix))
    return await publish(settings, settings.topic("audio-features"), records, rate=rate)


async def space_dimensions(settings: Settings, spaces: set[str], timeout: float = 15.0) -> dict[str, int]:
    """The vector dimension of each of ``spaces`` that has a live pattern on ``fms.patterns`` (its
    centroid's): what a running memory will hold the space's records to. Spaces with none are left out.
    A space's pattern events go out at its commit (``FMS_COMMIT_INTERVAL_S``), so a space whose first
    records are younger than that may not be known yet; the memory then dead-letters a wrong dimension."""
    topic = settings.topic("patterns")
    if not await topic_exists(settings, topic):
        return {}
    latest: dict[str, bytes | None] = {}
    for key, value in await read_topic(settings, topic, timeout=timeout):
        if key.split("/", 1)[0] in spaces:
            latest[key] = value
    dims: dict[str, int] = {}
    for key, value in latest.items():
        record = None if value is None else decode("patterns", value).record
        if record is not None:
            dims.setdefault(record.space, len(record.centroid))
    return dims


async def topic_exists(settings: Settings, topic: str) -> bool:
    """Whether the cluster has ``topic``, from a metadata request that creates nothing."""
    return topic in await partitions_of(kafka_client_options(settings), [topic])


async def watch(settings: Settings, topic: str, *, from_beginning: bool = False, limit: int = 0,
                wait: bool = False, out=sys.stdout, poll_s: float = 1.0) -> int:
    """Print `key<TAB>value` per record; a tombstone prints as `null`.

    A topic that does not exist is refused with LookupError (subscribing to it could create it, on a
    broker that auto-creates topics, and then wait forever on a misspelt name), unless ``wait``:
    then it waits for the topic to appear.
    """
    from aiokafka import AIOKafkaConsumer

    while not await topic_exists(settings, topic):
        if not wait:
            known = ", ".join(settings.topic(t) for t in INPUTS + OUTPUTS)
            raise LookupError(f"no topic {topic!r} on {settings.bootstrap_servers} (the contract's: {known}); "
                              "--wait waits for it to be created")
        await asyncio.sleep(poll_s)
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(settings), group_id=None,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        async for msg in consumer:
            key = msg.key.decode("utf-8", "replace") if msg.key is not None else ""
            value = msg.value.decode("utf-8", "replace") if msg.value is not None else "null"
            print(f"{key}\t{value}", file=out, flush=True)
            seen += 1
            if limit and seen >= limit:
                break
    finally:
        await consumer.stop()
    return seen


async def read_topic(settings: Settings, topic: str, *, count: int | None = None,
                     timeout: float = 60.0) -> list[tuple[str, bytes | None]]:
    """(key, value) pairs from the beginning of `topic`, in partition order within each partition.

    With `count`, waits until that many records arrived (TimeoutError otherwise); without it, reads
    what the topic holds now, up to its end offsets.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            partitions = (await partitions_of(kafka_client_options(settings), [topic])).get(topic)
            if partitions:
                break
            if loop.time() > deadline:
                raise TimeoutError(f"topic {topic} does not exist")
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps) if count is None else None
        out: list[tuple[str, bytes | None]] = []

        def done() -> bool:
            if count is not None:
                return len(out) >= count
            return all(consumer_position[tp] >= end[tp] for tp in tps)

        consumer_position = {tp: 0 for tp in tps}
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{topic}: got {len(out)} records, wanted {count if count is not None else 'to end'}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for tp, msgs in batch.items():
                for m in msgs:
                    out.append((m.key.decode() if m.key is not None else "", m.value))
                    consumer_position[tp] = m.offset + 1
            for tp in tps:
                consumer_position[tp] = max(consumer_position[tp], await consumer.position(tp))
        return out
    finally:
        await consumer.stop()
