"""The worker's metrics as Prometheus sees them, and what streams.service.metrics assumes about faust's sensor."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from schemas.validation import ERROR_CODES
from streams.service.metrics import Metrics
from streams.service.topics import INPUTS, OUTPUTS


def test_faust_sensor_assumptions_hold():
    # streams.kafka.internals.faust_monitor builds faust's metric set as setup_prometheus_sensors does and
    # swaps one histogram (faust-streaming 0.15.3). If faust renames these, this fails, not a worker.
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    assert "events_runtime_latency" in FaustMetrics._fields
    assert callable(FaustMetrics.create)
    assert hasattr(PrometheusMonitor, "on_stream_event_out")


def test_every_labelled_series_exists_from_the_start():
    text = generate_latest(Metrics.create().registry).decode()
    for topic in INPUTS:
        assert f'fms_records_in_total{{topic="{topic}"}} 0.0' in text
    for topic in OUTPUTS:
        assert f'fms_records_out_total{{topic="{topic}"}} 0.0' in text
    for code in ERROR_CODES:
        assert f'fms_dead_letters_total{{code="{code}"}} 0.0' in text
    assert 'fms_errors_total{operation="learn"} 0.0' in text
    assert "fms_sequence_idle_released_total 0.0" in text
    assert "process_cpu_seconds_total " in text and "process_resident_memory_bytes " in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian's prometheus package has it)")
def test_a_new_workers_metrics_pass_promtool():
    text = generate_latest(Metrics.create().registry).decode()
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


INFRA = __import__("pathlib").Path(__file__).resolve().parents[3] / "infra"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian's prometheus package has it)")
def test_the_compose_prometheus_config_and_its_worker_list_are_valid(tmp_path):
    config = (INFRA / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/workers.yml" in config  # where the compose file mounts the worker list
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/workers.yml", str(INFRA / "prometheus" / "workers.yml")))
    done = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    compose = (INFRA / "docker-compose.yml").read_text()
    assert "./prometheus/workers.yml:/etc/prometheus/workers.yml" in compose


def test_the_dashboard_has_one_unit_per_panel_and_the_provisioned_data_source():
    import json
    import re

    dashboard = json.loads((INFRA / "grafana" / "feature-memory.json").read_text())
    provisioned = (INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)\s*$", provisioned, re.M).group(1)
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert not panel["fieldConfig"].get("overrides"), f"{panel['title']}: one unit per panel, no second axis"
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in panel["targets"]), panel["title"]
    compose = (INFRA / "docker-compose.yml").read_text()
    assert "./grafana/provisioning:/etc/grafana/provisioning" in compose
    assert "./grafana/feature-memory.json:/var/lib/grafana/dashboards/feature-memory.json" in compose
    provider = (INFRA / "grafana" / "provisioning" / "dashboards" / "feature-memory.yml").read_text()
    assert "/var/lib/grafana/dashboards" in provider
