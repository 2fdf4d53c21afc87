"""The contract's topics and the configuration the project creates them with.

Topics are created before a worker or a publisher touches them (`ensure_topics`), so that they
never come from the broker's auto-creation with the wrong partition count or cleanup policy.
Inputs are keyed by space and must have the same partition count as the tables' changelogs:
that is what keeps all of one space's records and state on one worker.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.service.settings import Settings

INPUTS = ("audio", "audio-features", "interactions")
OUTPUTS = ("recognitions", "patterns", "optimizations", "breaker-state", "resource-metrics", "dead-letter")

# Seven days for output streams that are events rather than state.
_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    p = settings.partitions
    # Inputs keep their history for replays, and take their timestamps from the broker at append:
    # the memory merges its inputs in timestamp order (streams.core.sequence), which is then the
    # order they were appended in, whatever the producers' clocks say.
    keep = {"cleanup.policy": "delete", "retention.ms": str(settings.input_retention_ms),
            "message.timestamp.type": "LogAppendTime"}
    events = {"cleanup.policy": "delete", "retention.ms": str(_WEEK_MS)}
    # Keyed state: the newest value of a key is the truth, and a tombstone deletes it.
    compact = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}
    configs = {
        "audio": keep,
        "audio-features": keep,
        "interactions": keep,
        "recognitions": events,
        "patterns": compact,
        "optimizations": compact,
        "breaker-state": compact,
        "resource-metrics": events,
        "dead-letter": {"cleanup.policy": "delete", "retention.ms": str(4 * _WEEK_MS)},
    }
    specs = [TopicSpec(settings.topic(name), p, dict(cfg)) for name, cfg in configs.items()]
    # fms.control (streams.ops.generation): one key, read whole by every worker; one partition keeps it ordered.
    return specs + [TopicSpec(settings.topic("control"), 1, dict(compact))]


def kafka_client_options(settings: Settings) -> dict:
    """aiokafka keyword arguments for the same security settings the worker uses."""
    opts: dict = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": settings.security_protocol}
    if settings.sasl_mechanism:
        opts.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
    return opts


async def ensure_topics(settings: Settings, timeout: float = 30.0, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the contract topics (or `specs`) that do not exist yet. Returns the names it created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in (topic_specs(settings) if specs is None else specs) if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config) for s in missing]
            )
            await _wait_for_metadata(admin, {s.name for s in missing}, timeout)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def delete_topics(settings: Settings, select: Iterable[str] | Callable[[str], bool]) -> list[str]:
    """Delete the topics `select` names, or every topic whose name it accepts, that exist; returns the
    names it deleted. For the demo and the benchmarks, which leave nothing of a run on a shared broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        wanted = select if callable(select) else set(select).__contains__  # as metadata.partitions_of
        doomed = sorted(t for t in await admin.list_topics() if wanted(t))
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


async def _wait_for_metadata(admin, names: set[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not names <= set(await admin.list_topics()):
        if loop.time() > deadline:
            raise TimeoutError(f"topics not visible after {timeout}s: {sorted(names)}")
        await asyncio.sleep(0.1)
