"""Worker throughput through a real broker, beside a plain aiokafka consume-and-produce loop.

Both read the same pre-published fms.audio-features records (768-dim vectors over several spaces),
and both are timed the same way: a watcher consumes their output topic and notes when the first
and the last of N outputs arrive. The worker is a real `fms worker` process with RocksDB tables and
changelogs; the baseline decodes each record with orjson and produces a small record per input.

    python benchmarks/throughput.py [--records 20000] [--dim 768] [--spaces 8] [--patterns 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

import orjson

from common import broker, rate, save, stream, watch_outputs  # noqa: E402  (sets sys.path)
from streams.publish import publish
from streams.settings import Settings
from streams.topics import ensure_topics, kafka_client_options
from streams.worker_process import WorkerProcess


async def baseline_loop(settings: Settings, n: int, out_topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(settings.topic("audio-features"), **kafka_client_options(settings),
                                group_id=f"{settings.app_id}-baseline", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for msgs in batch.values():
                for m in msgs:
                    rec = orjson.loads(m.value)
                    await producer.send(out_topic, key=m.key, value=orjson.dumps(
                        {"v": 1, "event_id": rec["id"], "space": rec["space"], "ts": time.time()}))
                    done += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


async def run(bootstrap: str, args) -> dict:
    run_id = f"bench{int(time.time())}"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}.", app_id=run_id,
                        partitions=args.partitions, max_patterns=max(1000, args.patterns))
    await ensure_topics(settings)
    feats = stream(args.records, args.dim, args.spaces, args.patterns)
    t = time.perf_counter()
    await publish(settings, settings.topic("audio-features"), feats)
    print(f"published {len(feats)} records of dim {args.dim} in {time.perf_counter() - t:.1f}s", flush=True)

    # Baseline first, then the worker, on the same input.
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    await admin.create_topics([NewTopic(f"{run_id}.baseline-out", args.partitions, 1)])
    await admin.close()
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_outputs(settings, f"{run_id}.baseline-out", len(feats), ready, 600))
    await ready.wait()
    await baseline_loop(settings, len(feats), f"{run_id}.baseline-out")
    base = await watcher
    base_rate = rate(base, len(feats))
    print(f"baseline aiokafka loop: {base_rate:,.0f} records/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="fms-bench-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FMS_TOPIC_PREFIX": settings.topic_prefix,
               "FMS_APP_ID": run_id, "FMS_DATA_DIR": str(Path(tmp) / "state"), "FMS_LOG_LEVEL": "warning",
               "FMS_PARTITIONS": str(args.partitions), "FMS_MAX_PATTERNS": str(settings.max_patterns)}
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_outputs(settings, settings.topic("recognitions"), len(feats), ready, 900))
        await ready.wait()
        worker = WorkerProcess(env, Path(tmp) / "worker.log", web_port=port)
        t0 = time.perf_counter()
        await asyncio.to_thread(worker.start)
        try:
            w = await watcher
        finally:
            worker.stop()
    worker_rate = rate(w, len(feats))
    print(f"worker: {worker_rate:,.0f} records/s "
          f"(start to last recognition {w['last'] - t0:.1f}s including startup)", flush=True)
    return {
        "records": len(feats), "dim": args.dim, "spaces": args.spaces, "patterns": args.patterns,
        "partitions": args.partitions,
        "worker_records_per_s": round(worker_rate, 1),
        "baseline_records_per_s": round(base_rate, 1),
        "ratio_worker_to_baseline": round(worker_rate / base_rate, 4),
        "baseline": "plain aiokafka consume, orjson.loads, produce one small record per input (acks=all)",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--spaces", type=int, default=8)
    p.add_argument("--patterns", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    with broker() as bootstrap:
        results = asyncio.run(run(bootstrap, args))
    save("throughput", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
