"""`fms replay`: rebuild the memory as a new generation from the kept input history, then switch to it.

The new generation N+1 is a worker of its own (a child process, its own consumer group and changelog
topics) that consumes `fms.audio-features` and `fms.interactions` from the beginning (or from
`--from`) and writes its outputs to shadow topics while the current generation N keeps serving. Once
it has caught up, the switch:

1. control `switching`: generation N's workers stop and commit their offsets (streams.ops.generation);
2. the replay worker stops; wherever it is ahead of N's last commit, its group's offset goes back to
   that commit, so those records are delivered to generation N+1 again, are recognized as already
   applied (agents/apply.py) and their outputs go out again, now on the contract topics;
3. the compacted contract topics `fms.patterns` and `fms.optimizations` are brought in line with the
   new generation's shadow copies;
4. control `current`: N's workers run again as N+1, from where N stopped.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from schemas.codec import decode, encode
from streams.core.generations import REPLAYED_INPUTS, Progress, caught_up, compacted_state, reconcile, rewinds, shadow_name
from streams.ops.generation import current_of, list_generations, read_control, shadow_specs, write_control
from streams.kafka.metadata import partitions_of
from streams.service.settings import Settings
from streams.service.topics import ensure_topics, kafka_client_options
from streams.ops.worker_process import WorkerProcess

log = logging.getLogger(__name__)

# Settings a replay worker must share with the service it replays for; everything else comes from
# the environment, as for any worker.
_WORKER_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers", "FMS_TOPIC_PREFIX": "topic_prefix", "FMS_APP_ID": "app_id",
    "FMS_PARTITIONS": "partitions", "FMS_REPLICATION_FACTOR": "replication_factor",
    "KAFKA_SECURITY_PROTOCOL": "security_protocol", "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_username", "KAFKA_SASL_PASSWORD": "sasl_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile", "KAFKA_SSL_CERTFILE": "ssl_certfile", "KAFKA_SSL_KEYFILE": "ssl_keyfile",
}


@dataclass
class ReplayResult:
    generation: int
    previous: int
    replayed: int  # input records the new generation consumed before the switch
    seconds: float  # from the replay worker being ready until it had caught up
    switch_seconds: float  # from `switching` to `current`
    rewound: dict = field(default_factory=dict)  # TopicPartition -> offset delivered again from
    patterns_written: int = 0
    optimizations_written: int = 0
    worker_env: dict = field(default_factory=dict)  # how to run the replay worker as a normal worker
    droppable: str = ""

    @property
    def rate(self) -> float:
        return self.replayed / self.seconds if self.seconds > 0 else 0.0


def worker_env(settings: Settings, generation: int, data_dir: Path) -> dict[str, str]:
    env = {name: str(getattr(settings, attr)) for name, attr in _WORKER_ENV.items() if getattr(settings, attr) != ""}
    env.update(FMS_GENERATION=str(generation), FMS_DATA_DIR=str(data_dir))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def replay(settings: Settings, *, from_ts: float | None = None, data_dir: Path | None = None,
                 web_port: int | None = None, lag_threshold: int = 100, poll_s: float = 1.0,
                 switch_timeout: float = 60.0, progress: bool = True, log_path: Path | None = None) -> ReplayResult:
    """Replay the inputs into a new generation and switch to it (see the module's docstring).

    `data_dir` is the replay worker's FMS_DATA_DIR (default: this settings' own, whose generation
    directory `<data_dir>-g<N>` a worker re-executed as N on this machine then finds warm);
    `web_port` its port (default: a free one). The replay worker is a `fms worker` child process:
    the project must be installed (or on PYTHONPATH) for `python -m streams.ops.cli` to run.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    await ensure_topics(settings)
    control = await read_control(settings)
    previous = current_of(control)
    new = 1 if control is None else max(control.generation, previous) + 1
    old_group = dataclasses.replace(settings, generation=previous).memory_app_id
    new_group = dataclasses.replace(settings, generation=new).memory_app_id
    await write_control(settings, new, "replaying", previous)
    await ensure_topics(settings, specs=shadow_specs(settings, new))

    data_dir = settings.data_dir if data_dir is None else Path(data_dir)
    env = worker_env(settings, new, data_dir)
    worker = WorkerProcess(env, log_path or Path(f"{data_dir}-g{new}-replay.log"),
                           web_port=web_port or _free_port())
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await consumer.start()
    await admin.start()
    switching = False
    try:
        partitions = await partitions_of(kafka_client_options(settings), [settings.topic(n) for n in REPLAYED_INPUTS])
        tps = [TopicPartition(settings.topic(name), p) for name in REPLAYED_INPUTS
               for p in sorted(partitions.get(settings.topic(name), ()))]
        end = await consumer.end_offsets(tps)
        start = await consumer.beginning_offsets(tps)
        if from_ts is not None:
            found = await consumer.offsets_for_times({tp: int(from_ts * 1000) for tp in tps})
            start = {tp: end[tp] if found[tp] is None else found[tp].offset for tp in tps}
            await _commit(settings, new_group, start)

        await asyncio.to_thread(worker.start)
        began = time.monotonic()  # the rate is the replay's, not faust's start-up's
        replayed = await _follow(consumer, admin, worker, new_group, tps, start, lag_threshold, poll_s, progress)
        seconds = time.monotonic() - began

        switching = True
        switch_began = time.monotonic()
        await write_control(settings, new, "switching", previous)
        if not await _group_empty(admin, old_group, switch_timeout):
            log.warning("generation %d's group %s still has members after %.0fs; switching anyway",
                        previous, old_group, switch_timeout)
        old_committed = await _committed(admin, old_group, tps)
        await asyncio.to_thread(worker.stop)
        back = rewinds(old_committed, await _committed(admin, new_group, tps))
        if back:
            await _commit(settings, new_group, back)
        patterns = await _reconcile(settings, new, "patterns", lambda key, value: None)
        optimizations = await _reconcile(settings, new, "optimizations", _retired)
        await write_control(settings, new, "current", previous)
        switching = False
        result = ReplayResult(new, previous, replayed, seconds, time.monotonic() - switch_began, back,
                              patterns, optimizations, env)
    except BaseException:
        await asyncio.to_thread(worker.stop)
        if switching:  # call the switch off: generation `previous`'s workers run again as themselves
            await write_control(settings, new, "replaying", previous)
        raise
    finally:
        await consumer.stop()
        await admin.close()
    old = next((g for g in await list_generations(settings) if g.generation == previous), None)
    if old is not None:
        result.droppable = (f"generation {previous} ({old.app_id}: group, {len(old.app_topics)} changelog/app topics, "
                            f"{len(old.shadow_topics)} shadow topics) can be dropped: fms generations drop {previous}")
    return result


