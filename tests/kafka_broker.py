"""A Kafka broker for the test session, and small aiokafka helpers for tests.

Where the broker comes from (first that applies):
  1. env KAFKA_BOOTSTRAP_SERVERS ("host:port[,host:port]"): used as is; nothing is started or stopped.
  2. a Docker engine that answers a ping within ~2 s: testcontainers' KafkaContainer in KRaft mode.
  3. infra/kafka/broker.sh with a private KAFKA_DIR under pytest's tmp dir and a free port pair on
     127.0.0.1 (client port P, controller P+1), never the developer's broker on 9092.
FMS_TEST_BROKER=docker|local skips the detection and forces 2 or 3.

The helpers are coroutines; from a sync test wrap them in asyncio.run().
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code
from aiokafka.structs import RecordMetadata

REPO = Path(__file__).resolve().parents[1]
BROKER_SH = REPO / "infra" / "kafka" / "broker.sh"

# The installed testcontainers (4.x) KafkaContainer drives Confluent's image entrypoint
# (/etc/confluent/docker/configure), so apache/kafka images are not supported by it;
# this is the image its own KRaft test uses.
DOCKER_KAFKA_IMAGE = os.environ.get("FMS_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")

# Filled in by the session fixture; reported in the terminal summary.
startup_info: dict[str, object] = {}


# --------------------------------------------------------------------------- broker selection


def docker_available(timeout: float = 2.0) -> bool:
    """True when a Docker engine answers a ping; False (quickly) when there is none."""
    try:
        import docker  # the SDK testcontainers itself uses; honours DOCKER_HOST
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _ephemeral_low() -> int:
    """Where the system's ephemeral (outgoing) ports begin."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; macOS's range begins higher still


