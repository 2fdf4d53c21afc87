from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import kafka_broker

# Property tests draw the same examples on every run unless FMS_HYPOTHESIS=explore: the suite that
# gates a change gives the same answer twice, and a search for new counterexamples is asked for on
# purpose (each one found is kept as an explicit @example).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("FMS_HYPOTHESIS", "repeatable"))

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked `integration` (deselect with -m "not integration")."""
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """"host:port" of a Kafka broker for the whole session (see tests/kafka_broker.py for where it comes from)."""
    with kafka_broker.kafka_broker(tmp_path_factory.mktemp("kafka-broker")) as bootstrap:
        yield bootstrap


def pytest_terminal_summary(terminalreporter) -> None:
    info = kafka_broker.startup_info
    if info:
        terminalreporter.write_line(
            f"kafka_bootstrap: {info['kind']} at {info['bootstrap']}, ready in {info['seconds']:.1f}s"
        )


@pytest.fixture
def memory_env(kafka_bootstrap: str, tmp_path: Path):
    """Builds isolated worker environments: own topics (prefix), consumer group, and state per name."""
    from tests.kafka_broker import unique_name

    def make(name: str | None = None, **overrides: str) -> dict[str, str]:
        run = name or unique_name("fms")
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "FMS_TOPIC_PREFIX": f"{run}.",
            "FMS_APP_ID": run,
            "FMS_DATA_DIR": str(tmp_path / run / "state"),
            "FMS_PARTITIONS": "2",
            "FMS_LOG_LEVEL": "info",
        }
        env.update(overrides)
        return env

    return make


@pytest.fixture
def workers(tmp_path: Path):
    """Starts real `fms worker` processes; every one is stopped at the end of the test."""
    import socket

    from streams.ops.worker_process import WorkerProcess

    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *, ready_timeout: float = 120.0) -> WorkerProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}-{port}.log", web_port=port)
        started.append(worker)
        return worker.start(ready_timeout)

    yield start
    for worker in started:
        worker.stop()
