"""Prometheus metrics of one worker, in their own registry so that tests can build several apps.

Names follow Prometheus' conventions: `fms_` prefix, base units, `_total` on counters.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas.records import OPTIMIZATION_EVENTS
from schemas.validation import ERROR_CODES
from streams.kafka.internals import faust_monitor
from streams.service.topics import INPUTS, OUTPUTS
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               generate_latest)

# What a worker counts errors of: applying records (learn, interaction), sending outputs, inference.
ERROR_OPERATIONS = ("learn", "interaction", "send", "inference")

# Recognition is sub-millisecond in process; the buckets resolve that range as well as slow outliers.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class Metrics:
    registry: CollectorRegistry
    records_in: Counter
    records_out: Counter
    errors: Counter
    dead_letters: Counter
    recognition_seconds: Histogram
    storage_seconds: Histogram
    interaction_seconds: Histogram
    optimization_events: Counter
    patterns: Gauge
    optimizations: Gauge
    spaces: Gauge
    space_threshold: Gauge
    memory_estimate_bytes: Gauge
    health: Gauge
    kafka_reachable: Gauge
    breaker_state: Gauge
    breaker_transitions: Counter
    sequence_held: Gauge
    sequence_released: Counter
    sequence_paused: Counter
    sequence_held_peak: Gauge
    gc_pause_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "Metrics":
        r = registry or CollectorRegistry()
        metrics = cls(
            registry=r,
            records_in=Counter("fms_records_in", "Input records consumed", ["topic"], registry=r),
            records_out=Counter("fms_records_out", "Output records produced", ["topic"], registry=r),
            errors=Counter("fms_errors", "Errors while processing a record", ["operation"], registry=r),
            dead_letters=Counter("fms_dead_letters", "Records sent to the dead-letter topic", ["code"], registry=r),
            recognition_seconds=Histogram(
                "fms_recognition_latency_seconds", "Time to recognize and learn one vector",
                buckets=_LATENCY_BUCKETS, registry=r,
            ),
            storage_seconds=Histogram(
                "fms_storage_operation_latency_seconds", "Time of one state-store operation",
                ["operation"], buckets=_LATENCY_BUCKETS, registry=r,
            ),
            interaction_seconds=Histogram(
                "fms_interaction_latency_seconds", "Time to apply one interaction (feedback and optimizations)",
                buckets=_LATENCY_BUCKETS, registry=r,
            ),
            optimization_events=Counter("fms_optimization_events", "Optimization records emitted", ["event"],
                                        registry=r),
            optimizations=Gauge("fms_optimizations", "Optimization memories (pattern, model) in spaces this "
                                "worker has applied interactions to", registry=r),
            patterns=Gauge("fms_patterns", "Patterns held in this worker's cached spaces", registry=r),
            spaces=Gauge("fms_spaces", "Spaces cached on this worker", registry=r),
            space_threshold=Gauge("fms_space_match_threshold", "The match threshold each space cached on this "
                                  "worker decides with (pinned, or calibrated from its stream)", ["space"], registry=r),
            memory_estimate_bytes=Gauge("fms_state_memory_estimate_bytes",
                                        "Estimated memory of the cached pattern state", registry=r),
            breaker_state=Gauge("fms_breaker_state", "1 for the current state of each operation's circuit breaker",
                                ["operation", "state"], registry=r),
            breaker_transitions=Counter("fms_breaker_transitions", "Circuit breaker state changes",
                                        ["operation", "state"], registry=r),
            sequence_held=Gauge("fms_sequence_held_records", "Input records waiting for their turn in the "
                                "timestamp-ordered sequence of their partition", registry=r),
            sequence_released=Counter("fms_sequence_idle_released", "Records taken out of timestamp order "
                                      "after waiting FMS_MAX_IDLE_MS for the other input", registry=r),
            sequence_paused=Counter("fms_sequence_paused", "Times an input partition was paused because "
                                    "FMS_BUFFER_MAX of its records were waiting", registry=r),
            sequence_held_peak=Gauge("fms_sequence_held_peak_records", "The most input records held at once "
                                     "since the worker started", registry=r),
            health=Gauge("fms_health_status", "1 for the worker's current health status", ["status"], registry=r),
            kafka_reachable=Gauge("fms_kafka_reachable", "1 while a broker answers the worker's probe, 0 during "
                                  "an outage (streams.service.broker_watch)", registry=r),
            gc_pause_seconds=Histogram("fms_gc_pause_seconds", "Time of one cyclic garbage collection, by the "
                                       "oldest generation it collected (2: a full collection)", ["generation"],
                                       buckets=_LATENCY_BUCKETS, registry=r),
        )
        # CPU seconds, resident memory, open descriptors and the rest, by Prometheus' own names.
        ProcessCollector(registry=r)
        # Every series exists from the start, so a query (and a dashboard panel) never mistakes "no
        # sample yet" for no data: each label value a worker can report, at 0.
        for status, value in (("healthy", 1), ("degraded", 0), ("unhealthy", 0)):
            metrics.health.labels(status=status).set(value)
        for topic in INPUTS:
            metrics.records_in.labels(topic=topic)
        for topic in OUTPUTS:
            metrics.records_out.labels(topic=topic)
        for operation in ERROR_OPERATIONS:
            metrics.errors.labels(operation=operation)
        for code in sorted(ERROR_CODES):
            metrics.dead_letters.labels(code=code)
        for event in OPTIMIZATION_EVENTS:
            metrics.optimization_events.labels(event=event)
        for operation in ("write", "optimization"):
            metrics.storage_seconds.labels(operation=operation)
        metrics.kafka_reachable.set(1)  # the worker reached a broker before it started
        return metrics

    def watch_gc(self) -> Callable[[], None]:
        """Time every collection of this process into `gc_pause_seconds`; returns the way to stop.
        Once per process: the collector's callbacks are process-wide."""
        by_generation = [self.gc_pause_seconds.labels(generation=str(g)) for g in range(3)]
        started = [0.0]

        def on_collect(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                by_generation[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(on_collect)
        return lambda: gc.callbacks.remove(on_collect)

    def serve(self, app, path: str) -> None:
        """/metrics without faust's sensor (which registers its own view when enabled)."""
        registry = self.registry

        @app.page(path)
        async def metrics_view(view, request):
            return view.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def faust_sensor(app, metrics: Metrics, path: str) -> None:
    """faust's own Prometheus sensor in the worker's registry, served with it at ``path``.

    faust's ``setup_prometheus_sensors`` names one series ``<prefix>_events_runtime_ms``, which
    ``promtool check metrics`` rejects (an abbreviated unit) and which is in milliseconds where
    Prometheus' base unit is seconds: streams.kafka.internals.faust_monitor builds faust's metric set
    with ``fms_faust_events_runtime_seconds`` in that one's place.
    """
    seconds = Histogram("fms_faust_events_runtime_seconds", "Time an agent takes over one event",
                        buckets=_LATENCY_BUCKETS, registry=metrics.registry)
    app.monitor = faust_monitor(metrics.registry, "fms_faust", seconds)
    metrics.serve(app, path)
