"""The async guard: the worker's fallible operations run through their circuit breakers.

One breaker per operation ("learn", "interaction", "send", "inference"), named `<worker>/<operation>`
as on `fms.breaker-state`. `Guard.call` asks the breaker for a permit; while the breaker is open
the record *waits* (the stream stops pulling, nothing is dropped) and asks again when the breaker's
wait is over. A failed call is retried with a short backoff. What happens after repeated failures
depends on the failure:

- a transient one (the broker, the network, the disk, a time-out: `TRANSIENT`) is retried for as
  long as it takes: the breaker opens, the stream waits, and half-open trial calls probe until the
  operation works again. An outage never sends records to the dead-letter topic;
- any other exception is about the record itself, and after `max_attempts` failed calls the guard
  gives up with `GuardGaveUp`, and the agent dead-letters the record with the reason;
- a `ResourceConstraintError` is not retried at all: the record would break the same constraint
  again. It is dead-lettered at once.

Every state change of a breaker is published on `fms.breaker-state` and in the
`fms_breaker_state{operation,state}` gauge as it happens, and all breakers are re-published
periodically as a heartbeat (streams.service.resources). Load shedding forces every breaker open while the
worker's health samples are over their thresholds (streams.core.resilience.breaker.shed_load).

`FaultInjector` is a test and drill hook (`FMS_FAULT_INJECT`): it makes one operation fail for a
while, so that the whole path above can be exercised against a real broker.
"""
from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streams.core.resilience.breaker import BreakerConfig, CircuitBreaker, GuardGaveUp, Snapshot, State, Transition
from streams.core.resilience.limits import ResourceConstraintError

log = logging.getLogger(__name__)

try:  # the guard itself does not need Kafka; the worker's transient errors include Kafka's
    from aiokafka.errors import KafkaError as _KafkaError
except ImportError:  # pragma: no cover
    _KafkaError = OSError

TRANSIENT: tuple[type[BaseException], ...] = (_KafkaError, ConnectionError, TimeoutError, asyncio.TimeoutError,
                                              OSError)


class InjectedFault(OSError):
    """A failure made by FaultInjector (an OSError: it behaves like a transient disk or I/O fault)."""

    def __init__(self, operation: str) -> None:
        super().__init__(errno.EIO, f"injected fault in {operation}")


class FaultInjector:
    """`operation:seconds` (comma-separated for several): every call of `operation` fails from its
    first call for that many seconds. Monotonic clock, so it is independent of event time."""

    def __init__(self, spec: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._plan: dict[str, float] = {}
        self._started: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            operation, _, seconds = part.partition(":")
            self._plan[operation.strip()] = float(seconds)

    def __bool__(self) -> bool:
        return bool(self._plan)

    def check(self, operation: str) -> None:
        duration = self._plan.get(operation)
        if duration is None:
            return
        now = self._clock()
        started = self._started.setdefault(operation, now)
        if now - started < duration:
            raise InjectedFault(operation)


# (operation, state, snapshot, reason): one call per transition, and one per breaker per heartbeat.
Publish = Callable[[str, State, Snapshot, "str | None"], Awaitable[None]]


class Guard:
    def __init__(self, worker: str, config: BreakerConfig, *, max_attempts: int = 5,
                 publish: Publish | None = None, injector: FaultInjector | None = None,
                 clock: Callable[[], float] = time.monotonic, max_backoff_s: float = 0.1) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.worker = worker
        self.config = config
        self.max_attempts = max_attempts
        self._publish = publish
        self._injector = injector
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._breakers: dict[str, CircuitBreaker] = {}
        self._seen: dict[str, int] = {}
        self.shedding = False

    def breaker(self, operation: str) -> CircuitBreaker:
        breaker = self._breakers.get(operation)
        if breaker is None:
            breaker = self._breakers[operation] = CircuitBreaker(f"{self.worker}/{operation}", self.config)
            self._seen[operation] = 0
            if self.shedding:
                breaker.force_open("load shedding", self._clock())
        return breaker

    def operations(self) -> list[str]:
        return sorted(self._breakers)

    def closed(self, operation: str) -> bool:
        """Whether the operation's breaker is closed: work may be batched only then, so that the
        trial calls of a half-open breaker are single records."""
        return self.snapshot(operation).state is State.CLOSED

    def snapshot(self, operation: str) -> Snapshot:
        return self.breaker(operation).snapshot(self._clock())

    async def call(self, operation: str, fn: Callable[..., Any], *args: Any, retry: bool = True,
                   **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` through the operation's breaker, retried as above. `retry=False`
        gives up after one failed call, for a caller that has a smaller unit of work to retry."""
        breaker = self.breaker(operation)
        failures = 0
        while True:
            if not breaker.try_acquire(self._clock()):
                await self._report(operation)
                # Capped: a forced-open or saturated half-open breaker reports math.inf.
                await asyncio.sleep(min(self._max_backoff_s, max(0.005, breaker.wait_remaining(self._clock()))))
                continue
            await self._report(operation)
            started = self._clock()
            try:
                if self._injector:
                    self._injector.check(operation)
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                now = self._clock()
                breaker.on_error(exc, now - started, now)
                await self._report(operation)
                failures += 1
                if not retry or isinstance(exc, ResourceConstraintError) or (
                        not isinstance(exc, TRANSIENT) and failures >= self.max_attempts):
                    raise GuardGaveUp(operation, failures, exc) from exc
                log.warning("%s failed (%s: %s), attempt %d; retrying", operation, type(exc).__name__, exc, failures)
                # Short: once the breaker half-opens, its trial calls are this record's retries, and
                # a long backoff between them (not the breaker's wait) would set the recovery time.
                await asyncio.sleep(min(self._max_backoff_s, 0.01 * 2 ** min(failures, 10)))
                continue
            now = self._clock()
            breaker.on_success(now - started, now)
            await self._report(operation)
            return result

    async def shed(self, shed: bool, reason: str) -> None:
        """Force every breaker open while shedding load; release them when it stops."""
        if shed == self.shedding:
            return
        self.shedding = shed
        now = self._clock()
        for operation in self.operations():
            breaker = self._breakers[operation]
            if shed:
                breaker.force_open(f"load shedding: {reason}", now)
            else:
                breaker.release_forced(now)
            await self._report(operation)

    async def heartbeat(self) -> None:
        """Every breaker's current state, whether or not it changed."""
        for operation in self.operations():
            self.breaker(operation).tick(self._clock())
            await self._report(operation, force=True)

    async def _report(self, operation: str, force: bool = False) -> None:
        breaker = self._breakers[operation]
        count = breaker.transition_count
        if count == self._seen[operation] and not force:
            return
        new = min(count - self._seen[operation], len(breaker.transitions))
        self._seen[operation] = count
        transitions: list[Transition] = breaker.transitions[-new:] if new else []
        snapshot = breaker.snapshot(self._clock())
        for t in transitions:
            log.log(logging.WARNING if t.to_state is not State.CLOSED else logging.INFO,
                    "breaker %s: %s -> %s (%s)", breaker.name, t.from_state.value, t.to_state.value, t.reason)
            if self._publish is not None:
                await self._publish(operation, t.to_state, snapshot, t.reason)
        if force and not transitions and self._publish is not None:
            await self._publish(operation, snapshot.state, snapshot, None)
