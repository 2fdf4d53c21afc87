"""Shared benchmark plumbing: a broker, percentiles, and saving results as JSON."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a private local broker like the tests use."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from tests.kafka_broker import kafka_broker

    with tempfile.TemporaryDirectory(prefix="fms-bench-broker-") as tmp, kafka_broker(Path(tmp)) as bootstrap:
        yield bootstrap


def free_port() -> int:
    """A free TCP port on loopback, for a worker's web server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def floats(text: str) -> list[float]:
    """An argparse type: "1,2.5,3" -> [1.0, 2.5, 3.0]."""
    return [float(x) for x in text.split(",") if x.strip()]


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
