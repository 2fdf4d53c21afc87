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
    from streams.service.settings import Settings


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


class CpuSampler:
    """CPU seconds of named processes, sampled every `every` s while `run()` runs, and read off
    afterwards for any window: a window's ends need not be known while it is measured."""

    def __init__(self, pids: dict[str, int | None], every: float = 0.2) -> None:
        import psutil

        self._procs = {}
        for name, pid in pids.items():
            try:
                if pid:
                    self._procs[name] = psutil.Process(pid)
            except psutil.Error:
                pass
        self._every = every
        self._samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self._procs}

    async def run(self) -> None:
        import psutil

        while True:
            now = time.perf_counter()
            for name, proc in self._procs.items():
                try:
                    t = proc.cpu_times()
                except psutil.Error:
                    continue
                self._samples[name].append((now, t.user + t.system))
            await asyncio.sleep(self._every)

    def seconds_between(self, name: str, start: float, end: float) -> float:
        """`name`'s CPU seconds from `start` to `end` (perf_counter), scaled from the first and
        the last sample inside; nan with fewer than two."""
        inside = [s for s in self._samples.get(name, ()) if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) * (end - start) / (t1 - t0)

    def cores_between(self, start: float, end: float) -> dict[str, float]:
        """Every process's cores (CPU s / wall s) from `start` to `end`."""
        return {f"{name}_cores": round(self.seconds_between(name, start, end) / (end - start), 3)
                for name in self._samples}


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

    from streams.service.topics import kafka_client_options

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


def blas_info() -> dict:
    """Which BLAS numpy runs on, and the OPENBLAS_/OMP_/MKL_ settings it ran with (they change its kernels)."""
    info: dict = {"env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}}
    try:
        from threadpoolctl import threadpool_info
        info["threadpoolctl"] = threadpool_info()
    except ImportError:
        info["threadpoolctl"] = "not installed"
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    return info


def package_versions() -> dict:
    """Versions of the libraries a figure depends on (the baselines' too), as installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "scipy", "numba", "faust-streaming", "aiokafka", "river", "scikit-learn", "torch",
                 "transformers", "resemblyzer"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def save(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # The BLAS kernel numpy ran on belongs with every figure: OPENBLAS_CORETYPE, set on some
        # machines, changes numpy's speed (and the worker's, which runs the same numpy).
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "blas": blas_info(), "packages": package_versions()},
        **results,
    }
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"saved {path.relative_to(REPO)}")
    return path
