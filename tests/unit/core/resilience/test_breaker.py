"""The pure circuit breaker (streams.core.resilience.breaker): each transition and its reason, and a
property test against a naive reference model that keeps every outcome and recomputes rates."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.resilience.breaker import (
    BreakerConfig,
    CircuitBreaker,
    HealthThresholds,
    Snapshot,
    State,
    Transition,
    shed_load,
    wire_state,
)


class Boom(Exception):
    pass


class Benign(Boom):
    """Recorded by type (a Boom) but ignored: ignoring wins."""


def fail(b: CircuitBreaker, n: int, now: float, duration: float = 0.01) -> Transition | None:
    t = None
    for _ in range(n):
        assert b.try_acquire(now)
        t = b.on_error(Boom(), duration, now) or t
    return t


def succeed(b: CircuitBreaker, n: int, now: float, duration: float = 0.01) -> Transition | None:
    t = None
    for _ in range(n):
        assert b.try_acquire(now)
        t = b.on_success(duration, now) or t
    return t


# -- configuration ------------------------------------------------------------------------------------


def test_defaults_are_resilience4j_with_the_design_reset_timeout():
    c = BreakerConfig()
    assert (c.sliding_window_type, c.sliding_window_size, c.minimum_number_of_calls) == ("count", 100, 10)
    assert (c.failure_rate_threshold, c.slow_call_rate_threshold, c.slow_call_duration_s) == (0.5, 1.0, 60.0)
    assert (c.wait_duration_in_open_s, c.permitted_calls_in_half_open, c.max_wait_in_half_open_s) == (1.0, 10, 0.0)
    assert c.consecutive_failures_to_open is None
    assert c.record_exceptions == (Exception,) and c.ignore_exceptions == ()


@pytest.mark.parametrize("bad", [
    dict(sliding_window_type="sessions"), dict(sliding_window_size=0), dict(minimum_number_of_calls=0),
    dict(failure_rate_threshold=0.0), dict(failure_rate_threshold=50.0), dict(slow_call_rate_threshold=1.5),
    dict(slow_call_duration_s=0.0), dict(wait_duration_in_open_s=-1.0), dict(permitted_calls_in_half_open=0),
    dict(max_wait_in_half_open_s=-0.5), dict(consecutive_failures_to_open=0), dict(record_exceptions=[Exception]),
    dict(ignore_exceptions=(int,)),
])
def test_invalid_configuration_is_rejected(bad):
    with pytest.raises(ValueError):
        BreakerConfig(**bad)


def test_minimum_calls_is_capped_at_a_count_window():
    assert BreakerConfig(sliding_window_size=5, minimum_number_of_calls=10).effective_minimum_calls == 5
    assert BreakerConfig(sliding_window_type="time", sliding_window_size=5,
                         minimum_number_of_calls=10).effective_minimum_calls == 10


# -- CLOSED -> OPEN -------------------------------------------------------------------------------------


def test_opens_when_failure_rate_reaches_threshold_with_reason():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=10, minimum_number_of_calls=10))
    assert succeed(b, 4, 0.0) is None
    assert fail(b, 5, 0.0) is None                      # 9 calls: below the minimum
    snap = b.snapshot(0.0)
    assert snap == Snapshot(State.CLOSED, 0.0, 0.0, 9, 5, 0, 0)   # rates 0.0 below the minimum
    t = fail(b, 1, 2.5)
    assert t == Transition(State.CLOSED, State.OPEN, "failure rate 0.60 >= 0.50 over 10 calls", 2.5)
    assert b.state is State.OPEN and b.transitions == [t] and b.transition_count == 1
    assert b.snapshot(2.5).failure_rate == pytest.approx(0.6)


def test_exactly_at_threshold_opens_and_just_below_does_not():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=4, minimum_number_of_calls=4))
    succeed(b, 3, 0.0)
    assert fail(b, 1, 0.0) is None                      # 0.25 < 0.5
    t = fail(b, 1, 0.0)                                 # window slides: [s, s, f, f] = 0.5
    assert t is not None and t.reason == "failure rate 0.50 >= 0.50 over 4 calls"


def test_count_window_forgets_old_outcomes():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=5, minimum_number_of_calls=5,
                                           failure_rate_threshold=0.6))
    fail(b, 2, 0.0)
    succeed(b, 3, 0.0)                                  # 2/5 = 0.4
    succeed(b, 2, 0.0)                                  # the failures slid out
    assert b.snapshot(0.0) == Snapshot(State.CLOSED, 0.0, 0.0, 5, 0, 0, 0)
    assert fail(b, 2, 0.0) is None                      # 2/5
    assert fail(b, 1, 0.0).reason == "failure rate 0.60 >= 0.60 over 5 calls"


def test_slow_calls_open_on_slow_call_rate():
    cfg = BreakerConfig(sliding_window_size=4, minimum_number_of_calls=4, slow_call_duration_s=0.5,
                        slow_call_rate_threshold=0.75)
    b = CircuitBreaker("op", cfg)
    succeed(b, 1, 0.0, duration=0.5)                    # exactly the threshold: not slow
    succeed(b, 2, 0.0, duration=0.51)
    assert b.snapshot(0.0).slow_calls == 2
    t = succeed(b, 1, 0.0, duration=3.0)
    assert t.reason == "slow call rate 0.75 >= 0.75 over 4 calls" and b.state is State.OPEN
    snap = b.snapshot(0.0)
    assert (snap.failure_rate, snap.slow_call_rate, snap.failed_calls, snap.slow_calls) == (0.0, 0.75, 0, 3)


def test_a_slow_failure_counts_as_failed_and_slow():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=10, minimum_number_of_calls=2,
                                           slow_call_duration_s=1.0))
    b.on_success(0.1, 0.0)
    b.on_error(Boom(), 2.0, 0.0)
    snap = b.snapshot(0.0)
    assert (snap.calls, snap.failed_calls, snap.slow_calls) == (2, 1, 1)
    assert b.state is State.OPEN                        # 1/2 >= 0.5


def test_consecutive_failures_also_open_in_rate_mode():
    b = CircuitBreaker("op", BreakerConfig(consecutive_failures_to_open=3))   # 100-call window, 10 minimum
    succeed(b, 20, 0.0)
    fail(b, 2, 0.0)
    succeed(b, 1, 0.0)                                  # a success breaks the run
    assert fail(b, 2, 0.0) is None
    t = fail(b, 1, 0.0)
    assert t.reason == "3 consecutive failures" and b.state is State.OPEN


# -- OPEN -> HALF_OPEN -> CLOSED | OPEN ---------------------------------------------------------------


def opened(cfg: BreakerConfig, at: float = 10.0) -> CircuitBreaker:
    b = CircuitBreaker("op", cfg)
    while b.state is State.CLOSED:
        fail(b, 1, at)
    return b


def test_open_denies_and_counts_until_the_wait_elapses():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2, wait_duration_in_open_s=2.0))
    assert not b.try_acquire(10.0) and not b.try_acquire(11.9)
    assert b.snapshot(11.9).not_permitted_calls == 2
    assert b.wait_remaining(11.0) == pytest.approx(1.0)
    assert b.tick(12.5) is None                         # not automatic: only a call half-opens it
    assert b.state is State.OPEN and b.wait_remaining(12.5) == 0.0
    assert b.try_acquire(12.5)
    assert b.transitions[-1] == Transition(State.OPEN, State.HALF_OPEN, "wait 2.0s elapsed", 12.5)
    assert b.snapshot(12.5) == Snapshot(State.HALF_OPEN, 0.0, 0.0, 0, 0, 0, 0)


def test_automatic_transition_on_tick():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2,
                             automatic_transition_from_open_to_half_open=True))
    assert b.tick(10.99) is None
    t = b.tick(11.0)
    assert t == Transition(State.OPEN, State.HALF_OPEN, "wait 1.0s elapsed", 11.0)
    assert b.tick(100.0) is None                        # no max wait in half-open


def test_half_open_permits_only_the_trial_calls_then_closes_with_a_fresh_window():
    cfg = BreakerConfig(sliding_window_size=4, minimum_number_of_calls=4, permitted_calls_in_half_open=3)
    b = opened(cfg)
    assert b.try_acquire(11.0) and b.try_acquire(11.0) and b.try_acquire(11.0)
    assert not b.try_acquire(11.0)
    assert b.wait_remaining(11.0) == math.inf          # every permit is out, no max wait
    assert b.on_success(0.1, 11.1) is None
    assert b.on_error(Boom(), 0.1, 11.1) is None
    t = b.on_success(0.1, 11.2)
    assert t == Transition(State.HALF_OPEN, State.CLOSED,
                           "failure rate 0.33 < 0.50 and slow call rate 0.00 < 1.00 over 3 trial calls", 11.2)
    assert b.snapshot(11.2) == Snapshot(State.CLOSED, 0.0, 0.0, 0, 0, 0, 0)
    assert fail(b, 3, 12.0) is None                     # the old failures are gone: 3 < 4 calls


def test_half_open_reopens_when_trial_calls_fail():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2, permitted_calls_in_half_open=2))
    succeed(b, 1, 11.0)
    t = fail(b, 1, 11.0)
    assert t == Transition(State.HALF_OPEN, State.OPEN, "failure rate 0.50 >= 0.50 over 2 trial calls", 11.0)
    assert b.wait_remaining(11.0) == pytest.approx(1.0) and not b.try_acquire(11.5)


def test_half_open_max_wait_reopens_on_tick_or_acquire():
    cfg = BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2, permitted_calls_in_half_open=1,
                        max_wait_in_half_open_s=5.0)
    b = opened(cfg)
    assert b.try_acquire(11.0)                          # the only permit; its outcome never comes
    assert b.wait_remaining(12.0) == pytest.approx(4.0 + 1.0)
    assert b.tick(15.9) is None
    t = b.tick(16.0)
    assert t == Transition(State.HALF_OPEN, State.OPEN, "half-open max wait 5.0s elapsed", 16.0)
    assert b.try_acquire(17.0) and b.state is State.HALF_OPEN
    assert b.try_acquire(22.0) is False                 # max wait over again -> OPEN, call denied
    assert [x.to_state for x in b.transitions[-2:]] == [State.HALF_OPEN, State.OPEN]


def test_late_outcomes_in_open_are_counted_but_change_nothing():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2))
    assert b.on_success(0.1, 10.5) is None and b.on_error(Boom(), 0.1, 10.5) is None
    assert b.state is State.OPEN and b.snapshot(10.5).calls == 2


# -- the design documents' simple mode -----------------------------------------------------------------


def test_simple_mode_opens_after_three_consecutive_failures_and_half_opens_after_one_second():
    b = CircuitBreaker("recognize", BreakerConfig.simple())
    fail(b, 2, 0.0)
    succeed(b, 1, 0.0)
    assert fail(b, 2, 0.1) is None and b.state is State.CLOSED
    t = fail(b, 1, 0.2)
    assert t == Transition(State.CLOSED, State.OPEN, "3 consecutive failures", 0.2)
    assert not b.try_acquire(1.1) and b.wait_remaining(1.1) == pytest.approx(0.1)
    assert b.try_acquire(1.2) and b.state is State.HALF_OPEN
    assert not b.try_acquire(1.2)                       # one trial call
    t = b.on_error(Boom(), 0.01, 1.3)
    assert t.to_state is State.OPEN and t.reason == "failure rate 1.00 >= 1.00 over 1 trial calls"
    assert b.try_acquire(2.3)
    assert b.on_success(30.0, 2.4).to_state is State.CLOSED   # never slow in simple mode
    assert fail(b, 2, 2.5) is None


# -- exceptions ---------------------------------------------------------------------------------------


def test_record_and_ignore_exceptions():
    cfg = BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2, record_exceptions=(Boom,),
                        ignore_exceptions=(Benign,))
    b = CircuitBreaker("op", cfg)
    assert b.should_record(Boom()) and not b.should_record(Benign()) and not b.should_record(ValueError())
    assert b.on_error(Benign(), 0.1, 0.0) is None       # ignored: nothing counted
    assert b.snapshot(0.0).calls == 0
    b.on_error(ValueError(), 0.1, 0.0)                  # not recorded: a success
    b.on_error(KeyError(), 0.1, 0.0)
    assert b.snapshot(0.0) == Snapshot(State.CLOSED, 0.0, 0.0, 2, 0, 0, 0)
    b.on_error(Boom(), 0.1, 0.0)
    assert b.state is State.OPEN


def test_an_ignored_exception_gives_its_half_open_permit_back():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2, permitted_calls_in_half_open=1,
                             ignore_exceptions=(Benign,)))
    assert b.try_acquire(11.0) and not b.try_acquire(11.0)
    b.on_error(Benign(), 0.1, 11.0)
    assert b.try_acquire(11.0) and not b.try_acquire(11.0)
    b.on_error(Benign(), 0.1, 11.0)
    b.on_error(Benign(), 0.1, 11.0)                     # never more permits than trial calls
    assert b.try_acquire(11.0) and not b.try_acquire(11.0)


# -- time-based window -----------------------------------------------------------------------------------


def test_time_window_expires_whole_seconds():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_type="time", sliding_window_size=3,
                                           minimum_number_of_calls=4))
    fail(b, 3, 100.2)
    succeed(b, 1, 101.9)                                # 3/4 but ...
    assert b.state is State.OPEN                        # ... >= 0.5: it opened
    b.reset(102.0)
    fail(b, 2, 102.5)
    fail(b, 1, 101.0)                                   # time never moves back: counted at second 102
    assert b.snapshot(104.99).calls == 3                # seconds 102..104
    assert b.snapshot(105.0).calls == 0                 # second 102 aged out
    fail(b, 2, 105.5)
    succeed(b, 2, 106.0)
    snap = b.snapshot(106.0)
    assert (snap.calls, snap.failed_calls, snap.failure_rate) == (4, 2, 0.5) and b.state is State.OPEN
    b.reset(106.0)
    succeed(b, 3, 200.0)
    fail(b, 3, 203.0)                                   # the successes are 3 s old: gone
    assert b.snapshot(203.0).calls == 3 and b.state is State.CLOSED
    assert fail(b, 1, 1000.0) is None                   # a long jump clears everything: 1 call
    assert b.snapshot(1000.0).calls == 1


def test_time_window_minimum_calls_is_not_capped():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_type="time", sliding_window_size=2,
                                           minimum_number_of_calls=5))
    assert fail(b, 4, 0.0) is None
    assert fail(b, 1, 1.0).reason == "failure rate 1.00 >= 0.50 over 5 calls"


# -- forced open, disabled, reset ---------------------------------------------------------------------------


def test_forced_open_denies_everything_until_released():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2))
    succeed(b, 1, 0.0)
    t = b.force_open("cpu 93% > 80%", 1.0)
    assert t == Transition(State.CLOSED, State.FORCED_OPEN, "forced: cpu 93% > 80%", 1.0)
    assert b.force_open("again", 2.0) is None
    assert not b.try_acquire(1000.0) and b.wait_remaining(1000.0) == math.inf
    assert b.tick(1000.0) is None
    assert b.snapshot(1000.0).not_permitted_calls == 1
    assert b.on_error(Boom(), 0.1, 1000.0) is None and b.on_error(Boom(), 0.1, 1000.0) is None
    assert b.state is State.FORCED_OPEN
    t = b.release_forced(1001.0)
    assert t == Transition(State.FORCED_OPEN, State.CLOSED, "forced open released", 1001.0)
    assert b.snapshot(1001.0) == Snapshot(State.CLOSED, 0.0, 0.0, 0, 0, 0, 0)
    assert b.release_forced(1002.0) is None


def test_forcing_open_from_half_open_and_open():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2))
    assert b.force_open("memory 90% > 85%", 10.5).from_state is State.OPEN
    b.release_forced(10.6)
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2))
    b.try_acquire(11.0)
    assert b.force_open("x", 11.0).from_state is State.HALF_OPEN


def test_disabled_permits_all_and_records_nothing_until_reset():
    b = opened(BreakerConfig(sliding_window_size=2, minimum_number_of_calls=2))
    t = b.disable(10.5)
    assert t == Transition(State.OPEN, State.DISABLED, "disabled", 10.5) and b.disable(10.6) is None
    assert fail(b, 50, 10.7) is None
    assert b.snapshot(10.7) == Snapshot(State.DISABLED, 0.0, 0.0, 0, 0, 0, 0)
    assert b.wait_remaining(10.7) == 0.0 and b.release_forced(10.7) is None
    assert b.reset(11.0) == Transition(State.DISABLED, State.CLOSED, "reset", 11.0)
    assert fail(b, 1, 11.0) is None and b.state is State.CLOSED


def test_reset_clears_metrics_even_when_closed():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=4, minimum_number_of_calls=4,
                                           consecutive_failures_to_open=3))
    fail(b, 2, 0.0)
    assert b.reset(0.0) is None
    assert b.snapshot(0.0).calls == 0
    assert fail(b, 2, 0.0) is None                      # the run of failures was cleared too


def test_wait_remaining_in_each_state():
    cfg = BreakerConfig(sliding_window_size=1, minimum_number_of_calls=1, wait_duration_in_open_s=2.0,
                        permitted_calls_in_half_open=1, max_wait_in_half_open_s=3.0)
    b = CircuitBreaker("op", cfg)
    assert b.wait_remaining(0.0) == 0.0
    fail(b, 1, 0.0)
    assert b.wait_remaining(0.5) == pytest.approx(1.5) and b.wait_remaining(5.0) == 0.0
    assert b.try_acquire(2.0)
    assert b.wait_remaining(2.5) == pytest.approx(2.5 + 2.0)   # until max wait, then the open wait
    assert b.wait_remaining(5.0) == pytest.approx(2.0)         # max wait over: reopens, then waits


def test_history_is_bounded_and_the_count_is_not():
    b = CircuitBreaker("op", BreakerConfig(sliding_window_size=1, minimum_number_of_calls=1,
                                           wait_duration_in_open_s=0.0, permitted_calls_in_half_open=1))
    for i in range(80):
        fail(b, 1, float(i))                            # CLOSED -> OPEN, then OPEN -> HALF_OPEN -> OPEN
    assert b.transition_count == 1 + 2 * 79
    assert len(b.transitions) == 100 and b.transitions[-1].at == 79.0


def test_wire_state():
    assert [wire_state(s) for s in State] == ["closed", "open", "half_open", "open", "closed"]


# -- health thresholds and load shedding ---------------------------------------------------------------


def test_shed_load_starts_on_any_threshold():
    h = HealthThresholds()
    assert (h.cpu_percent, h.memory_percent, h.error_rate, h.recover_ratio) == (80.0, 85.0, 0.1, 0.9)
    assert shed_load(50, 50, 0.0, h, False) == (False, "within thresholds")
    assert shed_load(80, 85, 0.1, h, False) == (False, "within thresholds")     # at, not above
    assert shed_load(93, 50, 0.0, h, False) == (True, "cpu 93% > 80%")
    assert shed_load(93, 90.5, 0.25, h, False) == (True, "cpu 93% > 80%, memory 90.5% > 85%, error rate 0.25 > 0.10")


def test_shed_load_hysteresis():
    h = HealthThresholds()
    shed, reason = shed_load(75, 50, 0.0, h, True)      # below 80 but not below 72
    assert shed and reason == "recovering: cpu 75% not below 72%"
    shed, reason = shed_load(71, 80, 0.095, h, True)
    assert shed and reason == "recovering: memory 80% not below 76.5%, error rate 0.10 not below 0.09"
    assert shed_load(71, 70, 0.05, h, True) == (False, "recovered: all below 90% of thresholds")
    assert shed_load(75, 80, 0.095, h, False)[0] is False       # the same sample does not start shedding


def test_shed_load_ignores_unknown_samples():
    h = HealthThresholds()
    assert shed_load(None, float("nan"), None, h, False) == (False, "within thresholds")
    assert shed_load(None, 10.0, None, h, True)[0] is False
    assert shed_load(float("nan"), 90.0, None, h, False) == (True, "memory 90% > 85%")
    with pytest.raises(ValueError):
        HealthThresholds(recover_ratio=0.0)


# -- property: agrees with a naive reference model ---------------------------------------------------


class Reference:
    """The same specification, written naively: every outcome of the current metrics is kept in a
    list, and the window, rates and consecutive failures are recomputed from it on every question."""

    def __init__(self, cfg: BreakerConfig):
        self.cfg = cfg
        self.state = "closed"
        self.outcomes: list[tuple[float, bool, bool]] = []   # (time, failed, slow)
        self.half_metrics = False                           # the outcomes are half-open trial calls
        self.not_permitted = 0
        self.open_until = 0.0
        self.permits = 0
        self.deadline = math.inf

    # metrics
    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        cfg = self.cfg
        if self.half_metrics:
            return self.outcomes[-cfg.permitted_calls_in_half_open:]
        if cfg.sliding_window_type == "count":
            return self.outcomes[-cfg.sliding_window_size:]
        return [o for o in self.outcomes if math.floor(o[0]) > math.floor(now) - cfg.sliding_window_size]

    def min_calls(self) -> int:
        cfg = self.cfg
        if self.half_metrics:
            return cfg.permitted_calls_in_half_open
        if cfg.sliding_window_type == "count" and cfg.sliding_window_size < cfg.minimum_number_of_calls:
            return cfg.sliding_window_size
        return cfg.minimum_number_of_calls

    def rates(self, now: float) -> tuple[int, int, int, float, float]:
        w = self.window(now)
        calls, failed, slow = len(w), sum(o[1] for o in w), sum(o[2] for o in w)
        if calls >= self.min_calls():
            return calls, failed, slow, failed / calls, slow / calls
        return calls, failed, slow, 0.0, 0.0

    def over(self, now: float) -> bool:
        calls, _, _, fr, sr = self.rates(now)
        return calls >= self.min_calls() and (
            fr >= self.cfg.failure_rate_threshold or sr >= self.cfg.slow_call_rate_threshold)

    # transitions
    def go(self, state: str) -> str:
        cfg = self.cfg
        if state == "closed" or state == "forced_open" or state == "disabled":
            self.outcomes, self.half_metrics, self.not_permitted = [], False, 0
        if state == "half_open":
            self.outcomes, self.half_metrics, self.not_permitted = [], True, 0
            self.permits = cfg.permitted_calls_in_half_open
            self.deadline = self.now + cfg.max_wait_in_half_open_s if cfg.max_wait_in_half_open_s else math.inf
        if state == "open":
            self.open_until = self.now + cfg.wait_duration_in_open_s
        self.state = state
        return state

    # operations; each returns the state it moved to, or None
    def try_acquire(self, now: float) -> bool:
        self.now = now
        if self.state in ("closed", "disabled"):
            return True
        if self.state == "half_open" and now >= self.deadline:
            self.go("open")
        if self.state == "open" and now >= self.open_until:
            self.go("half_open")
        if self.state == "half_open" and self.permits > 0:
            self.permits -= 1
            return True
        self.not_permitted += 1
        return False

    def record(self, failed: bool, slow: bool, now: float) -> str | None:
        self.now = now
        if self.state == "disabled":
            return None
        self.outcomes.append((now, failed, slow))
        if self.state == "closed":
            limit = self.cfg.consecutive_failures_to_open
            run = 0
            for o in reversed(self.outcomes):
                if not o[1]:
                    break
                run += 1
            if limit is not None and run >= limit:
                return self.go("open")
            return self.go("open") if self.over(now) else None
        if self.state == "half_open" and len(self.outcomes) >= self.cfg.permitted_calls_in_half_open:
            return self.go("open") if self.over(now) else self.go("closed")
        return None

    def ignored(self) -> None:
        if self.state == "half_open" and self.permits + len(self.outcomes) < self.cfg.permitted_calls_in_half_open:
            self.permits += 1

    def tick(self, now: float) -> str | None:
        self.now = now
        if self.state == "half_open" and now >= self.deadline:
            return self.go("open")
        if self.state == "open" and self.cfg.automatic_transition_from_open_to_half_open and now >= self.open_until:
            return self.go("half_open")
        return None

    def manual(self, op: str, now: float) -> str | None:
        self.now = now
        if op == "force_open":
            return None if self.state == "forced_open" else self.go("forced_open")
        if op == "release":
            return self.go("closed") if self.state == "forced_open" else None
        if op == "disable":
            return None if self.state == "disabled" else self.go("disabled")
        if self.state == "closed":   # reset
            self.outcomes = []
            return None
        return self.go("closed")

    def wait_remaining(self, now: float) -> float:
        if self.state in ("closed", "disabled"):
            return 0.0
        if self.state == "open":
            return max(0.0, self.open_until - now)
        if self.state == "forced_open":
            return math.inf
        if now >= self.deadline:
            return self.cfg.wait_duration_in_open_s
        if self.permits:
            return 0.0
        return self.deadline - now + self.cfg.wait_duration_in_open_s


configs = st.builds(
    BreakerConfig,
    sliding_window_type=st.sampled_from(["count", "time"]),
    sliding_window_size=st.integers(1, 8),
    minimum_number_of_calls=st.integers(1, 10),
    failure_rate_threshold=st.sampled_from([0.2, 0.25, 0.5, 0.6, 0.75, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.3, 0.5, 1.0]),
    slow_call_duration_s=st.just(1.0),
    wait_duration_in_open_s=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    permitted_calls_in_half_open=st.integers(1, 4),
    max_wait_in_half_open_s=st.sampled_from([0.0, 0.0, 1.5, 3.0]),
    consecutive_failures_to_open=st.sampled_from([None, None, 1, 2, 3]),
    automatic_transition_from_open_to_half_open=st.booleans(),
    record_exceptions=st.just((Boom,)),
    ignore_exceptions=st.just((Benign,)),
)

durations = st.sampled_from([0.0, 0.2, 1.0, 1.01, 4.0])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire")),
        st.tuples(st.just("success"), durations),
        st.tuples(st.just("failure"), durations),
        st.tuples(st.just("ignored"), durations),
        st.tuples(st.just("unrecorded"), durations),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 0.4, 0.5, 1.0, 1.7, 3.0, 10.0])),
        st.tuples(st.just("tick")),
        st.tuples(st.sampled_from(["force_open", "release", "disable", "reset"])),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(cfg=configs, ops=operations, start=st.sampled_from([0.0, 0.3, 1234.9]))
def test_breaker_agrees_with_reference_model(cfg, ops, start):
    b, ref, now = CircuitBreaker("prop", cfg), Reference(cfg), start
    for op in ops:
        kind = op[0]
        moved: tuple[object, object] = (None, None)
        if kind == "acquire":
            assert b.try_acquire(now) == ref.try_acquire(now)
        elif kind == "success":
            t = b.on_success(op[1], now)
            moved = (t and t.to_state.value, ref.record(False, op[1] > 1.0, now))
        elif kind == "failure":
            t = b.on_error(Boom("x"), op[1], now)
            moved = (t and t.to_state.value, ref.record(True, op[1] > 1.0, now))
        elif kind == "unrecorded":
            t = b.on_error(ValueError("x"), op[1], now)
            moved = (t and t.to_state.value, ref.record(False, op[1] > 1.0, now))
        elif kind == "ignored":
            assert b.on_error(Benign("x"), op[1], now) is None
            ref.ignored()
        elif kind == "advance":
            now += op[1]
        elif kind == "tick":
            t = b.tick(now)
            moved = (t and t.to_state.value, ref.tick(now))
        else:
            t = getattr(b, {"force_open": "force_open", "release": "release_forced",
                            "disable": "disable", "reset": "reset"}[kind])(
                *(("test", now) if kind == "force_open" else (now,)))
            moved = (t and t.to_state.value, ref.manual(kind, now))
        assert moved[0] == moved[1], op
        calls, failed, slow, fr, sr = ref.rates(now)
        assert b.snapshot(now) == Snapshot(State(ref.state), fr, sr, calls, failed, slow, ref.not_permitted), op
        assert b.wait_remaining(now) == ref.wait_remaining(now)
        assert b.transitions[-1:] == [] or b.transitions[-1].to_state is b.state
