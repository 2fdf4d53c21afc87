"""Shared benchmark plumbing: a broker, a feature stream, watching an output topic, percentiles, and
saving results as JSON."""
from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from schemas.records import AudioFeature
    from streams.settings import Settings


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a private local broker like the tests use."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from tests.kafka_broker import kafka_broker

    with tempfile.TemporaryDirectory(prefix="fms-bench-broker-") as tmp, kafka_broker(Path(tmp)) as bootstrap:
        yield bootstrap


def listener_pid(bootstrap: str) -> int | None:
    """The process listening on the bootstrap address's port (a local broker), or None."""
    import psutil

    port = int(bootstrap.rsplit(":", 1)[1])
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        pass
    return None


class CpuMeter:
    """CPU seconds used by named processes between `start` and `stop`, as cores (CPU s / wall s)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        import psutil

        self._procs = {}
        for name, pid in pids.items():
            try:
                self._procs[name] = psutil.Process(pid) if pid else None
            except psutil.Error:
                self._procs[name] = None
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _cpu(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, proc in self._procs.items():
            try:
                t = proc.cpu_times() if proc else None
            except psutil.Error:
                t = None
            if t is not None:
                out[name] = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        return out

    def start(self) -> None:
        self._t0, self._start = time.perf_counter(), self._cpu()

    def stop(self) -> dict[str, float]:
        wall, end = time.perf_counter() - self._t0, self._cpu()
        return {f"{name}_cores": round((end[name] - self._start[name]) / wall, 3)
                for name in end if name in self._start}


def free_port() -> int:
    """A free TCP port on loopback, for a worker's web server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def floats(text: str) -> list[float]:
    """An argparse type: "1,2.5,3" -> [1.0, 2.5, 3.0]."""
    return [float(x) for x in text.split(",") if x.strip()]


def stream(records: int, dim: int, spaces: int, patterns: int, seed: int = 3) -> list[AudioFeature]:
    """`patterns` well-separated groups spread over `spaces`; records cycle through them."""
    from schemas.records import AudioFeature

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(patterns, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(scale=0.02, size=(records, dim)).astype(np.float32)
    group = np.arange(records) % patterns
    out = []
    for i in range(records):
        g = int(group[i])
        out.append(AudioFeature(id=f"r{i}", space=f"space-{g % spaces}", vector=centres[g] + noise[i],
                                model_id=None, ts=1_700_000_000.0 + i * 1e-3, meta=None))
    return out


async def watch_outputs(settings: Settings, topic: str, n: int, started: asyncio.Event, timeout: float) -> dict:
    """Consume `topic` from the start until `n` records came; when (perf_counter) the first and the last arrived."""
    from aiokafka import AIOKafkaConsumer

    from streams.topics import kafka_client_options

    consumer = AIOKafkaConsumer(topic, **kafka_client_options(settings), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    started.set()
    first = last = None
    seen = 0
    deadline = time.perf_counter() + timeout
    try:
        while seen < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{topic}: {seen}/{n} outputs after {timeout}s")
            batch = await consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for msgs in batch.values():
                if msgs and first is None:
                    first = now
                seen += len(msgs)
                if msgs:
                    last = now
    finally:
        await consumer.stop()
    return {"first": first, "last": last, "seen": seen}


def rate(w: dict, n: int) -> float:
    """Records per second from the first to the last of `n` outputs seen by `watch_outputs`."""
    return (n - 1) / (w["last"] - w["first"]) if w["last"] and w["last"] > w["first"] else float("nan")


def percentiles(samples_s, ps=(50, 90, 99)) -> dict[str, float]:
    arr = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {f"p{p}_ms": round(float(np.percentile(arr, p)), 4) for p in ps} | {
        "mean_ms": round(float(arr.mean()), 4), "n": int(arr.size)}


def save(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        **results,
    }
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"saved {path.relative_to(REPO)}")
    return path
