"""What operators and clients touch besides the records: topics as created, /health, /metrics, and
the `fms` commands that publish files and watch topics."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np

from schemas.codec import decode, encode_json
from streams.ops.publish import read_topic
from streams.service.topics import ensure_topics, kafka_client_options, topic_specs
from tests.integration.test_recognition import settings_of, settled


def fms(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.ops.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, check=True)


def test_topics_are_created_with_their_configuration(memory_env):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    env = memory_env(FMS_INPUT_RETENTION_MS="-1")
    settings = settings_of(env)

    async def go():
        created = await ensure_topics(settings)
        again = await ensure_topics(settings)
        admin = AIOKafkaAdminClient(**kafka_client_options(settings))
        await admin.start()
        try:
            names = [s.name for s in topic_specs(settings)]
            described = await admin.describe_topics(names)
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        return created, again, described, configs

    created, again, described, configs = asyncio.run(go())
    assert len(created) == 10 and again == []
    # fms.control (the generations) has one partition: one key, read whole by every worker.
    assert {t["topic"]: len(t["partitions"]) for t in described} == {
        n: 1 if n == settings.topic("control") else 2 for n in created}
    by_topic = {}
    for response in configs:
        for resource in response.resources:
            _, _, _, name, entries = resource[:5]
            by_topic[name] = {e[0]: e[1] for e in entries}
    p = settings.topic
    for name in ("patterns", "optimizations", "breaker-state", "control"):
        assert by_topic[p(name)]["cleanup.policy"] == "compact", name
    for name in ("audio", "audio-features", "interactions"):
        assert by_topic[p(name)]["cleanup.policy"] == "delete"
        assert by_topic[p(name)]["retention.ms"] == "-1", "input history is kept for replay"


def test_health_and_metrics_endpoints(memory_env, workers, tmp_path):
    env = memory_env(FMS_RESOURCE_INTERVAL_S="0.5")
    worker = workers(env)
    with urllib.request.urlopen(f"{worker.url}/health", timeout=5) as resp:
        assert resp.status == 200
        health = decode_json_body(resp.read())
    assert health["status"] in {"healthy", "degraded"}
    assert set(health["components"]) >= {"kafka", "patterns", "worker", "resources"}

    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    fms(env, "publish", str(tmp_path / "v.npy"), "--space", "m")
    asyncio.run(read_topic(settings_of(env), settings_of(env).topic("recognitions"), count=20))

    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    assert 'fms_records_in_total{topic="audio-features"} 20.0' in text
    assert 'fms_records_out_total{topic="recognitions"} 20.0' in text
    assert "fms_recognition_latency_seconds_bucket" in text
    assert "fms_storage_operation_latency_seconds_count" in text
    assert "fms_faust_messages_received" in text, "faust's own sensor is served too"
    assert 'fms_health_status{status="healthy"}' in text
    # fms.resource-metrics: periodic samples keyed by worker, valid, counting the patterns learned.
    patterns_now = len(decode_json_body(urllib.request.urlopen(f"{worker.url}/patterns/m", timeout=5).read())["patterns"])
    deadline = time.monotonic() + 30
    while True:
        samples = [decode("resource-metrics", v) for _, v in asyncio.run(
            read_topic(settings_of(env), settings_of(env).topic("resource-metrics")))]
        assert all(d.ok for d in samples)
        latest = samples[-1].record if samples else None
        if latest is not None and latest.patterns == patterns_now:
            break
        assert time.monotonic() < deadline, f"no sample with {patterns_now} patterns: {latest}"
        time.sleep(0.5)
    assert latest.rss_bytes > 0 and latest.health in {"healthy", "degraded"} and latest.memory_estimate_bytes > 0
    assert latest.worker == f"127.0.0.1:{worker.web_port}"
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    rss = [line for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")]
    assert rss and float(rss[0].split()[1]) > 0, "the process collector's series are served"
    estimate = [line for line in text.splitlines() if line.startswith("fms_state_memory_estimate_bytes ")]
    assert estimate and float(estimate[0].split()[1]) > 0, "the sampler's gauges are set"

    # Raw table contents are not served.
    for path in ("/table/patterns/", "/router/"):
        try:
            urllib.request.urlopen(f"{worker.url}{path}", timeout=5)
            raise AssertionError(f"{path} should not be served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404


def decode_json_body(raw: bytes):
    from schemas.codec import decode_json
    return decode_json(raw)


def test_fms_publish_jsonl_and_watch(memory_env, workers, tmp_path):
    env = memory_env()
    workers(env)
    lines = [encode_json({"id": f"j{i}", "space": "cli", "vector": [1.0, float(i % 2), 0.5]}) for i in range(6)]
    (tmp_path / "f.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = fms(env, "publish", str(tmp_path / "f.jsonl"))
    # Records are keyed by space: all six went to one partition, offsets 0-5 of a new topic.
    assert re.fullmatch(r"published 6 records to \S+audio-features: partition \d+: offsets 0-5\n", out.stdout), out.stdout

    watched = fms(env, "watch", "recognitions", "--from-beginning", "--limit", "6")
    rows = [line.split("\t", 1) for line in watched.stdout.strip().splitlines()]
    assert len(rows) == 6 and all(k == "cli" for k, _ in rows)
    assert sorted(decode("recognitions", v.encode()).record.event_id for _, v in rows) == [f"j{i}" for i in range(6)]

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(encode_json({"id": "x", "space": "cli", "vector": [float("nan")]}) + b"\n")
    # A file with a bad row further down sends nothing: the whole file is validated first.
    bad.write_bytes(b"\n".join([encode_json({"id": "ok", "space": "late", "vector": [1.0, 2.0, 3.0]}),
                                encode_json({"id": "x", "space": "late", "vector": [float("nan")]})]) + b"\n")
    result = subprocess.run([sys.executable, "-m", "streams.ops.cli", "publish", str(bad)],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("fms publish: ") and "bad.jsonl:2" in result.stderr
    features = asyncio.run(read_topic(settings_of(env), settings_of(env).topic("audio-features")))
    assert len(features) == 6, "nothing of the bad file was sent"

    # The worker holds space "cli" at 3 dimensions: a 4-dimensional file for it is refused before
    # anything is sent, as is a file whose records of one space disagree. fms publish learns a
    # space's dimension from fms.patterns, whose events go out at the space's commit.
    asyncio.run(settled(settings_of(env)))
    wide = tmp_path / "wide.jsonl"
    wide.write_bytes(encode_json({"id": "w", "space": "cli", "vector": [1.0, 0.0, 0.5, 0.2]}) + b"\n")
    refused = subprocess.run([sys.executable, "-m", "streams.ops.cli", "publish", str(wide)],
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "holds 3-dimensional patterns" in refused.stderr and "4-dimensional" in refused.stderr
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join(encode_json({"id": f"m{i}", "space": "new", "vector": [1.0] * (3 + i)})
                                 for i in range(2)) + b"\n")
    refused = subprocess.run([sys.executable, "-m", "streams.ops.cli", "publish", str(mixed)],
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "record 2 of space 'new' has dimension 4, record 1 has 3" in refused.stderr
    features = asyncio.run(read_topic(settings_of(env), settings_of(env).topic("audio-features")))
    assert len(features) == 6, "nothing of the refused files was sent"

    # A mistyped topic is refused in one line, and not created; --wait waits for it instead.
    typo = subprocess.run([sys.executable, "-m", "streams.ops.cli", "watch", "recognitoins"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
    assert "no topic" in typo.stderr and "recognitoins" in typo.stderr and "--wait" in typo.stderr
    from streams.ops.publish import publish, topic_exists

    settings = settings_of(env)
    assert not asyncio.run(topic_exists(settings, settings.topic("recognitoins")))
    waiting = subprocess.Popen([sys.executable, "-m", "streams.ops.cli", "watch", "later", "--wait", "--from-beginning",
                                "--limit", "1"], env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert waiting.poll() is None, "it waits for the topic"
        record = decode("audio-features", encode_json({"v": 1, "id": "w0", "space": "cli", "ts": 1.7e9,
                                                       "vector": [1.0, 0.0, 0.5]})).record
        asyncio.run(publish(settings, settings.topic("later"), [record]))  # the broker auto-creates it
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out.startswith("cli\t")
