"""Health levels from resource samples, and the hysteresis that keeps them from flapping."""
from __future__ import annotations

from streams.core.resilience.health import HealthConfig, HealthTracker, Sample, judge

OK = Sample(cpu_percent=20, memory_percent=30, error_rate=0.0)
HOT = Sample(cpu_percent=85, memory_percent=30, error_rate=0.0)        # above 80
EDGE = Sample(cpu_percent=75, memory_percent=30, error_rate=0.0)       # below 80, above 72 (recovery band)
BURNING = Sample(cpu_percent=20, memory_percent=30, error_rate=0.5)   # error rate above 0.12 = 0.1 * 1.2
FULL = Sample(cpu_percent=10, memory_percent=100, error_rate=0.0)


def test_judge_levels_and_reasons():
    cfg = HealthConfig()
    assert judge(OK, cfg) == ("healthy", "within thresholds")
    assert judge(HOT, cfg)[0] == "degraded" and "cpu" in judge(HOT, cfg)[1]
    assert judge(BURNING, cfg)[0] == "unhealthy"
    assert judge(Sample(100, 10, 0.0), cfg)[0] == "degraded", "CPU alone only degrades"
    assert judge(FULL, cfg)[0] == "unhealthy"
    assert judge(Sample(10, 10, 0.5), cfg)[0] == "unhealthy"


def test_one_spike_does_not_degrade():
    t = HealthTracker()
    assert [t.observe(s) for s in (OK, HOT, OK, HOT, OK)] == ["healthy"] * 5


def test_sustained_load_degrades_and_recovery_needs_the_band():
    t = HealthTracker()
    assert [t.observe(s) for s in (HOT, HOT)] == ["healthy", "degraded"]
    # Just below the threshold is not yet recovered: it must drop under 90% of it, three times.
    assert [t.observe(EDGE) for _ in range(5)] == ["degraded"] * 5
    assert [t.observe(OK) for _ in range(3)] == ["degraded", "degraded", "healthy"]


def test_unhealthy_and_back_step_by_step():
    t = HealthTracker(HealthConfig(worse_after=1, better_after=1))
    assert t.observe(BURNING) == "unhealthy"
    assert t.observe(HOT) == "degraded"
    assert t.observe(OK) == "healthy"
