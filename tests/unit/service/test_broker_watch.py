"""The shell of the outage tracker without a broker: the log filter on real loggers, FMS_BROKER_WAIT_S."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from streams.service.broker_watch import BrokerWatch, ConnectionNoiseFilter, install, wait_for_broker
from streams.core.resilience.outage import DOWN, OutageConfig
from streams.service.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class CorruptRecordException(Exception):
    pass


class NodeNotReadyError(Exception):  # matched by name, as aiokafka's is
    pass


@pytest.fixture
def fetcher():
    """A logger under aiokafka's name with the filter of a watch of its own (not the process's)."""
    clock = Clock()
    watch = BrokerWatch(Settings(bootstrap_servers="b:9092"), OutageConfig(), clock=clock)
    logger = logging.getLogger("aiokafka.fms-unit-test")  # classify looks at the record's logger name
    noise = ConnectionNoiseFilter(watch)
    logger.addFilter(noise)
    lines = Lines()
    logger.addHandler(lines)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield watch, clock, logger, lines
    logger.removeFilter(noise)
    logger.removeHandler(lines)


def test_in_an_outage_connection_errors_are_held_back_and_real_errors_still_show(fetcher):
    watch, clock, logger, lines = fetcher
    watch.observe(None)  # the broker answered
    clock.now += 1
    watch.observe("KafkaConnectionError: closed")
    clock.now += 1
    watch.observe("KafkaConnectionError: closed")
    assert watch.tracker.state == DOWN
    for _ in range(500):
        logger.error("Failed fetch messages from %s: %s", 1, NodeNotReadyError("node 1"))
    logger.error("Failed fetch messages from %s: %s", 1, CorruptRecordException("crc mismatch"))
    logger.exception("Unexpected error in fetcher routine", exc_info=RuntimeError("boom"))
    logger.info("Discovered coordinator %s", 1)
    assert lines.lines == ["Failed fetch messages from 1: crc mismatch", "Unexpected error in fetcher routine",
                           "Discovered coordinator 1"]
    assert sum(watch.tracker._held.values()) == 500


def test_while_up_the_first_of_a_kind_is_written(fetcher):
    watch, clock, logger, lines = fetcher
    watch.observe(None)
    for _ in range(3):
        logger.error("Unable to update metadata from %s", [1])
    assert lines.lines == ["Unable to update metadata from [1]"]


def test_install_puts_the_filter_on_aiokafkas_loggers():
    watch = install(Settings())
    for name in ("aiokafka.client", "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator",
                 "aiokafka.producer.sender"):
        assert any(isinstance(f, ConnectionNoiseFilter) and f.watch is watch for f in logging.getLogger(name).filters)
    assert install(Settings()) is watch, "one watch per process"
    assert sum(isinstance(f, ConnectionNoiseFilter) for f in logging.getLogger("aiokafka.client").filters) == 1


@pytest.mark.parametrize("raw, want", [("", None), ("forever", None), ("inf", None), ("0", 0.0), ("2.5", 2.5)])
def test_broker_wait_setting(monkeypatch, raw, want):
    monkeypatch.setenv("FMS_BROKER_WAIT_S", raw)
    assert Settings.from_env().broker_wait_s == want


@pytest.mark.parametrize("raw", ["-1", "soon", "nan"])
def test_a_bad_broker_wait_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("FMS_BROKER_WAIT_S", raw)
    with pytest.raises(SettingsError, match=r"FMS_BROKER_WAIT_S=.*expected seconds"):
        Settings.from_env()


def test_waiting_for_nobody_gives_up_after_the_limit_with_the_error(capsys):
    # Port 9 (discard) on localhost: nothing listens there, the connection is refused at once.
    watch = BrokerWatch(Settings(bootstrap_servers="127.0.0.1:9"))
    started = time.monotonic()
    error = asyncio.run(wait_for_broker(watch, 1.0))
    took = time.monotonic() - started
    assert error is not None and "Unable to bootstrap" in error
    assert 1.0 <= took < 5.0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fms worker: kafka: no broker answers at 127.0.0.1:9")
    assert "FMS_BROKER_WAIT_S=1 s" in err[0]


def test_health_view_takes_the_worst_of_the_broker_and_the_rest():
    from types import SimpleNamespace

    from streams.service import web
    from streams.core.resilience.health import HealthTracker

    clock = Clock()
    watch = BrokerWatch(Settings(bootstrap_servers="b:9092", session_timeout_s=10.0), clock=clock)
    runtime = SimpleNamespace(app=SimpleNamespace(rebalancing=False), store=SimpleNamespace(counts=dict),
                              health=HealthTracker(), settings=Settings(), started=clock.now, broker=watch)
    watch.observe(None)
    status, components = web.health(runtime)
    assert status == "healthy" and components["kafka"]["reachable"] is True
    for _ in range(2):
        clock.now += 1
        watch.observe("KafkaConnectionError: refused")
    status, components = web.health(runtime)
    assert status == "degraded" and components["kafka"]["since"] == clock.now - 1
    assert "refused" in components["kafka"]["reason"]
    clock.now += 10
    assert web.health(runtime)[0] == "unhealthy"  # and so 503
    watch.observe(None)
    runtime.app.rebalancing = True
    status, components = web.health(runtime)
    assert status == "degraded" and components["kafka"]["reason"] == "partitions are being assigned or restored"
