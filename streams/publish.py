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
from streams.settings import Settings
from streams.topics import ensure_topics, kafka_client_options


def feature_records(path: Path, *, space: str, model_id: str | None, id_prefix: str | None,
                    ts: float | None = None) -> Iterator[AudioFeature]:
    """Rows of a .npy matrix or a .jsonl file as validated AudioFeature records.

    A .jsonl line is either a full contract record or an object with at least "vector"
    (and optionally "id", "space", "model_id", "ts", "meta").
    """
    prefix = id_prefix or path.stem
    now = time.time() if ts is None else ts
    if path.suffix == ".npy":
        matrix = np.load(path)
        if matrix.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array of vectors, got shape {matrix.shape}")
        rows: Iterable[dict] = ({"vector": encode_vector(row.astype(np.float32))} for row in matrix)
    elif path.suffix in {".jsonl", ".ndjson"}:
        rows = (decode_json(line) for line in path.read_bytes().splitlines() if line.strip())
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


async def publish(settings: Settings, topic: str, records: Iterable, *, key=lambda r: r.space,
                  rate: float = 0.0) -> int:
    """Send contract records keyed by `key`, at `rate` per second (0: as fast as possible)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5,
                                enable_idempotence=True, max_batch_size=256 * 1024)
    await producer.start()
    count = 0
    started = time.perf_counter()
    try:
        for record in records:
            await producer.send(topic, key=key(record).encode(), value=encode(record))
            count += 1
            if rate > 0:
                delay = started + count / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def publish_file(settings: Settings, path: Path, *, space: str, model_id: str | None = None,
                       rate: float = 0.0, id_prefix: str | None = None) -> int:
    await ensure_topics(settings)
    records = feature_records(path, space=space, model_id=model_id, id_prefix=id_prefix)
    return await publish(settings, settings.topic("audio-features"), records, rate=rate)


async def watch(settings: Settings, topic: str, *, from_beginning: bool = False, limit: int = 0,
                out=sys.stdout) -> int:
    """Print `key<TAB>value` per record; a tombstone prints as `null`."""
    from aiokafka import AIOKafkaConsumer

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
            # All-topics metadata: a per-topic request could auto-create the topic.
            partitions = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
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
