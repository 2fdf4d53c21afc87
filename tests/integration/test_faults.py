"""Fault injection through the real broker: the learn operation fails for a few seconds. The breaker
opens, fms.breaker-state and the gauge show it, it recovers, and every input still gets its output."""
from __future__ import annotations

import asyncio
import time
import urllib.request

from schemas.codec import decode
from streams.ops.demo import grouped_stream
from streams.ops.publish import publish, read_topic
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import settings_of

FAULT_S = 4.0


def gauge(url: str, operation: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("fms_breaker_state{") and f'operation="{operation}"' in line:
            state = line.split('state="')[1].split('"')[0]
            out[state] = float(line.rsplit(" ", 1)[1])
    return out


def test_breaker_opens_shows_recovers_and_loses_nothing(memory_env, workers):
    env = memory_env(FMS_FAULT_INJECT=f"learn:{FAULT_S}", FMS_RESOURCE_INTERVAL_S="1")
    settings = settings_of(env)
    worker = workers(env)
    feats, _ = grouped_stream(120, 3, dim=16, seed=9, space="faulty")
    assert gauge(worker.url, "learn") == {"closed": 1.0, "open": 0.0, "half_open": 0.0}

    async def go():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        seen = []
        deadline = time.monotonic() + FAULT_S + 30
        while time.monotonic() < deadline:  # the gauge, while the fault lasts and after
            seen.append(await asyncio.to_thread(gauge, worker.url, "learn"))
            if seen[-1].get("open") == 1.0 and len(seen) > 1 and seen[-1] == seen[-2]:
                break
            await asyncio.sleep(0.1)
        recs = await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90)
        return seen, recs

    seen, recs = asyncio.run(go())
    assert any(g.get("open") == 1.0 for g in seen), "the gauge showed the breaker open"
    assert {decode("recognitions", raw).record.event_id for _, raw in recs} == {f.id for f in feats}, \
        "every input record has its recognition"
    assert asyncio.run(read_topic(settings, settings.topic("dead-letter"))) == []

    # The topic tells the story: learn opened, half-opened and closed again, in that order, with reasons.
    states = [decode("breaker-state", raw).record for _, raw in
              asyncio.run(read_topic(settings, settings.topic("breaker-state")))]
    learn = [s for s in states if s.operation == "learn" and s.reason is not None]
    order = [s.state for s in learn]
    assert "open" in order and "half_open" in order and order[-1] == "closed", order
    first_open = order.index("open")
    assert learn[first_open].failure_rate >= 0.5 and "failure rate" in learn[first_open].reason
    assert all(s.key == f"{s.worker}/{s.operation}" for s in states)
    heartbeats = [s for s in states if s.reason is None]
    assert {s.operation for s in heartbeats} >= {"learn", "interaction", "send"}
    deadline = time.monotonic() + 10
    while gauge(worker.url, "learn") != {"closed": 1.0, "open": 0.0, "half_open": 0.0}:
        assert time.monotonic() < deadline, "the gauge shows the breaker closed again"
        time.sleep(0.2)
