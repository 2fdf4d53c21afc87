"""One worker per data directory: a second `fms worker` on the same FMS_DATA_DIR refuses to start.

Without the lock, the second worker took the first's running marker for a crash and deleted the
first's live RocksDB state (streams.state.local_state)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def dirs_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def test_a_second_worker_on_the_same_data_dir_refuses_and_the_first_keeps_its_state(memory_env, workers, tmp_path):
    env = memory_env()
    first = workers(env)
    data_dir = Path(env["FMS_DATA_DIR"])
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".db") or p.suffix == ".sst" for p in data_dir.rglob("*")):
        assert time.monotonic() < deadline, "the first worker opened its tables"
        time.sleep(0.5)
    before = dirs_under(data_dir)

    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "streams.ops.cli", "worker", "--web-port", "0"],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert time.monotonic() - started < 30
    assert "Traceback" not in second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert lines[-1] == (f"fms worker: {data_dir} is in use by another worker (pid {first.proc.pid}); "
                         "give each worker its own FMS_DATA_DIR")

    assert first.proc.poll() is None and first.health()["status"] in ("healthy", "degraded")
    assert before <= dirs_under(data_dir), "the first worker's tables were not deleted"
    assert (data_dir / ".fms-running").read_text().strip() == str(first.proc.pid)
    assert (data_dir / ".fms-lock").read_text().strip() == str(first.proc.pid)
