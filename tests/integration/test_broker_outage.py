"""The broker goes away and comes back: what /health says and what the log says (issue 21, parts 2-4).

Each test runs a broker of its own (tests.kafka_broker.PrivateBroker) and real `fms worker` processes.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from schemas.codec import decode_json
from streams.ops.worker_process import WorkerProcess
from tests.kafka_broker import PrivateBroker, free_port_pair, unique_name

OUTAGE_S = 60.0
MAX_LINES = 100
own_broker = pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="stops a broker of its own")


def get_health(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as resp:
            return resp.status, decode_json(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, decode_json(exc.read())
    except (OSError, ValueError):
        return None


def get_metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return resp.read().decode()


def metric(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def log_lines(worker: WorkerProcess) -> list[str]:
    """The worker's log records (a record's continuation lines, e.g. faust's tables, are its own lines)."""
    return worker.log_path.read_text(errors="replace").splitlines()


def env_for(broker: PrivateBroker, tmp_path, **extra: str) -> dict[str, str]:
    run = unique_name("outage")
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "FMS_TOPIC_PREFIX": f"{run}.", "FMS_APP_ID": run,
            "FMS_DATA_DIR": str(tmp_path / run), "FMS_PARTITIONS": "2", **extra}


@own_broker
def test_health_follows_the_broker_and_a_60_s_outage_stays_within_100_log_lines(tmp_path, workers):
    broker = PrivateBroker(tmp_path / "broker").start()
    try:
        worker = workers(env_for(broker, tmp_path, FMS_SESSION_TIMEOUT_S="10"))
        code, health = get_health(worker.url)
        assert code == 200 and health["components"]["kafka"]["reachable"] is True

        before = len(log_lines(worker))
        called = time.time()
        broker.stop()
        lost = time.time()  # broker.sh has returned: nothing answers on the port
        seen: list[tuple[float, int, dict]] = []
        while time.time() - lost < OUTAGE_S:
            answer = get_health(worker.url)
            if answer is not None:
                seen.append((time.time(), *answer))
            time.sleep(0.5)
        outage_lines = log_lines(worker)[before:]
        metrics = get_metrics(worker.url)
        assert metric(metrics, "fms_kafka_reachable") == 0.0
        assert metric(metrics, 'fms_health_status{status="unhealthy"}') == 1.0, "the sampler's status too"

        # Degraded (200) or unhealthy (503) within 10 s, with the reason and since when.
        bad = [(t, code, h) for t, code, h in seen if h["status"] != "healthy"]
        assert bad, f"/health never left healthy in a {OUTAGE_S:.0f} s outage: {seen[-1]}"
        first_t, first_code, first = bad[0]
        assert first_t - lost <= 10.0, f"{first_t - lost:.1f} s after the broker was gone: {first}"
        kafka = first["components"]["kafka"]
        assert kafka["status"] in {"degraded", "unhealthy"} and kafka["reachable"] is False
        assert "no broker reachable at " + broker.bootstrap in kafka["reason"]
        assert called - 5 <= kafka["since"] <= first_t, (called, kafka["since"], first_t)
        for _, code, h in seen:  # the contract: 503 exactly when unhealthy
            assert code == (503 if h["status"] == "unhealthy" else 200), (code, h["status"])
        # Past the session timeout the group has let go of this worker's partitions: unhealthy, 503.
        late = [(code, h) for t, code, h in seen if t - lost > 10.0 + 3.0]
        assert late and all(code == 503 and h["components"]["kafka"]["status"] == "unhealthy" for code, h in late)

        # The log: one line when it went, at most one summary every 30 s, and few lines overall.
        print(f"{len(outage_lines)} log lines in a {OUTAGE_S:.0f} s outage; /health first said "
              f"{first['status']} {first_t - called:.1f} s after broker.sh stop was called, "
              f"{first_t - lost:.1f} s after it returned")
        assert len(outage_lines) <= MAX_LINES, "\n".join(outage_lines[-40:])
        assert sum("kafka: no broker reachable at" in line for line in outage_lines) == 1
        assert 1 <= sum("kafka: still no broker reachable at" in line for line in outage_lines) <= 2

        restarted = time.time()
        broker.start()
        deadline = time.time() + 90
        while True:
            answer = get_health(worker.url)
            if answer and answer[1]["components"]["kafka"]["status"] == "healthy":
                break
            assert time.time() < deadline, f"/health did not recover within 90 s: {answer}"
            time.sleep(0.5)
        code, health = answer
        kafka = health["components"]["kafka"]
        assert kafka["reachable"] is True and kafka["since"] >= restarted and health["status"] != "unhealthy"
        assert code == 200
        assert metric(get_metrics(worker.url), "fms_kafka_reachable") == 1.0
        back = [line for line in log_lines(worker) if "kafka: broker reachable again at" in line]
        assert len(back) == 1, back
        down = float(re.search(r"after ([0-9.]+) s unreachable", back[0]).group(1))
        assert OUTAGE_S <= down <= restarted - called + 30, back[0]
        assert worker.proc.poll() is None, "the worker stayed up through the outage"
        worker.stop()  # before the broker: a worker stopping without its broker is another story
    finally:
        broker.close()


@own_broker
def test_a_worker_started_before_its_broker_waits_and_starts_when_the_broker_appears(tmp_path):
    broker = PrivateBroker(tmp_path / "broker")  # not started yet
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = WorkerProcess(env_for(broker, tmp_path), tmp_path / "worker.log", web_port=port).launch()
    try:
        time.sleep(8.0)
        assert worker.proc.poll() is None, f"the worker gave up without a broker:\n{worker.tail()}"
        waiting = [line for line in log_lines(worker) if "no broker answers at " + broker.bootstrap in line]
        assert len(waiting) == 1, worker.tail()
        assert "FMS_BROKER_WAIT_S=forever" in waiting[0]
        assert len(log_lines(worker)) <= 5, "waiting is quiet: " + worker.tail()
        broker.start()
        worker.wait_ready(180)
        assert any(f"broker at {broker.bootstrap} answered after" in line for line in log_lines(worker))
    finally:
        worker.stop()
        broker.close()


def test_with_no_broker_and_a_one_second_wait_the_worker_exits_1_with_one_line(tmp_path):
    port = free_port_pair()  # nothing listens on it
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "FMS_BROKER_WAIT_S": "1",
           "FMS_DATA_DIR": str(tmp_path / "state")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streams.ops.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    err = done.stderr.strip().splitlines()
    assert err[-1] == err[-1].strip() and err[-1].startswith(
        f"fms worker: no broker answered at 127.0.0.1:{port} within FMS_BROKER_WAIT_S=1 s ("), done.stderr
    assert err[-1].endswith("); giving up")
    assert "Traceback" not in done.stderr and len(err) <= 2, done.stderr
    assert took < 20, f"{took:.1f} s"
