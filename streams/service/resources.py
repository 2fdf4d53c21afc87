"""Resource sampling: psutil readings and the state's memory estimate, every few seconds.

Each sample updates the Prometheus gauges, feeds the health tracker (streams.core.resilience.health) and is
published on fms.resource-metrics, keyed by worker.
"""
from __future__ import annotations

import time

import psutil

from schemas.records import ResourceMetrics
from streams.core.resilience.breaker import shed_load
from streams.core.resilience.health import LEVELS, Sample


def _total(registry, name: str) -> float:
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == name)


class ResourceSampler:
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first reading only starts the interval
        self._last_in = 0.0
        self._last_err = 0.0
        self._cores = psutil.cpu_count() or 1
        self.shed: tuple[bool, str] = (False, "no sample yet")

    def sample(self) -> ResourceMetrics:
        rt = self.runtime
        m = rt.metrics
        rss = self.process.memory_info().rss
        cpu = self.process.cpu_percent(None)
        estimate = rt.store.memory_estimate_bytes()
        patterns = sum(rt.store.counts().values())
        optimizations = sum(rt.optimizations.counts().values())
        records_in = _total(m.registry, "fms_records_in_total")
        errors = _total(m.registry, "fms_errors_total")
        handled = records_in - self._last_in
        error_rate = (errors - self._last_err) / handled if handled > 0 else 0.0
        self._last_in, self._last_err = records_in, errors

        memory_percent = 100.0 * estimate / rt.settings.max_memory_bytes
        status = rt.health.observe(Sample(cpu_percent=cpu, memory_percent=memory_percent, error_rate=error_rate))
        broker = getattr(rt, "broker", None)
        if broker is not None:  # the gauge and the record say what /health says about the broker too
            status = max(status, broker.health()["status"], key=LEVELS.index)
        # Shedding judges the worker's share of the machine: a single-threaded worker at 100% of
        # one core out of several is busy, not overloading the host.
        self.shed = shed_load(cpu / self._cores, memory_percent, error_rate, rt.health.cfg, rt.guard.shedding)
        m.memory_estimate_bytes.set(estimate)
        m.patterns.set(patterns)
        # Spaces move between workers: show the ones held now, none that left.
        m.space_threshold.clear()
        for space, threshold in rt.store.thresholds().items():
            m.space_threshold.labels(space=space).set(threshold)
        m.optimizations.set(optimizations)
        for level in LEVELS:
            m.health.labels(status=level).set(1 if level == status else 0)
        return ResourceMetrics(worker=rt.settings.worker, rss_bytes=rss, cpu_percent=cpu,
                               memory_estimate_bytes=estimate, patterns=patterns, optimizations=optimizations,
                               health=status, ts=time.time())


def register(runtime) -> None:
    sampler = ResourceSampler(runtime)

    @runtime.app.timer(runtime.settings.resource_interval_s)
    async def publish_resources() -> None:
        record = sampler.sample()
        if runtime.settings.shed_load:
            await runtime.guard.shed(*sampler.shed)
        await runtime.guard.heartbeat()
        await runtime.emit.send("resource-metrics", record.worker, record, guarded=False)
