"""The faust app: topics, changelogged RocksDB tables, agents and web views, built from Settings.

`create_runtime` builds everything from one Settings object instead of at import time, so that a
process can hold apps with different settings (tests, benchmarks) and agents stay plain functions
that receive what they need.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import faust

from schemas.records import BreakerState, ValidationLimits
from streams.core.patterns import PatternConfig, load_kernels
from streams.core.resilience.breaker import wire_state
from streams.core.resilience.health import HealthTracker
from streams.core.resilience.limits import Limits
from streams.kafka.transport import TunedTransport
from streams.service import broker_watch
from streams.service.emit import Emitter
from streams.service.guard import FaultInjector, Guard
from streams.service.metrics import Metrics, faust_sensor
from streams.service.settings import Settings
from streams.state.changelog import Changelog
from streams.state.checkpoint import Checkpoint
from streams.state.journal import Journal
from streams.state.optimizations import OptimizationStore
from streams.state.patterns import PatternStore, Prefixed, RecentInteractions, RecentRecognitions


@dataclass
class Runtime:
    """What agents and views share. One per worker process."""

    settings: Settings
    app: faust.App
    store: PatternStore
    optimizations: OptimizationStore
    recent: RecentRecognitions
    recent_interactions: RecentInteractions
    checkpoint: Checkpoint
    limits: ValidationLimits
    metrics: Metrics
    emit: Emitter
    guard: Guard
    health: HealthTracker = field(default_factory=HealthTracker)
    started: float = field(default_factory=time.time)
    broker: Any = None  # streams.service.broker_watch.BrokerWatch: is a broker reachable, since when


def rocksdb_options(settings: Settings) -> dict:
    # faust pops keys from this dict, so every table gets its own copy.
    return {
        "driver": "rocksdict",
        "block_cache_size": settings.rocksdb_block_cache_bytes,
        "block_cache_compressed_size": settings.rocksdb_block_cache_bytes // 4,
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "max_open_files": 256,
    }


def _broker_credentials(settings: Settings):
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism,
            ssl_context=_ssl_context(settings),
        )
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        return faust.SSLCredentials(_ssl_context(settings))
    return None


def _ssl_context(settings: Settings):
    if settings.security_protocol not in {"SSL", "SASL_SSL"}:
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=settings.ssl_cafile or None,
        certfile=settings.ssl_certfile or None,
        keyfile=settings.ssl_keyfile or None,
    )


class MemoryApp(TunedTransport, faust.App):
    """faust's app with the tuned transport (streams.kafka.transport)."""


# The pattern-memory worker's guarded operations; the extraction role adds "inference".
GUARDED_OPERATIONS = ("learn", "interaction", "send")


def breaker_publisher(settings: Settings, metrics: Metrics, emit: Emitter):
    """Each breaker transition (and heartbeat) to fms.breaker-state and the fms_breaker_state gauge."""
    async def publish(operation: str, state, snapshot, reason: str | None) -> None:
        wire = wire_state(state)
        for name in ("closed", "open", "half_open"):
            metrics.breaker_state.labels(operation=operation, state=name).set(1 if name == wire else 0)
        if reason is not None:
            metrics.breaker_transitions.labels(operation=operation, state=state.value).inc()
        record = BreakerState(worker=settings.worker, operation=operation, state=wire,
                              failure_rate=snapshot.failure_rate, slow_call_rate=snapshot.slow_call_rate,
                              calls=snapshot.calls, reason=reason, ts=time.time())
        await emit.send("breaker-state", record.key, record, guarded=False)

    return publish


def create_guard(settings: Settings, metrics: Metrics, emit: Emitter, operations) -> Guard:
    """The worker's breakers, one per operation, publishing their state; `emit`'s sends are guarded."""
    guard = Guard(settings.worker, settings.breaker_config(), max_attempts=settings.breaker_max_attempts,
                  publish=breaker_publisher(settings, metrics, emit),
                  injector=FaultInjector(settings.fault_inject) if settings.fault_inject else None)
    for operation in operations:
        guard.breaker(operation)
        for state in ("closed", "open", "half_open"):  # every series from the start
            metrics.breaker_state.labels(operation=operation, state=state).set(1 if state == "closed" else 0)
    emit.guard = guard
    return guard


