"""Generations of the memory's state on Kafka: the control topic, the watcher inside each worker, the
switch of a worker to a newer generation, and listing and dropping generations.

`fms.control` holds one key, "generation", whose newest value (schemas.records.GenerationControl)
says which generation clients follow and which one `fms replay` (streams.ops.replay) is building. A
worker follows it: while its own generation is not the current one its memory outputs go to shadow
topics; when a newer generation is switching in, it stops cleanly (faust commits its offsets), waits
until that generation is current, and runs again as that generation (`os.execv` of its own command
line), so that a service switches without a supervisor.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from schemas.codec import decode, encode
from schemas.records import GenerationControl
from streams.core.generations import (
    SHADOWED,
    app_id_of,
    generation_of_app_id,
    generation_of_app_topic,
    generation_of_shadow,
    shadow_name,
)
from streams.kafka.internals import delete_group
from streams.service.settings import Settings
from streams.service.topics import TopicSpec, ensure_topics, kafka_client_options, topic_specs

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the control topic


def control_topic(settings: Settings) -> str:
    return settings.topic("control")


def current_of(control: GenerationControl | None) -> int:
    return 0 if control is None else control.current


async def read_control(settings: Settings, timeout: float = 30.0) -> GenerationControl | None:
    """The newest valid control record, None when the topic has none."""
    from streams.ops.publish import read_topic

    newest = None
    for key, raw in await read_topic(settings, control_topic(settings), timeout=timeout):
        if key != GenerationControl.KEY or raw is None:
            continue
        decoded = decode("control", raw)
        if decoded.ok:
            newest = decoded.record
        else:
            log.error("ignoring an invalid %s record: %s", control_topic(settings), decoded.result.errors)
    return newest


async def write_control(settings: Settings, generation: int, state: str, previous: int | None) -> GenerationControl:
    from aiokafka import AIOKafkaProducer

    record = GenerationControl(generation=generation, state=state, previous=previous, ts=time.time())
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(control_topic(settings), key=record.KEY.encode(), value=encode(record))
    finally:
        await producer.stop()
    log.info("%s: generation %d %s (previous %s)", control_topic(settings), generation, state, previous)
    return record


def shadow_specs(settings: Settings, generation: int) -> list[TopicSpec]:
    """The shadow topics of a generation, configured like the contract topics they stand in for."""
    shadowed = {settings.topic(name) for name in SHADOWED}
    return [dataclasses.replace(s, name=shadow_name(s.name, generation)) for s in topic_specs(settings)
            if s.name in shadowed]


# --------------------------------------------------------------------------- inside a worker


class GenerationWatcher:
    """Follows fms.control inside a worker: routes its outputs, and stops it for a newer generation."""

    def __init__(self, settings: Settings, emit) -> None:
        self.settings = settings
        self.generation = settings.generation or 0
        self.emit = emit
        self.switch_to: int | None = None

    def apply(self, control: GenerationControl | None) -> bool:
        """Route outputs for `control`; True when this worker must stop for a newer generation."""
        current = current_of(control)
        self.emit.shadow = None if current == self.generation else self.generation
        if control is not None and control.generation > self.generation and control.state in ("switching", "current"):
            self.switch_to = control.generation
            return True
        return False

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        # No group: every worker reads the whole (one-key, compacted) topic and keeps no offsets.
        consumer = AIOKafkaConsumer(**kafka_client_options(self.settings), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        tp = TopicPartition(control_topic(self.settings), 0)
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for message in batch.get(tp, []):
                    decoded = decode("control", message.value)
                    if decoded.ok and self.apply(decoded.record):
                        log.warning("generation %d is switching in; generation %d stops (its offsets are "
                                    "committed) and runs again as the new one once it is current",
                                    self.switch_to, self.generation)
                        # The same clean stop an operator's SIGTERM gives: agents stop, offsets commit.
                        os.kill(os.getpid(), signal.SIGTERM)
                        return
        finally:
            await consumer.stop()


def register(runtime, control: GenerationControl | None) -> GenerationWatcher:
    """Route the runtime's outputs for `control` now (before any record is processed) and follow the
    control topic from the worker's start on."""
    watcher = GenerationWatcher(runtime.settings, runtime.emit)
    watcher.apply(control)

    @runtime.app.task
    async def watch_generations() -> None:
        await watcher.run()

    return watcher


