"""A worker as a child process: started with its own settings, waited on until it serves, stopped.

The demo, the integration tests and the benchmarks drive real workers through this one class, the
same way an operator runs `fms worker`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from schemas.codec import decode_json


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, web_port: int) -> None:
        self.env = {**os.environ, **env, "FMS_WEB_PORT": str(web_port)}
        self.web_port = web_port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 120.0) -> "WorkerProcess":
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> "WorkerProcess":
        """Start the process without waiting for it to serve (e.g. before its broker is up)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.ops.cli", "worker"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return decode_json(resp.read())
        except urllib.error.HTTPError as exc:
            return decode_json(exc.read())
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float) -> None:
        """Ready means serving HTTP with partitions assigned, i.e. past recovery and rebalance.

        A busy machine may report the worker degraded (CPU); that is still ready.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}")
            h = self.health()
            kafka = h["components"]["kafka"] if h else None
            if kafka and kafka["assigned_partitions"] > 0 and kafka["status"] == "healthy" and h["status"] != "unhealthy":
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker on port {self.web_port} not ready in {timeout}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as an operator would; SIGKILL if it does not leave in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL: a crash, with no chance to commit offsets or flush anything."""
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait(30)

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