async def _follow(consumer, admin, worker, group, tps, start, lag_threshold, poll_s, progress) -> int:
    """Poll the new group's committed offsets against the inputs' ends until it has caught up."""
    from tqdm import tqdm

    lags: list[int] = []
    bar = tqdm(total=0, unit="rec", desc="replay", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        while True:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(f"the replay worker exited with {worker.proc.returncode}; see "
                                   f"{worker.log_path}:\n{worker.tail()}")
            done = Progress.of(start, await _committed(admin, group, tps), await consumer.end_offsets(tps))
            bar.total = done.total  # the inputs grow while live traffic goes on
            bar.update(done.replayed - bar.n)
            lags.append(done.lag)
            if caught_up(lags, lag_threshold):
                return done.replayed
            await asyncio.sleep(poll_s)
    finally:
        bar.close()


async def _committed(admin, group: str, tps) -> dict:
    offsets = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _commit(settings: Settings, group: str, offsets: dict) -> None:
    """Commit `offsets` for `group`, which has no members now (a manually assigned consumer's commit)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    finally:
        await consumer.stop()


async def _group_empty(admin, group: str, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        (response,) = await admin.describe_consumer_groups([group])
        described = response.to_object()["groups"]
        if all(not g["members"] for g in described):
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.5)


def _retired(key: str, raw: bytes) -> bytes:
    """An optimization the new generation does not hold: retired rather than tombstoned, so that a
    follower of `fms.optimizations` (which skips tombstones, see streams.client) learns that the
    recommendation is withdrawn, in the contract's own words."""
    record = decode("optimizations", raw).record
    if record is None or record.event == "retired":
        return raw
    return encode(dataclasses.replace(record, event="retired", ts=time.time()))


async def _reconcile(settings: Settings, generation: int, name: str, absent) -> int:
    """Write into the compacted contract topic `name` what turns its state into the generation's shadow state."""
    from aiokafka import AIOKafkaProducer

    from streams.ops.publish import read_topic

    topic = settings.topic(name)
    new = compacted_state(await read_topic(settings, shadow_name(topic, generation), timeout=300))
    contract = compacted_state(await read_topic(settings, topic, timeout=300))
    writes = reconcile(new, contract, absent)
    if not writes:
        return 0
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for key, value in writes:
            await producer.send(topic, key=key.encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()
    return len(writes)