def free_port_pair(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port P such that P and P+1 are both free on host (P for clients, P+1 for the controller).

    Below the ephemeral range: a broker a test restarts binds its ports again, and meanwhile a
    client reconnecting in a loop takes ephemeral ports as its own side of each connection (seen: a
    restart refused with "Address already in use" on the controller port after a 60 s outage).
    """
    rng = random.Random()
    low = _ephemeral_low()
    for _ in range(attempts):
        port = rng.randrange(10000, low - 1) if low > 10002 else 0
        with socket.socket() as first:
            try:
                first.bind((host, port))
            except OSError:
                continue
            port = first.getsockname()[1]
            if port + 1 > 65535 or port in (9092, 9093):
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no two consecutive free ports on {host} after {attempts} attempts")


@contextlib.contextmanager
def kafka_broker(tmp_root: Path) -> Iterator[str]:
    """Yield a bootstrap "host:port" for the session; stop whatever was started on exit."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if given:
        startup_info.update(kind="external", bootstrap=given, seconds=0.0)
        yield given
        return
    forced = os.environ.get("FMS_TEST_BROKER", "").strip().lower()
    if forced not in ("", "docker", "local"):
        raise ValueError(f"FMS_TEST_BROKER must be 'docker' or 'local', not {forced!r}")
    use_docker = forced == "docker" or (forced == "" and docker_available())
    broker = _docker_broker() if use_docker else _local_broker(tmp_root)
    with broker as bootstrap:
        yield bootstrap


@contextlib.contextmanager
def _docker_broker() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # older testcontainers layout
        from testcontainers.kafka import KafkaContainer

    started = time.monotonic()
    container = KafkaContainer(DOCKER_KAFKA_IMAGE).with_kraft()
    try:
        container.start(timeout=180)
        bootstrap = container.get_bootstrap_server()
        startup_info.update(
            kind=f"docker {DOCKER_KAFKA_IMAGE}", bootstrap=bootstrap, seconds=time.monotonic() - started
        )
        yield bootstrap
    finally:
        container.stop()


@contextlib.contextmanager
def _local_broker(tmp_root: Path) -> Iterator[str]:
    kafka_dir = tmp_root / "kafka"
    port = free_port_pair()
    env = dict(os.environ, KAFKA_DIR=str(kafka_dir), KAFKA_PORT=str(port))
    env.setdefault("FMS_HOME", str(Path.home() / ".cache" / "feature-memory"))
    bootstrap = f"127.0.0.1:{port}"

    def run(action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # Own session: a Ctrl-C in the terminal must not kill the script half-way through a stop.
        return subprocess.run(
            ["bash", str(BROKER_SH), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )

    def kill_leftovers() -> None:
        _kill_brokers_of(kafka_dir)

    atexit.register(kill_leftovers)
    started = time.monotonic()
    try:
        result = run("start", timeout=600)  # the first run may fetch jars from Maven Central
        if result.returncode != 0:
            raise RuntimeError(
                f"infra/kafka/broker.sh start failed (rc={result.returncode}) for {bootstrap}, "
                f"KAFKA_DIR={kafka_dir}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                f"server.log tail:\n{_tail(kafka_dir / 'logs' / 'server.log')}"
            )
        _start_watchdog(kafka_dir)
        startup_info.update(
            kind="local infra/kafka/broker.sh",
            bootstrap=bootstrap,
            seconds=time.monotonic() - started,
            kafka_dir=str(kafka_dir),
        )
        yield bootstrap
    finally:
        try:
            result = run("stop", timeout=60)
            if result.returncode != 0:
                print(f"broker.sh stop failed: {result.stdout}{result.stderr}", file=sys.stderr)
        except Exception as exc:  # still fall through to the direct kill below
            print(f"broker.sh stop failed: {exc!r}", file=sys.stderr)
        kill_leftovers()
        atexit.unregister(kill_leftovers)


def _broker_pids(kafka_dir: Path) -> list[int]:
    """Pids of java processes running kafka.Kafka with this KAFKA_DIR's server.properties."""
    marker = f"{kafka_dir}/server.properties".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" in argv and marker in argv:
            pids.append(int(entry.name))
    return pids


def _kill_brokers_of(kafka_dir: Path, grace: float = 20.0) -> None:
    pids = set(_broker_pids(kafka_dir))
    pidfile = kafka_dir / "broker.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        if pid in _broker_pids(kafka_dir):
            pids.add(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and p in _broker_pids(kafka_dir)}
            time.sleep(0.1)
        if not pids:
            return


def _start_watchdog(kafka_dir: Path) -> None:
    """Kill the broker if this pytest process dies without cleaning up (SIGKILL, SIGTERM...)."""
    pid = int((kafka_dir / "broker.pid").read_text().strip())
    script = (
        'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; '
        'kill -0 "$2" 2>/dev/null || exit 0; kill "$2"; '
        'for _ in $(seq 1 40); do kill -0 "$2" 2>/dev/null || exit 0; sleep 0.5; done; kill -9 "$2"'
    )
    subprocess.Popen(
        ["sh", "-c", script, "kafka-test-watchdog", str(os.getpid()), str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


# --------------------------------------------------------------------------- test helpers


def unique_name(prefix: str = "test") -> str:
    """A topic/app name no other test (or earlier run) uses: "<prefix>-<12 hex>"."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-") or "test"
    return f"{clean}-{uuid.uuid4().hex[:12]}"


def _encode(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create a topic (replication factor 1) and wait until every partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        topic = NewTopic(name, partitions, 1, topic_configs={k: str(v) for k, v in (config or {}).items()})
        response = await admin.create_topics([topic], timeout_ms=int(timeout * 1000))
        for entry in response.topic_errors:
            error_code = entry[1]
            if error_code:
                message = entry[2] if len(entry) > 2 else ""
                raise for_code(error_code)(f"creating topic {entry[0]!r}: {message}")
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics([name])
            parts = described[0].get("partitions", []) if described else []
            if (
                described
                and not described[0].get("error_code")
                and len(parts) == partitions
                and all(p.get("leader", -1) >= 0 for p in parts)
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {name!r} has no leaders after {timeout}s: {described!r}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | str | None, bytes | str | None]],
) -> list[RecordMetadata]:
    """Send (key, value) records with acks=all, flush, and return each record's metadata in order.

    str keys/values are UTF-8 encoded; partitions come from aiokafka's default (murmur2) partitioner.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=_encode(v), key=_encode(k)) for k, v in records]
        await producer.flush()
        return [await f for f in futures]
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    n: int,
    timeout: float = 30.0,
    partition: int | None = None,
) -> list[tuple[bytes | None, bytes | None]]:
    """Read n records of topic from the beginning with a fresh, group-less consumer.

    Returns (key, value) tuples (first n, per-partition order kept); raises AssertionError listing
    what did arrive when fewer than n come within timeout. partition limits reading to one partition.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            # All-topics metadata: never auto-creates the topic (a per-topic request could).
            cluster = await consumer._client.fetch_all_metadata()
            known = cluster.partitions_for_topic(topic)
            if known:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic!r} not found on {bootstrap} within {timeout}s")
            await asyncio.sleep(0.1)
        wanted = sorted(known) if partition is None else [partition]
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                where = f"{topic!r}" + ("" if partition is None else f" partition {partition}")
                raise AssertionError(
                    f"expected {n} records from {where} within {timeout}s, got {len(got)}: {got!r}"
                )
            batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for tp in sorted(batches, key=lambda t: t.partition):
                got.extend((m.key, m.value) for m in batches[tp])
        return got[:n]
    finally:
        await consumer.stop()


class PrivateBroker:
    """A local broker of one test's own, which the test may restart (same port, same data)."""

    def __init__(self, tmp_root: Path, sasl_users: dict[str, str] | None = None) -> None:
        self.kafka_dir = tmp_root / "kafka"
        self.port = free_port_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._env = dict(os.environ, KAFKA_DIR=str(self.kafka_dir), KAFKA_PORT=str(self.port))
        self.sasl_bootstrap = None  # a SASL_PLAINTEXT (PLAIN) listener for these users, when given
        if sasl_users:
            sasl_port = free_port_pair()  # below the ephemeral range too (the broker may restart)
            self.sasl_bootstrap = f"127.0.0.1:{sasl_port}"
            self._env.update(KAFKA_SASL_PORT=str(sasl_port),
                             KAFKA_SASL_USERS=",".join(f"{u}:{p}" for u, p in sasl_users.items()))
        self._env.setdefault("FMS_HOME", str(Path.home() / ".cache" / "feature-memory"))

    def _run(self, action: str) -> None:
        result = subprocess.run(["bash", str(BROKER_SH), action], env=self._env, capture_output=True, text=True,
                                timeout=600, start_new_session=True)
        if result.returncode != 0:
            raise RuntimeError(f"broker.sh {action} failed: {result.stdout}{result.stderr}")

    def start(self) -> "PrivateBroker":
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            _kill_brokers_of(self.kafka_dir)
