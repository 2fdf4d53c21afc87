"""The shell around streams.core.resilience.outage: probe the broker, quiet the Kafka clients during outages,
and wait for a broker before the worker starts.

- `BrokerWatch.probe()` sends one small metadata request (no topics) through a public
  `AIOKafkaAdminClient` of its own, up to three tries (each goes to a random known broker), each
  bounded by a timeout. A worker probes every `PROBE_INTERVAL_S` (a faust task, `register`), and
  /health reads the tracker (streams.service.web).
- `ConnectionNoiseFilter` is a logging.Filter on the aiokafka, faust, mode and agents loggers: a line that
  `streams.core.resilience.outage.classify` calls connection noise is written or held back as the tracker
  says; every other line passes untouched.
- `wait_for_broker` is what `fms worker` does first: probe with backoff until a broker answers or
  FMS_BROKER_WAIT_S runs out.

One watch per process (`install`): logging is process-wide, and a process runs one worker.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable

from streams.core.resilience.outage import NOISY_LOGGERS, OutageConfig, OutageTracker, Report, backoff_delays, classify
from streams.service.settings import Settings

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
PROBE_TRIES = 3

# The loggers that write connection noise in aiokafka 0.14 (created here if their modules have not
# been imported yet, so that the filter is on them from their first line).
_KNOWN_NOISY = ("aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.consumer.fetcher",
                "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender", "aiokafka.producer.producer",
                "aiokafka.admin.client", "faust.transport.drivers.aiokafka", "agents.memory")


def describe_error(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc) or repr(exc)
    return (text if text.startswith(name) else f"{name}: {text}")[:300]


class BrokerWatch:
    def __init__(self, settings: Settings, cfg: OutageConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.tracker = OutageTracker(settings.bootstrap_servers,
                                     cfg or OutageConfig(unhealthy_after_s=settings.session_timeout_s))
        self.clock = clock
        self._lock = threading.Lock()  # faust's consumer logs from a thread of its own
        self._admin = None
        # Where reports go: stderr while the worker waits (no logging set up yet), the log after.
        self.say: Callable[[Report], None] = self._log

    # ---------------------------------------------------------------- tracker, under the lock

    def observe(self, error: str | None) -> None:
        with self._lock:
            reports = self.tracker.observe(self.clock(), error is None, error)
        for report in reports:
            self.say(report)

    def noise(self, kind: str) -> bool:
        with self._lock:
            return self.tracker.noise(self.clock(), kind)

    def health(self) -> dict:
        with self._lock:
            return self.tracker.health(self.clock())

    @staticmethod
    def _log(report: Report) -> None:
        log.log(logging.WARNING if report.level == "warning" else logging.INFO, "%s", report.message)

    # ---------------------------------------------------------------- the probe

    async def probe(self, timeout: float = PROBE_TIMEOUT_S) -> str | None:
        """None when a broker answered a metadata request, else what went wrong."""
        from aiokafka.admin import AIOKafkaAdminClient

        from streams.service.topics import kafka_client_options

        error: BaseException | None = None
        try:
            if self._admin is None:
                admin = AIOKafkaAdminClient(**kafka_client_options(self.settings),
                                            request_timeout_ms=int(max(timeout, 1.0) * 1000))
                try:
                    await asyncio.wait_for(admin.start(), timeout)
                except BaseException:
                    await _close_quietly(admin)
                    raise
                self._admin = admin
            for _ in range(PROBE_TRIES):
                try:
                    await asyncio.wait_for(self._admin.describe_topics([]), timeout)
                    return None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
                    error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = exc
        return describe_error(error) if error is not None else "no answer"

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await _close_quietly(admin)


async def _close_quietly(admin) -> None:
    try:
        await admin.close()
    except Exception:  # noqa: BLE001 - closing a client that never connected
        pass


class ConnectionNoiseFilter(logging.Filter):
    """Holds back the Kafka clients' connection-error lines as the watch's tracker says."""

    def __init__(self, watch: BrokerWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = classify(record.name, str(record.msg), _error_types(record))
        return True if kind is None else self.watch.noise(kind)


def _error_types(record: logging.LogRecord) -> list[str]:
    errors = [a for a in (record.args if isinstance(record.args, tuple) else ()) if isinstance(a, BaseException)]
    if record.exc_info and record.exc_info[1] is not None:
        errors.append(record.exc_info[1])
    return [cls.__name__ for e in errors for cls in type(e).__mro__]


_WATCH: BrokerWatch | None = None
_FILTER: ConnectionNoiseFilter | None = None


def install(settings: Settings) -> BrokerWatch:
    """The process's watch, and its filter on the Kafka clients' loggers (again for loggers created
    since the last call)."""
    global _WATCH, _FILTER
    if _WATCH is None:
        _WATCH = BrokerWatch(settings)
        _FILTER = ConnectionNoiseFilter(_WATCH)
    names = set(_KNOWN_NOISY) | {n for n in list(logging.root.manager.loggerDict)
                                 if any(n == p or n.startswith(p + ".") for p in NOISY_LOGGERS)}
    for name in sorted(names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _WATCH


def register(runtime, watch: BrokerWatch) -> None:
    """Probe the broker every PROBE_INTERVAL_S while the worker runs."""
    watch.say = BrokerWatch._log
    install(watch.settings)  # loggers created while the app was built

    @runtime.app.task
    async def watch_broker() -> None:
        try:
            while True:
                started = time.monotonic()
                error = await watch.probe()
                watch.observe(error)
                runtime.metrics.kafka_reachable.set(1 if watch.health()["reachable"] else 0)
                await asyncio.sleep(max(0.05, PROBE_INTERVAL_S - (time.monotonic() - started)))
        finally:
            await watch.close()


async def wait_for_broker(watch: BrokerWatch, max_wait_s: float | None,
                          clock: Callable[[], float] = time.monotonic) -> str | None:
    """Probe until a broker answers (None) or `max_wait_s` has passed (the last error).

    Reports go to stderr: the worker's logging is not set up yet.
    """
    limit = "forever" if max_wait_s is None else f"{max_wait_s:g} s"

    def say(report: Report) -> None:
        note = f"; retrying with backoff up to 10 s, FMS_BROKER_WAIT_S={limit}" if report.kind == "waiting" else ""
        print(f"fms worker: {report.message}{note}", file=sys.stderr, flush=True)

    watch.say = say
    started = clock()
    delays = backoff_delays()
    try:
        while True:
            left = None if max_wait_s is None else max_wait_s - (clock() - started)
            timeout = 5.0 if left is None else max(0.5, min(5.0, left))
            error = await watch.probe(timeout)
            watch.observe(error)
            if error is None:
                return None
            left = None if max_wait_s is None else max_wait_s - (clock() - started)
            if left is not None and left <= 0:
                return error
            delay = next(delays)
            await asyncio.sleep(delay if left is None else min(delay, left))
    finally:
        await watch.close()
        watch.say = BrokerWatch._log
