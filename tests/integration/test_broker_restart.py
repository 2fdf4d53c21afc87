"""The broker restarts in the middle of a stream: the worker reconnects and nothing is lost."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from schemas.codec import decode
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.ops.demo import grouped_stream
from streams.ops.publish import publish, read_topic
from streams.service.settings import Settings
from streams.service.topics import ensure_topics
from tests.kafka_broker import PrivateBroker, unique_name

N = 1500
RATE = 150.0


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="restarts a broker of its own")
def test_a_broker_restart_mid_stream_loses_nothing(tmp_path, workers):
    broker = PrivateBroker(tmp_path / "restartable").start()
    try:
        run = unique_name("restart")
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "FMS_TOPIC_PREFIX": f"{run}.", "FMS_APP_ID": run,
               "FMS_DATA_DIR": str(tmp_path / "state"), "FMS_PARTITIONS": "2", "FMS_SESSION_TIMEOUT_S": "6"}
        settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=f"{run}.", app_id=run, partitions=2)
        feats, _ = grouped_stream(N, 8, dim=24, seed=31, space="steady")
        asyncio.run(ensure_topics(settings))
        worker = workers(env)

        errors: list[BaseException] = []

        def produce():
            try:
                asyncio.run(publish(settings, settings.topic("audio-features"), feats, rate=RATE))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=produce)
        thread.start()
        time.sleep(3.0)
        broker.stop()  # mid-stream: the worker and the publisher both lose the broker
        time.sleep(3.0)
        broker.start()
        thread.join(120)
        assert not errors, errors

        recs = asyncio.run(read_topic(settings, settings.topic("recognitions"), count=N, timeout=180))
        by_id = {}
        for _, raw in recs:
            r = decode("recognitions", raw).record
            by_id[r.event_id] = r
        assert set(by_id) == {f.id for f in feats}, "every record was recognized"
        reference = SpaceMemory("steady", PatternConfig())
        for f in feats:
            expected = reference.learn_one(f.id, f.vector, f.ts)
            assert by_id[f.id].pattern_id == expected.pattern_id
        assert worker.proc.poll() is None, "the worker stayed up through the broker's restart"
    finally:
        broker.close()
