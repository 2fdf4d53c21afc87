"""The async guard around the breaker, with plain coroutines: no broker, no faust."""
from __future__ import annotations

import asyncio

import pytest

from streams.core.resilience.breaker import BreakerConfig, State
from streams.service.guard import FaultInjector, Guard, GuardGaveUp, InjectedFault

FAST = BreakerConfig(sliding_window_size=4, minimum_number_of_calls=2, failure_rate_threshold=0.5,
                     wait_duration_in_open_s=0.05, permitted_calls_in_half_open=1)


class Flaky:
    """Fails with `exc` for its first `failures` calls, then returns the call number."""

    def __init__(self, failures: int, exc: type[Exception] = OSError) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return self.calls


def guard_with_log(**kw) -> tuple[Guard, list]:
    published: list = []

    async def publish(operation, state, snapshot, reason):
        published.append((operation, state, reason))

    return Guard("w1", FAST, publish=publish, max_backoff_s=0.05, **kw), published


def test_a_transient_outage_waits_it_out_through_open_and_half_open():
    guard, published = guard_with_log(max_attempts=2)
    flaky = Flaky(failures=6, exc=ConnectionError)
    assert asyncio.run(guard.call("send", flaky)) == 7, "retried past max_attempts: an outage is not the record's fault"
    states = [s for _, s, _ in published]
    assert states[0] is State.OPEN and State.HALF_OPEN in states and states[-1] is State.CLOSED
    assert all(reason for _, _, reason in published)
    assert guard.breaker("send").state is State.CLOSED


def test_a_record_that_keeps_failing_is_given_up_after_max_attempts():
    guard, _ = guard_with_log(max_attempts=3)
    flaky = Flaky(failures=100, exc=ValueError)
    with pytest.raises(GuardGaveUp) as info:
        asyncio.run(guard.call("learn", flaky))
    assert info.value.attempts == 3 and flaky.calls == 3
    assert isinstance(info.value.__cause__, ValueError)


def test_no_call_is_made_while_the_breaker_is_open():
    guard, _ = guard_with_log()
    breaker = guard.breaker("learn")
    breaker.force_open("test", 0.0)
    calls = Flaky(failures=0)

    async def go():
        task = asyncio.create_task(guard.call("learn", calls))
        await asyncio.sleep(0.2)
        assert calls.calls == 0 and not task.done(), "the record waits while the breaker is forced open"
        breaker.release_forced(0.0)
        return await task

    assert asyncio.run(go()) == 1


def test_shedding_forces_every_breaker_open_and_releases_them():
    guard, published = guard_with_log()
    guard.breaker("learn"), guard.breaker("send")

    async def go():
        await guard.shed(True, "cpu 95% > 80%")
        assert {guard.breaker(o).state for o in ("learn", "send", "later")} == {State.FORCED_OPEN}
        await guard.shed(True, "still")  # no change, nothing published
        n = len(published)
        await guard.shed(False, "recovered")
        return n

    n = asyncio.run(go())
    assert n == 2 and all("load shedding" in r for _, _, r in published[:2])
    assert {guard.breaker(o).state for o in ("learn", "send")} == {State.CLOSED}


def test_heartbeat_publishes_every_breaker_without_a_reason():
    guard, published = guard_with_log()
    guard.breaker("learn"), guard.breaker("send")
    asyncio.run(guard.heartbeat())
    assert published == [("learn", State.CLOSED, None), ("send", State.CLOSED, None)]


def test_awaitable_operations_and_the_fault_injector():
    clock = [0.0]
    injector = FaultInjector("learn:2, send:0", clock=lambda: clock[0])
    guard, _ = guard_with_log(injector=injector)

    async def op():
        return "ok"

    assert asyncio.run(guard.call("send", op)) == "ok"  # a zero-second fault never fires
    with pytest.raises(InjectedFault):
        injector.check("learn")
    clock[0] = 2.5
    injector.check("learn")  # over
    assert not FaultInjector("") and FaultInjector("x:1")
    with pytest.raises(ValueError):
        Guard("w", FAST, max_attempts=0)


def test_a_resource_constraint_is_not_retried():
    from streams.core.resilience.limits import ResourceConstraintError

    guard, _ = guard_with_log(max_attempts=5)
    calls = []

    def over_budget():
        calls.append(1)
        raise ResourceConstraintError("max_memory_bytes", 2e6, 1e6)

    with pytest.raises(GuardGaveUp) as info:
        asyncio.run(guard.call("learn", over_budget))
    assert len(calls) == 1 and isinstance(info.value.__cause__, ResourceConstraintError)
