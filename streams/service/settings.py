"""Worker settings, read once from the environment.

Each setting is declared once, as a field of :class:`Settings` (its name, type, default, and a
comment where the name does not say it all); its variable is FMS_<NAME> (the Kafka client's keep
Kafka's KAFKA_* names) and :meth:`Settings.from_env` parses it by its type. Every default works on a
developer machine with the local broker from infra/. README.md's settings table documents each one:
tests/unit/service/test_settings_errors.py checks the table against these declarations.
"""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

from streams.core.resilience.breaker import BreakerConfig
from streams.core.generations import app_id_of
from streams.core.optimizations import OptimizationConfig
from streams.core.patterns import PatternConfig


class SettingsError(ValueError):
    """An environment variable's value this worker cannot use: the message names it and what is accepted."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number, e.g. {name}={default}") from None


def _float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise SettingsError(f"{name}={raw!r}: expected a number, e.g. {name}={default}")
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(name: str, default: bool) -> bool:
    raw = _env(name, "1" if default else "0")
    word = raw.strip().lower()
    if word == "":  # set but empty: as if unset
        return default
    if word not in _TRUE | _FALSE:
        raise SettingsError(f"{name}={raw!r}: expected one of 1, 0, true, false, yes, no, on, off")
    return word in _TRUE


def _seconds_or_forever(name: str) -> float | None:
    """A duration in seconds (>= 0), or None for no limit: unset, empty, "forever" or "inf"."""
    raw = _env(name, "")
    word = raw.strip().lower()
    if word in {"", "forever", "inf", "infinity", "none"}:
        return None
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too
        raise SettingsError(f"{name}={raw!r}: expected seconds (a number >= 0) or 'forever', e.g. {name}=60")
    return None if math.isinf(value) else value


def threshold_value(name: str, text: str) -> float | None:
    """A match threshold setting: a number in [-1, 1], or "auto" (None: calibrated per space)."""
    text = text.strip()
    if text.lower() in {"auto", "none", ""}:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not -1.0 <= value <= 1.0:
        raise SettingsError(f"{name}={text!r}: expected a number in [-1, 1] or 'auto'")
    return value


def parse_space_thresholds(text: str) -> dict[str, float | None]:
    """"space=0.9,other=auto" -> {"space": 0.9, "other": None}."""
    out: dict[str, float | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        space, sep, value = item.rpartition("=")
        if not sep or not space.strip():
            raise SettingsError(f"FMS_SPACE_THRESHOLDS: {item!r} is not space=threshold (a number or 'auto')")
        out[space.strip()] = threshold_value(f"FMS_SPACE_THRESHOLDS[{space.strip()}]", value)
    return out


@dataclass(frozen=True)
class Settings:
    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "fms."
    app_id: str = "feature-memory"
    # Which copy of the memory's state this worker runs (streams.ops.generation); None: the current one,
    # read from fms.control when the worker starts.
    generation: int | None = None
    partitions: int = 4
    replication_factor: int = 1
    # -1 keeps input history forever, so that `fms replay` can rebuild the memory from the start.
    input_retention_ms: int = -1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # How long the group waits for a silent worker before its partitions move: a killed worker's
    # spaces are down that long. Kafka's brokers accept 6 s and up by default.
    session_timeout_s: float = 10.0
    # How often the memory commits its state (Kafka Streams' commit.interval.ms): the writes held
    # since the last commit go to the changelog, and the pattern events to fms.patterns, once per
    # key in their newest state; then the records are acknowledged, and the consumer group's
    # offsets are committed as often. After a crash the records since the last commit are
    # delivered again and applied again, to the same state, and their recognitions are emitted
    # again: this bounds the duplicates a kill -9 leaves (about twice this many seconds of input)
    # and how late a pattern event is. Longer: fewer changelog messages and pattern events.
    # The spaces' commits are spread over the interval, each space's after half of it at least
    # (streams.core.commit_pacing).
    # 5 s, Quix Streams' default (faust's is 2.8 s, Kafka Streams' 30 s without transactions): the
    # record cache folds a pattern's changes over five times as many records as at 1 s. On
    # benchmarks/throughput.py's stream, 100,000 records: 1.49 messages per input against 2.63 at 1 s,
    # 801 against 996 us of worker CPU per record (benchmarks/README, 2026-12-05 14:37).
    # Recognitions do not wait for it, but a commit holds up the input while it runs: on one space at
    # 1,000/s, 30-100 ms every 5 s (p99 95.7 against 73.6 ms at 1 s; benchmarks/README, 18:10 and 19:40).
    commit_interval_s: float = 5.0
    # Writes held between two commits, at most (Kafka Streams' statestore.cache.max.bytes): more
    # commits at once.
    state_cache_max_bytes: int = 32 * 1024 * 1024
    # The consumer's fetch long-poll; see streams/kafka/transport.py for why it is short.
    fetch_max_wait_ms: int = 20
    # How much the broker gathers before it answers a fetch (at most fetch_max_wait_ms).
    fetch_min_bytes: int = 1
    # How long `fms worker` waits for a broker to answer before it gives up (exit 1); None: forever.
    broker_wait_s: float | None = None
    # State
    data_dir: Path = field(default_factory=lambda: Path("data"))
    rocksdb_block_cache_bytes: int = 8 * 1024 * 1024
    rocksdb_write_buffer_bytes: int = 4 * 1024 * 1024
    standby_replicas: int = 1
    # Web
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # How other workers reach this one (they forward /recognize and /patterns to the owner of a space).
    canonical_url: str = ""
    max_request_bytes: int = 1024 * 1024
    # faust's own Prometheus sensor: per-message bookkeeping that roughly halves peak throughput.
    faust_sensor: bool = True
    # Pattern memory
    # The core's own defaults, so that a worker learns exactly what the core does by default.
    # A number for every space, or None ("auto"): each space calibrates its own (streams.core.patterns.calibration).
    match_threshold: float | None = PatternConfig.match_threshold
    # Per-space overrides of match_threshold: "space=0.9,other=auto".
    space_thresholds: str = ""
    max_patterns: int = PatternConfig.max_patterns
    max_dim: int = 1000
    confidence_threshold: float = PatternConfig.confidence_threshold
    # Per space: see streams.core.resilience.limits.
    max_memory_bytes: int = 100 * 1024 * 1024
    cleanup_patterns: int = 800
    cleanup_memory_bytes: int = 80 * 1024 * 1024
    cleanup_interval_s: float = 86400.0
    # Optimizations (streams.core.optimizations): the core's own defaults again.
    effectiveness_threshold: float = OptimizationConfig.effectiveness_threshold
    min_support: int = OptimizationConfig.min_support
    max_optimizations: int = OptimizationConfig.max_optimizations
    cleanup_optimizations: int = OptimizationConfig.cleanup_optimizations
    optimization_retention_s: float = OptimizationConfig.retention_s
    transfer_discount: float = OptimizationConfig.transfer_discount
    own_evidence_threshold: int = OptimizationConfig.own_evidence_threshold
    reannounce_tolerance: float = OptimizationConfig.reannounce_tolerance
    reannounce_support_factor: float = OptimizationConfig.reannounce_support_factor
    # Recognitions kept per space for interactions that name their context by event_id (a ring
    # over the last N offsets of the space's partition).
    recent_recognitions: int = 65536
    # Records applied as one transaction per space at most; a batch forms from the records waiting
    # when it is taken (see apply_linger_ms). The transaction's journal
    # entry is one changelog message, which must stay under Kafka's 1 MB message limit: 64 records
    # that each create a 768-dimension pattern write about 0.4 MB.
    batch_max: int = 64
    # How long the first record of a batch waits for others to join it (Kafka's linger.ms, for the
    # memory). Records that come alone cost several times the CPU of records applied together
    # (benchmarks/README.md), so near its limit a worker without it spends itself on single-record
    # batches: at 1,000 records/s, 8 ms gave a lower p99 in 5 of 6 side-by-side rounds. 0: a batch
    # is only what is already waiting when the memory is free.
    apply_linger_ms: float = 8.0
    # The producer's linger.ms, for outputs and changelog messages.
    producer_linger_ms: int = 5
    # How long a record waits for the other input of its partition before it is applied out of
    # timestamp order (streams.core.sequence); the wait ends as soon as that input is caught up.
    max_idle_ms: int = 1000
    # Records held per input partition before it is paused (Kafka Streams'
    # buffered.records.per.partition): a backlog or a replay is read as fast as it is applied,
    # not into memory. Fetching resumes once half of them are applied.
    buffer_max: int = 1000
    # Circuit breakers (streams.service.guard, streams.core.resilience.breaker): resilience4j's settings.
    breaker_window: int = 20  # calls in the count-based sliding window
    breaker_min_calls: int = 5
    breaker_failure_rate: float = 0.5
    breaker_slow_call_s: float = 5.0
    breaker_slow_call_rate: float = 1.0
    breaker_wait_s: float = 1.0  # the design documents' resetTimeout
    breaker_half_open_calls: int = 3
    breaker_max_attempts: int = 5  # failed calls of one record before it is dead-lettered (not for outages)
    shed_load: bool = True  # force the breakers open while health samples are over their thresholds
    fault_inject: str = ""  # "operation:seconds,...": a drill, see streams.service.guard.FaultInjector
    # Seconds between resource samples (gauges, health, fms.resource-metrics).
    resource_interval_s: float = 5.0
    # Worker
    worker_name: str = ""
    log_level: str = "info"

    @classmethod
    def from_env(cls) -> "Settings":
        """Every field from its environment variable (:func:`env_name`), parsed by its type; an unset
        variable leaves the field's default. Each setting is declared once, as a field above."""
        return fields_from_env(cls, env_name, _PARSERS)

    def thresholds(self) -> dict[str, float | None]:
        """FMS_SPACE_THRESHOLDS as a map: space -> pinned threshold, or None (calibrated)."""
        return parse_space_thresholds(self.space_thresholds)

    def optimization_config(self) -> OptimizationConfig:
        return OptimizationConfig(
            effectiveness_threshold=self.effectiveness_threshold,
            min_support=self.min_support,
            max_optimizations=self.max_optimizations,
            cleanup_optimizations=self.cleanup_optimizations,
            retention_s=self.optimization_retention_s,
            transfer_discount=self.transfer_discount,
            own_evidence_threshold=self.own_evidence_threshold,
            reannounce_tolerance=self.reannounce_tolerance,
            reannounce_support_factor=self.reannounce_support_factor,
        )

    def breaker_config(self) -> BreakerConfig:
        return BreakerConfig(
            sliding_window_type="count",
            sliding_window_size=self.breaker_window,
            minimum_number_of_calls=self.breaker_min_calls,
            failure_rate_threshold=self.breaker_failure_rate,
            slow_call_rate_threshold=self.breaker_slow_call_rate,
            slow_call_duration_s=self.breaker_slow_call_s,
            wait_duration_in_open_s=self.breaker_wait_s,
            permitted_calls_in_half_open=self.breaker_half_open_calls,
        )

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def memory_app_id(self) -> str:
        """The pattern memory's faust app id: its consumer group and changelog topics, per generation."""
        return app_id_of(self.app_id, self.generation or 0)

    @property
    def state_dir(self) -> Path:
        """Where faust keeps this generation's RocksDB tables. faust's layout under its datadir
        (`v1/tables/<table>-<partition>.db`) does not name the app id, so each generation N >= 1 gets a
        directory beside `data_dir` of its own; generation 0 keeps `data_dir` itself."""
        if not self.generation:
            return self.data_dir
        return self.data_dir.with_name(f"{self.data_dir.name}-g{self.generation}")

    @property
    def advertised_url(self) -> str:
        if self.canonical_url:
            return self.canonical_url
        host = self.web_host if self.web_host not in {"0.0.0.0", "::", ""} else socket.gethostname()
        return f"http://{host}:{self.web_port}"

    @property
    def worker(self) -> str:
        return self.worker_name or f"{self.web_host}:{self.web_port}"

    def redacted(self) -> dict:
        """For logs and /health: never print credentials."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.name == "sasl_password" and value else str(value)
        return out


# The Kafka client's settings keep the variable names Kafka's own tools use; every other field
# `name` is read from FMS_<NAME>.
_KAFKA_NAMES = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_cafile": "KAFKA_SSL_CAFILE",
    "ssl_certfile": "KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "KAFKA_SSL_KEYFILE",
}


def env_name(field_name: str) -> str:
    """The environment variable of a Settings field."""
    return _KAFKA_NAMES.get(field_name, f"FMS_{field_name.upper()}")


# Parsers by declared type (the annotations are strings: `from __future__ import annotations`).
_BY_TYPE = {
    "str": _env,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "Path": lambda name, default: Path(_env(name, str(default))),
}
def fields_from_env(cls, name_of, parsers: dict | None = None):
    """An instance of the settings dataclass ``cls`` with every field read from its variable
    (``name_of(field name)``): by ``parsers[field name]`` when given, else by the field's declared
    type; an unset variable leaves the field's default."""
    values, defaults = {}, cls()
    for f in fields(cls):
        parse = (parsers or {}).get(f.name) or _BY_TYPE[f.type]
        values[f.name] = parse(name_of(f.name), getattr(defaults, f.name))
    return cls(**values)


# Fields whose values are more than their type says.
_PARSERS = {
    "generation": lambda name, default: _int(name, 0) if os.environ.get(name, "").strip() else default,
    "broker_wait_s": lambda name, default: _seconds_or_forever(name),
    "match_threshold": lambda name, default: threshold_value(name, _env(name, str(default))),
}