def create_app(settings: Settings, metrics: Metrics, app_id: str | None = None) -> MemoryApp:
    """The faust app with the project's broker, producer and web configuration, serving /metrics.

    Every worker role builds its app here; a role other than the pattern memory passes its own
    `app_id`, so that it is a consumer group of its own.
    """
    from streams.kafka.transport import KeyPartitioner

    app = MemoryApp(
        settings.memory_app_id if app_id is None else app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",")],
        broker_credentials=_broker_credentials(settings),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_min_bytes=settings.fetch_min_bytes,
        store="rocksdb://",
        datadir=str(settings.state_dir if app_id is None else settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
        processing_guarantee="at_least_once",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        # Outputs and changelog writes of a burst share produce requests instead of one each.
        producer_linger_ms=settings.producer_linger_ms,
        producer_partitioner=KeyPartitioner(),
        producer_max_batch_size=256 * 1024,
        # A poll's records reach the memory's buffer before it can pause a partition
        # (agents.memory): this bounds what one poll adds (Kafka's own default).
        broker_max_poll_records=500,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Other workers forward /recognize and /patterns here: the address they can reach.
        canonical_url=settings.advertised_url,
        # Raw table contents and internal routing stay private: /patterns answers through the core.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        autodiscover=False,
    )
    if settings.faust_sensor:
        faust_sensor(app, metrics, "/metrics")
    else:
        metrics.serve(app, "/metrics")
    return app


def create_runtime(settings: Settings) -> Runtime:
    metrics = Metrics.create()
    app = create_app(settings, metrics)

    def table(name: str) -> faust.Table:
        # bytes in, bytes out: schemas.state owns the encoding.
        return app.Table(name, default=None, partitions=settings.partitions,
                         key_type=bytes, value_type=bytes, options=rocksdb_options(settings))

    # Before the first record: a space's first choice would otherwise load (or compile) them.
    load_kernels()
    pattern_cfg = PatternConfig(
        match_threshold=settings.match_threshold,
        max_patterns=settings.max_patterns,
        confidence_threshold=settings.confidence_threshold,
    )
    limits = Limits(
        max_memory_bytes=settings.max_memory_bytes,
        cleanup_patterns=settings.cleanup_patterns,
        cleanup_memory_bytes=settings.cleanup_memory_bytes,
        cleanup_interval_s=settings.cleanup_interval_s,
        max_pattern_size=settings.max_dim,
    )
    changelog = Changelog(table("memory"))
    memory = Journal(changelog)
    store = PatternStore(Prefixed(memory, "p/"), Prefixed(memory, "s/"), pattern_cfg, limits,
                         thresholds=settings.thresholds(),
                         observe_write=metrics.storage_seconds.labels(operation="write").observe)
    optimizations = OptimizationStore(Prefixed(memory, "o/"), Prefixed(memory, "oi/"), settings.optimization_config(),
                                      observe_write=metrics.storage_seconds.labels(operation="optimization").observe)
    # rq/ and iq/: rings of entries. Before, r/ and i/ held an entry per id (still read) and rp/ and
    # ip/ their rings of ids (rr/ and ir/ one slot per key before that); such keys are left alone.
    recent = RecentRecognitions(Prefixed(memory, "r/"), Prefixed(memory, "rq/"), settings.recent_recognitions)
    recent_interactions = RecentInteractions(Prefixed(memory, "i/"), Prefixed(memory, "iq/"),
                                             settings.recent_recognitions)

    emit = Emitter(app, settings, metrics)
    guard = create_guard(settings, metrics, emit, GUARDED_OPERATIONS)
    checkpoint = Checkpoint(memory, changelog, caches=(store, optimizations, recent, recent_interactions),
                            send=lambda flush: guard.call("send", flush, emit.send_encoded))

    runtime = Runtime(
        broker=broker_watch.install(settings),
        settings=settings,
        app=app,
        store=store,
        optimizations=optimizations,
        recent=recent,
        recent_interactions=recent_interactions,
        checkpoint=checkpoint,
        limits=ValidationLimits(max_dim=settings.max_dim),
        metrics=metrics,
        emit=emit,
        guard=guard,
    )

    # A rebalance can hand a space to another worker and back: never match against a stale index.
    @app.on_partitions_revoked.connect
    async def _on_revoked(sender, revoked, **kwargs) -> None:
        checkpoint.forget()

    @app.on_partitions_assigned.connect
    async def _on_assigned(sender, assigned, **kwargs) -> None:
        store.invalidate()

    # Assignment comes before faust restores the table: an index built from a half-restored table
    # (a query during recovery) must not outlive it.
    @app.on_rebalance_complete.connect
    async def _on_restored(sender, **kwargs) -> None:
        checkpoint.forget()

    from agents import memory as memory_agent
    from streams.service import resources, web

    memory_agent.register(runtime)
    resources.register(runtime)
    web.register(runtime)
    broker_watch.register(runtime, runtime.broker)
    return runtime