async def resolve_generation(settings: Settings) -> tuple[Settings, GenerationControl | None]:
    """`settings` with its generation set (FMS_GENERATION, or the current one), the control record, and
    the generation's shadow topics created when it is not the current one."""
    control = await read_control(settings)
    generation = current_of(control) if settings.generation is None else settings.generation
    if generation != current_of(control):
        await ensure_topics(settings, specs=shadow_specs(settings, generation))
    return dataclasses.replace(settings, generation=generation), control


async def wait_for_switch(settings: Settings, target: int, own: int, poll_s: float = 1.0) -> int:
    """After stopping for generation `target`: the generation to run next, once `target` (or a newer
    one) is current, or `own` again if the switch was called off (the replay gave up)."""
    while True:
        control = await read_control(settings)
        if control is not None and control.current >= target:
            return control.current
        if control is not None and control.current == own and control.state == "replaying" \
                and control.generation == target:
            return own
        await asyncio.sleep(poll_s)


def run_as(generation: int) -> None:
    """Replace this process with the same command line, as `generation`."""
    os.environ["FMS_GENERATION"] = str(generation)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


# --------------------------------------------------------------------------- listing and dropping


@dataclass
class GenerationInfo:
    generation: int
    app_id: str
    state: str  # "current", "replaying", "switching", or "old"
    app_topics: list[str] = field(default_factory=list)  # changelogs and faust's own topics
    shadow_topics: list[str] = field(default_factory=list)
    group: bool = False  # its consumer group exists

    def describe(self) -> str:
        return (f"g{self.generation}  {self.state:<9}  app id {self.app_id}  group {'yes' if self.group else 'no'}  "
                f"{len(self.app_topics)} changelog/app topics  {len(self.shadow_topics)} shadow topics")


async def list_generations(settings: Settings) -> list[GenerationInfo]:
    from aiokafka.admin import AIOKafkaAdminClient

    control = await read_control(settings)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        topics = sorted(await admin.list_topics())
        groups = {group for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    found: dict[int, GenerationInfo] = {}

    def info(n: int) -> GenerationInfo:
        if n not in found:
            found[n] = GenerationInfo(n, app_id_of(settings.app_id, n), "old")
        return found[n]

    for topic in topics:
        n = generation_of_app_topic(settings.app_id, topic)
        if n is not None:
            info(n).app_topics.append(topic)
        n = generation_of_shadow(settings.topic_prefix, topic)
        if n is not None:
            info(n).shadow_topics.append(topic)
    for group in groups:
        n = generation_of_app_id(settings.app_id, group)
        if n is not None:
            info(n).group = True
    info(current_of(control)).state = "current"
    if control is not None and control.state != "current":
        info(control.generation).state = control.state
    return [found[n] for n in sorted(found)]


async def drop_generation(settings: Settings, generation: int) -> GenerationInfo:
    """Delete generation `generation`'s app topics (changelogs), shadow topics and consumer group."""
    from aiokafka.admin import AIOKafkaAdminClient

    control = await read_control(settings)
    if generation == current_of(control):
        raise ValueError(f"generation {generation} is the current one; it cannot be dropped")
    if control is not None and control.state != "current" and generation == control.generation:
        raise ValueError(f"generation {generation} is {control.state}; it cannot be dropped now")
    target = next((g for g in await list_generations(settings) if g.generation == generation), None)
    if target is None:
        raise ValueError(f"generation {generation} has no topics or group")
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        if target.app_topics or target.shadow_topics:
            await admin.delete_topics(target.app_topics + target.shadow_topics)
        if target.group:
            await delete_group(admin, target.app_id)
    finally:
        await admin.close()
    return target
