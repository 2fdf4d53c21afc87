"""A real Prometheus server scrapes a worker, and the series come back through its query API."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from schemas.records import AudioFeature
from streams.ops.publish import publish, read_topic
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import settings_of

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


PROMTOOL = shutil.which("promtool")
DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "feature-memory.json"


def dashboard_series() -> set[str]:
    """The series names the Grafana dashboard's queries use (histograms by their _bucket series)."""
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    names = set()
    for expr in exprs:
        names |= {m for m in re.findall(r"\b((?:fms|process)_[a-z0-9_]+)", expr)}
    return names


def assert_promtool_clean(text: str) -> None:
    if PROMTOOL is None:
        return
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (infra/dev.sh installs Debian's package when it can)")
def test_prometheus_scrapes_the_worker(memory_env, workers, tmp_path):
    env = memory_env(FMS_RESOURCE_INTERVAL_S="0.5")
    worker = workers(env)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: feature-memory\n    static_configs: [{{targets: ['127.0.0.1:{worker.web_port}']}}]\n"
    )
    # Before the first record: the text passes promtool, and every series the dashboard queries exists.
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=5) as resp:
        startup = resp.read().decode()
    assert_promtool_clean(startup)
    present = {line.split("{")[0].split(" ")[0] for line in startup.splitlines() if line and not line.startswith("#")}
    missing = {name for name in dashboard_series() if name not in present}
    assert not missing, f"series the dashboard queries that a new worker does not expose: {sorted(missing)}"

    port = free_port()
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        settings = settings_of(env)
        rng = np.random.default_rng(2)
        feats = [AudioFeature(id=f"p{i}", space="prom", vector=rng.normal(size=16).astype(np.float32),
                              model_id=None, ts=1.0 + i, meta=None) for i in range(25)]

        async def go():
            await ensure_topics(settings)
            await publish(settings, settings.topic("audio-features"), feats)
            await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=60)
        asyncio.run(go())

        deadline = time.monotonic() + 60
        while True:
            try:
                up = query(base, 'up{job="feature-memory"}')
                records = query(base, 'fms_records_in_total{topic="audio-features"}')
            except OSError:
                up, records = [], []
            if up and up[0]["value"][1] == "1" and records and float(records[0]["value"][1]) == len(feats):
                break
            assert time.monotonic() < deadline, f"prometheus did not see the worker: up={up} records={records}\n" + \
                (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
            time.sleep(0.5)
        assert query(base, "fms_recognition_latency_seconds_count")[0]["value"][1] == str(len(feats))
        assert query(base, 'fms_health_status{status="unhealthy"}')[0]["value"][1] == "0"
        assert float(query(base, "process_resident_memory_bytes")[0]["value"][1]) > 0
        assert query(base, "fms_faust_messages_received_total"), "faust's own sensor is scraped too"
        # Every collection of the worker is timed; start-up alone makes several.
        assert float(query(base, 'fms_gc_pause_seconds_count{generation="0"}')[0]["value"][1]) >= 1
        learn = {r["metric"]["state"]: r["value"][1] for r in query(base, 'fms_breaker_state{operation="learn"}')}
        assert learn == {"closed": "1", "open": "0", "half_open": "0"}
    finally:
        prom.terminate()
        prom.wait(30)
