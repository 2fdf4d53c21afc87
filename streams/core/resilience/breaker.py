"""A circuit breaker as a pure state machine, modelled on resilience4j's CircuitBreaker.

No clock, no threads, no I/O: every call takes `now` (seconds, a float) from the caller, so the
shell decides what time is and the tests need no clock mocking. The shell asks `try_acquire(now)`
before an operation, reports `on_success` / `on_error` with the call's duration after it, calls
`tick(now)` now and then for the time-driven transitions, and uses `wait_remaining(now)` to wait for
a permit instead of dropping records.

States (resilience4j's): CLOSED permits every call and records outcomes in a sliding window; OPEN
denies calls until `wait_duration_in_open_s` has elapsed, then the next `try_acquire` (or `tick`, if
`automatic_transition_from_open_to_half_open`) moves to HALF_OPEN, which permits
`permitted_calls_in_half_open` trial calls; once that many outcomes are recorded their rates decide:
CLOSED (fresh window) when both rates are below their thresholds, else OPEN again. FORCED_OPEN
denies everything until `release_forced` (-> CLOSED, fresh window); DISABLED permits everything and
records nothing until `reset`.

Rates. The failure rate is failed/calls and the slow-call rate slow/calls, as fractions 0..1, over
the sliding window. A call is slow when its duration is strictly greater than
`slow_call_duration_s`; a slow failure counts as both failed and slow. The breaker opens when
failure_rate >= failure_rate_threshold or slow_call_rate >= slow_call_rate_threshold, but only once
the window holds at least `minimum_number_of_calls` outcomes (for a count window capped at the
window size, as in resilience4j). Below that minimum, rates are *reported* as 0.0 (resilience4j
says -1; the wire record `fms.breaker-state` wants a plain number) and `calls` tells the reader how
many outcomes there are.

Windows. "count": the last `sliding_window_size` outcomes, a ring buffer with running totals (O(1)
per call). "time": one bucket per whole second of `now` over the last `sliding_window_size` seconds
(the current second included), with running totals; a bucket is cleared when the window moves past
it (O(1) amortized). `now` is expected not to go backwards; if it does, the time window does not
move back: the outcome counts in the newest second that window has seen. As in resilience4j, thresholds are checked when an outcome is
recorded, not when calls merely age out of the window.

Outcomes are recorded against the state the breaker is in when they are reported (resilience4j
does the same): a late outcome arriving in OPEN or FORCED_OPEN is counted in the current metrics but
changes no state; in HALF_OPEN any outcome counts toward the trial calls. An exception in
`ignore_exceptions` counts nothing and gives its half-open permit back; one not in
`record_exceptions` counts as a success. Ignoring is checked first.

`consecutive_failures_to_open` (the design documents' `maxFailures`) additionally opens a CLOSED
breaker after that many recorded failures in a row (a success resets the run). It applies in
CLOSED only; HALF_OPEN is decided by its trial calls. `BreakerConfig.simple()` is the design
documents' breaker: open after 3 consecutive failures, one trial call after 1 s.

Every transition is returned (or, from `try_acquire`, appended to `transitions` only) as a
`Transition` with a short human reason; `transition_count` grows monotonically so a caller can tell
whether something happened even once the bounded history is full.

The module also holds the pure load-shedding decision over health samples (`shed_load`), with
hysteresis, from the design documents' healthThresholds (cpu 80 %, memory 85 %, error rate 0.1).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal

__all__ = [
    "State",
    "BreakerConfig",
    "Transition",
    "Snapshot",
    "CircuitBreaker",
    "wire_state",
    "HealthThresholds",
    "shed_load",
    "GuardGaveUp",
]

HISTORY = 100


class State(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


_WIRE = {
    State.CLOSED: "closed",
    State.OPEN: "open",
    State.HALF_OPEN: "half_open",
    State.FORCED_OPEN: "open",
    State.DISABLED: "closed",
}


def wire_state(state: State) -> str:
    """The `fms.breaker-state` value (closed|open|half_open): forced open is open, disabled is closed."""
    return _WIRE[state]


@dataclass(frozen=True)
class BreakerConfig:
    sliding_window_type: Literal["count", "time"] = "count"
    sliding_window_size: int = 100  # calls (count) or seconds (time)
    minimum_number_of_calls: int = 10
    failure_rate_threshold: float = 0.5  # fraction, (0, 1]
    slow_call_rate_threshold: float = 1.0  # fraction, (0, 1]
    slow_call_duration_s: float = 60.0  # strictly longer is slow; math.inf: never slow
    wait_duration_in_open_s: float = 1.0  # the design documents' resetTimeout
    permitted_calls_in_half_open: int = 10
    max_wait_in_half_open_s: float = 0.0  # 0: stay half-open until the permitted calls complete
    consecutive_failures_to_open: int | None = None  # the design documents' maxFailures
    automatic_transition_from_open_to_half_open: bool = False  # tick() half-opens when the wait is over
    record_exceptions: tuple[type[BaseException], ...] = (Exception,)
    ignore_exceptions: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.sliding_window_type not in ("count", "time"):
            raise ValueError("sliding_window_type must be 'count' or 'time'")
        if self.sliding_window_size < 1 or self.minimum_number_of_calls < 1:
            raise ValueError("sliding_window_size and minimum_number_of_calls must be >= 1")
        if self.permitted_calls_in_half_open < 1:
            raise ValueError("permitted_calls_in_half_open must be >= 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be a fraction in (0, 1], got {value}")
        if not self.slow_call_duration_s > 0:
            raise ValueError("slow_call_duration_s must be > 0")
        if not (self.wait_duration_in_open_s >= 0 and math.isfinite(self.wait_duration_in_open_s)):
            raise ValueError("wait_duration_in_open_s must be finite and >= 0")
        if not (self.max_wait_in_half_open_s >= 0 and math.isfinite(self.max_wait_in_half_open_s)):
            raise ValueError("max_wait_in_half_open_s must be finite and >= 0")
        if self.consecutive_failures_to_open is not None and self.consecutive_failures_to_open < 1:
            raise ValueError("consecutive_failures_to_open must be >= 1 or None")
        for name in ("record_exceptions", "ignore_exceptions"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise ValueError(f"{name} must be a tuple of exception types")

    @property
    def effective_minimum_calls(self) -> int:
        """The minimum number of calls before rates count (capped at the size of a count window)."""
        if self.sliding_window_type == "count":
            return min(self.minimum_number_of_calls, self.sliding_window_size)
        return self.minimum_number_of_calls

    @classmethod
    def simple(cls, max_failures: int = 3, reset_timeout_s: float = 1.0) -> BreakerConfig:
        """The design documents' breaker (maxFailures 3, resetTimeout 1000 ms).

        Opens after `max_failures` consecutive failures; after `reset_timeout_s` one trial call is
        permitted: success closes, failure reopens. Slow calls never count. The rate rule is kept
        but made equivalent to the consecutive rule (a rate of 1.0 over the last `max_failures`
        calls *is* `max_failures` failures in a row), so the minimum number of calls is
        `max_failures`, not 1: with 1, a single failure would already be a rate of 1.0.
        """
        return cls(
            sliding_window_type="count",
            sliding_window_size=max_failures,
            minimum_number_of_calls=max_failures,
            failure_rate_threshold=1.0,
            slow_call_rate_threshold=1.0,
            slow_call_duration_s=math.inf,
            wait_duration_in_open_s=reset_timeout_s,
            permitted_calls_in_half_open=1,
            max_wait_in_half_open_s=0.0,
            consecutive_failures_to_open=max_failures,
        )


@dataclass(frozen=True)
class Transition:
    from_state: State
    to_state: State
    reason: str
    at: float


@dataclass(frozen=True)
class Snapshot:
    state: State
    failure_rate: float  # 0.0 below the minimum number of calls
    slow_call_rate: float  # 0.0 below the minimum number of calls
    calls: int
    failed_calls: int
    slow_calls: int
    not_permitted_calls: int  # since the metrics were last replaced (entering CLOSED/HALF_OPEN/...)


class _CountWindow:
    """The last `size` outcomes: a ring of codes (bit 0 failed, bit 1 slow) and running totals."""

    __slots__ = ("size", "min_calls", "ring", "pos", "calls", "failed", "slow", "not_permitted")

    def __init__(self, size: int, min_calls: int) -> None:
        self.size = size
        self.min_calls = min_calls
        self.ring = [0] * size
        self.pos = 0
        self.calls = 0
        self.failed = 0
        self.slow = 0
        self.not_permitted = 0

    def record(self, failed: bool, slow: bool, now: float) -> None:
        pos = self.pos
        if self.calls == self.size:
            old = self.ring[pos]
            self.failed -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        self.ring[pos] = failed | (slow << 1)
        self.failed += failed
        self.slow += slow
        pos += 1
        self.pos = 0 if pos == self.size else pos

    def advance(self, now: float) -> None:
        pass


class _TimeWindow:
    """One bucket per second over the last `size` seconds of `now`, with running totals."""

    __slots__ = ("size", "min_calls", "b_calls", "b_failed", "b_slow", "head",
                 "calls", "failed", "slow", "not_permitted")

    def __init__(self, size: int, min_calls: int) -> None:
        self.size = size
        self.min_calls = min_calls
        self.b_calls = [0] * size
        self.b_failed = [0] * size
        self.b_slow = [0] * size
        self.head: int | None = None  # the newest second the window has moved to
        self.calls = 0
        self.failed = 0
        self.slow = 0
        self.not_permitted = 0

    def advance(self, now: float) -> None:
        cur = math.floor(now)
        head = self.head
        if head is None:
            self.head = cur
            return
        if cur <= head:
            return
        size = self.size
        for second in range(head + 1, head + 1 + min(cur - head, size)):
            i = second % size
            if self.b_calls[i]:
                self.calls -= self.b_calls[i]
                self.failed -= self.b_failed[i]
                self.slow -= self.b_slow[i]
                self.b_calls[i] = self.b_failed[i] = self.b_slow[i] = 0
        self.head = cur

    def record(self, failed: bool, slow: bool, now: float) -> None:
        self.advance(now)
        i = self.head % self.size  # type: ignore[operator]
        self.b_calls[i] += 1
        self.b_failed[i] += failed
        self.b_slow[i] += slow
        self.calls += 1
        self.failed += failed
        self.slow += slow


def _secs(value: float) -> str:
    return f"{value:.1f}s" if round(value, 1) == value else f"{value:g}s"


class CircuitBreaker:
    """A resilience4j-style circuit breaker driven by explicit timestamps. Not thread-safe."""

    def __init__(self, name: str, config: BreakerConfig | None = None) -> None:
        self.name = name
        self.config = config = config or BreakerConfig()
        self._slow_s = config.slow_call_duration_s
        self._ignore = config.ignore_exceptions
        self._record_exc = config.record_exceptions
        self._consecutive_limit = config.consecutive_failures_to_open
        self._state = State.CLOSED
        self._metrics: _CountWindow | _TimeWindow = self._closed_window()
        self._consecutive = 0
        self._open_until = 0.0
        self._half_permits = 0
        self._half_deadline = math.inf
        self._history: deque[Transition] = deque(maxlen=HISTORY)
        self.transition_count = 0

    # -- reading ---------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def transitions(self) -> list[Transition]:
        """The last HISTORY transitions, oldest first."""
        return list(self._history)

    def snapshot(self, now: float) -> Snapshot:
        m = self._metrics
        m.advance(now)
        calls = m.calls
        if calls and calls >= m.min_calls:
            failure_rate, slow_rate = m.failed / calls, m.slow / calls
        else:
            failure_rate = slow_rate = 0.0
        return Snapshot(self._state, failure_rate, slow_rate, calls, m.failed, m.slow, m.not_permitted)

    def wait_remaining(self, now: float) -> float:
        """Seconds until `try_acquire` may permit a call: 0.0 when it would now, math.inf when no
        passage of time alone will (FORCED_OPEN; HALF_OPEN with every permit out and no max wait),
        so a caller waiting on it should cap its sleep and ask again."""
        state = self._state
        if state is State.CLOSED or state is State.DISABLED:
            return 0.0
        if state is State.OPEN:
            return max(0.0, self._open_until - now)
        if state is State.HALF_OPEN:
            if now >= self._half_deadline:
                return self.config.wait_duration_in_open_s
            if self._half_permits > 0:
                return 0.0
            if self._half_deadline == math.inf:
                return math.inf
            return self._half_deadline - now + self.config.wait_duration_in_open_s
        return math.inf

    def should_record(self, exc: BaseException) -> bool:
        """Whether `exc` counts as a failure (not ignored, and one of record_exceptions)."""
        return not isinstance(exc, self._ignore) and isinstance(exc, self._record_exc)

    # -- calls -----------------------------------------------------------------------------------

    def try_acquire(self, now: float) -> bool:
        """Permission for one call. Applies due timers first (half-open max wait -> OPEN, then
        OPEN -> HALF_OPEN once the wait is over, whether or not the transition is automatic)."""
        state = self._state
        if state is State.CLOSED or state is State.DISABLED:
            return True
        if state is State.HALF_OPEN and now >= self._half_deadline:
            self._to_open(self._half_wait_reason(), now)
            state = State.OPEN
        if state is State.OPEN:
            if now < self._open_until:
                self._metrics.not_permitted += 1
                return False
            self._to_half_open(now)
            state = State.HALF_OPEN
        if state is State.HALF_OPEN and self._half_permits > 0:
            self._half_permits -= 1
            return True
        self._metrics.not_permitted += 1
        return False

    def on_success(self, duration_s: float, now: float) -> Transition | None:
        return self._record(False, duration_s > self._slow_s, now)

    def on_error(self, exc: BaseException, duration_s: float, now: float) -> Transition | None:
        if isinstance(exc, self._ignore):
            if self._state is State.HALF_OPEN and (
                self._half_permits + self._metrics.calls < self.config.permitted_calls_in_half_open
            ):
                self._half_permits += 1
            return None
        return self._record(isinstance(exc, self._record_exc), duration_s > self._slow_s, now)

    def tick(self, now: float) -> Transition | None:
        """The time-driven transitions, at most one per call: HALF_OPEN past its max wait -> OPEN;
        OPEN past its wait -> HALF_OPEN when the transition is automatic."""
        state = self._state
        if state is State.HALF_OPEN and now >= self._half_deadline:
            return self._to_open(self._half_wait_reason(), now)
        if (state is State.OPEN and self.config.automatic_transition_from_open_to_half_open
                and now >= self._open_until):
            return self._to_half_open(now)
        return None

    # -- manual control ----------------------------------------------------------------------------

    def force_open(self, reason: str, now: float) -> Transition | None:
        """Deny every call until `release_forced` (None when already forced open)."""
        if self._state is State.FORCED_OPEN:
            return None
        self._metrics = self._closed_window()
        return self._transition(State.FORCED_OPEN, f"forced: {reason}", now)

    def release_forced(self, now: float) -> Transition | None:
        if self._state is not State.FORCED_OPEN:
            return None
        return self._to_closed("forced open released", now)

    def disable(self, now: float) -> Transition | None:
        """Permit every call and record nothing until `reset` (None when already disabled)."""
        if self._state is State.DISABLED:
            return None
        self._metrics = self._closed_window()
        return self._transition(State.DISABLED, "disabled", now)

    def reset(self, now: float) -> Transition | None:
        """Back to CLOSED with empty metrics, from any state (None when it was already CLOSED)."""
        if self._state is State.CLOSED:
            self._metrics = self._closed_window()
            self._consecutive = 0
            return None
        return self._to_closed("reset", now)

    # -- internals ---------------------------------------------------------------------------------

    def _closed_window(self) -> _CountWindow | _TimeWindow:
        c = self.config
        if c.sliding_window_type == "count":
            return _CountWindow(c.sliding_window_size, c.effective_minimum_calls)
        return _TimeWindow(c.sliding_window_size, c.effective_minimum_calls)

    def _record(self, failed: bool, slow: bool, now: float) -> Transition | None:
        state = self._state
        m = self._metrics
        if state is State.CLOSED:
            m.record(failed, slow, now)
            if failed:
                self._consecutive += 1
                limit = self._consecutive_limit
                if limit is not None and self._consecutive >= limit:
                    return self._to_open(f"{self._consecutive} consecutive failures", now)
            else:
                self._consecutive = 0
            calls = m.calls
            if calls >= m.min_calls:
                reason = self._exceeded(m, calls, "calls")
                if reason is not None:
                    return self._to_open(reason, now)
            return None
        if state is State.HALF_OPEN:
            m.record(failed, slow, now)
            calls = m.calls
            if calls >= self.config.permitted_calls_in_half_open:
                reason = self._exceeded(m, calls, "trial calls")
                if reason is not None:
                    return self._to_open(reason, now)
                c = self.config
                return self._to_closed(
                    f"failure rate {m.failed / calls:.2f} < {c.failure_rate_threshold:.2f} and slow call "
                    f"rate {m.slow / calls:.2f} < {c.slow_call_rate_threshold:.2f} over {calls} trial calls",
                    now,
                )
            return None
        if state is not State.DISABLED:  # OPEN, FORCED_OPEN: a late outcome, counted, no transition
            m.record(failed, slow, now)
        return None

    def _exceeded(self, m: _CountWindow | _TimeWindow, calls: int, what: str) -> str | None:
        c = self.config
        failure_rate = m.failed / calls
        if failure_rate >= c.failure_rate_threshold:
            return f"failure rate {failure_rate:.2f} >= {c.failure_rate_threshold:.2f} over {calls} {what}"
        slow_rate = m.slow / calls
        if slow_rate >= c.slow_call_rate_threshold:
            return f"slow call rate {slow_rate:.2f} >= {c.slow_call_rate_threshold:.2f} over {calls} {what}"
        return None

    def _half_wait_reason(self) -> str:
        return f"half-open max wait {_secs(self.config.max_wait_in_half_open_s)} elapsed"

    def _transition(self, to_state: State, reason: str, now: float) -> Transition:
        t = Transition(self._state, to_state, reason, now)
        self._state = to_state
        self._history.append(t)
        self.transition_count += 1
        return t

    def _to_open(self, reason: str, now: float) -> Transition:
        # OPEN keeps the metrics of the state it came from (as resilience4j does).
        self._open_until = now + self.config.wait_duration_in_open_s
        return self._transition(State.OPEN, reason, now)

    def _to_half_open(self, now: float) -> Transition:
        c = self.config
        self._metrics = _CountWindow(c.permitted_calls_in_half_open, c.permitted_calls_in_half_open)
        self._half_permits = c.permitted_calls_in_half_open
        self._half_deadline = now + c.max_wait_in_half_open_s if c.max_wait_in_half_open_s > 0 else math.inf
        return self._transition(State.HALF_OPEN, f"wait {_secs(c.wait_duration_in_open_s)} elapsed", now)

    def _to_closed(self, reason: str, now: float) -> Transition:
        self._metrics = self._closed_window()
        self._consecutive = 0
        return self._transition(State.CLOSED, reason, now)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"


# -- load shedding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthThresholds:
    """The design documents' healthThresholds. Shedding starts when any sample is above its
    threshold and stops only once every sample is below threshold * recover_ratio."""

    cpu_percent: float = 80.0
    memory_percent: float = 85.0
    error_rate: float = 0.1
    recover_ratio: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.recover_ratio <= 1.0:
            raise ValueError("recover_ratio must be in (0, 1]")


def _pct(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") + "%"


def shed_load(
    sample_cpu: float | None,
    sample_memory_percent: float | None,
    error_rate: float | None,
    thresholds: HealthThresholds,
    currently_shedding: bool,
) -> tuple[bool, str]:
    """(shed, reason) for one health sample, with hysteresis.

    A sample that is None or NaN is unknown: it neither starts shedding nor holds it on. The reason
    names what crossed (e.g. "cpu 93% > 80%"), what still holds shedding on, or the recovery.
    """
    checks = []
    for name, value, limit, fmt in (
        ("cpu", sample_cpu, thresholds.cpu_percent, _pct),
        ("memory", sample_memory_percent, thresholds.memory_percent, _pct),
        ("error rate", error_rate, thresholds.error_rate, lambda v: f"{v:.2f}"),
    ):
        if value is not None and value == value:  # not None, not NaN
            checks.append((name, float(value), limit, fmt))
    over = [f"{n} {f(v)} > {f(lim)}" for n, v, lim, f in checks if v > lim]
    if over:
        return True, ", ".join(over)
    if not currently_shedding:
        return False, "within thresholds"
    ratio = thresholds.recover_ratio
    holding = [f"{n} {f(v)} not below {f(lim * ratio)}" for n, v, lim, f in checks if not v < lim * ratio]
    if holding:
        return True, "recovering: " + ", ".join(holding)
    return False, f"recovered: all below {ratio:.0%} of thresholds"


class GuardGaveUp(Exception):
    """An operation failed `attempts` times on one record; `__cause__` is the last error.

    Raised by the shell's guard (streams.service.guard), which retries a record's operation through
    its breaker; caught by the agents, which dead-letter the record. Here, below both.
    """

    def __init__(self, operation: str, attempts: int, error: BaseException) -> None:
        super().__init__(f"{operation} failed {attempts} times, last: {type(error).__name__}: {error}")
        self.operation = operation
        self.attempts = attempts
