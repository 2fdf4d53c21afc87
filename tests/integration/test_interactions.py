"""Interactions through the real broker and a real worker: optimizations out, transfer to a second
model and then its own takeover, confidence moved by feedback, bad interactions dead-lettered,
/recognize answering with recommendations, and the tables surviving the loss of local state."""
from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request

import numpy as np

from schemas.codec import decode, decode_json, encode
from schemas.records import AudioFeature, Interaction, Outcome
from streams.core.optimizations import OptimizationConfig
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.ops.demo import demo_optimizations, grouped_stream, transfer_violations
from streams.state.optimizations import OptimizationStore
from streams.ops.publish import publish, read_topic
from streams.state.patterns import Prefixed
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import settings_of
from tests.kafka_broker import produce

SPACE = "voice"


def interaction(i: str, model: str, config: dict, success: bool, ts: float, **context) -> Interaction:
    return Interaction(id=i, space=SPACE, model_id=model, config=config,
                       outcome=Outcome(success, latency_ms=20.0, quality=0.9 if success else None), ts=ts, **context)


def optimizations_by_key(settings, count: int) -> dict[str, list]:
    recs = asyncio.run(read_topic(settings, settings.topic("optimizations"), count=count, timeout=90))
    out: dict[str, list] = {}
    for key, raw in recs:
        d = decode("optimizations", raw)
        assert d.result.is_valid, d.result.errors
        out.setdefault(key, []).append(d.record)
    return out


def reference_optimizations(feats, interactions, pattern_of) -> dict[str, list[dict]]:
    """The `fms.optimizations` records of these interactions, computed in process: the pattern
    memory learns the features, then each interaction goes to the optimization store and its
    feedback to the pattern, in the worker's order."""
    memory = SpaceMemory(SPACE, PatternConfig())
    for f in feats:
        memory.learn_one(f.id, f.vector, f.ts)

    def related_of(pid):
        pattern = memory.get(pid)
        return None if pattern is None else pattern.related

    table: dict = {}
    store = OptimizationStore(Prefixed(table, "o/"), Prefixed(table, "oi/"))
    out: dict[str, list[dict]] = {}
    for i in interactions:
        pid = pattern_of(i)
        for e in store.learn(SPACE, pid, i.model_id, i.config, i.outcome, i.ts, memory.get(pid).related, related_of):
            out.setdefault(e.key, []).append(e.to_record().to_dict())
        memory.apply_feedback(pid, i.outcome.success, i.outcome.quality, i.ts)
    return out


def as_dicts(by_key: dict[str, list]) -> dict[str, list[dict]]:
    return {k: [r.to_dict() for r in v] for k, v in by_key.items()}


def changes(records) -> list[tuple]:
    """(event, source model, config) of each record, re-announcements of the same folded in."""
    out: list[tuple] = []
    for r in records:
        c = (r.event, r.source_model_id, r.config)
        if not out or out[-1] != c:
            out.append(c)
    return out


def http_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return decode_json(resp.read())


def test_interactions_become_optimizations_transfer_and_feedback(memory_env, workers):
    env = memory_env()
    settings = settings_of(env)
    worker = workers(env)
    feats, truth = grouped_stream(60, 3, dim=24, seed=5, space=SPACE)

    async def learn_patterns():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        return await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90)

    recs = {r.event_id: r for r in (decode("recognitions", raw).record for _, raw in asyncio.run(learn_patterns()))}
    target = recs[feats[-1].id].pattern_id  # the context pattern, named three ways below
    by_event = next(f for f in feats if recs[f.id].pattern_id == target)
    before = {p["pattern_id"]: p for p in http_json(f"{worker.url}/patterns/{SPACE}")["patterns"]}
    assert target in before

    good, other, own = {"beam": 4, "lm": True}, {"beam": 1, "lm": True}, {"beam": 8, "lm": True}
    ts = feats[-1].ts + 1.0
    first = [interaction(f"a{i}", "model-a", good, True, ts + i,
                         **({"pattern_id": target} if i % 2 else {"event_id": by_event.id})) for i in range(6)]
    # Model B's first outcome names its context by vector: it gets A's config, transferred.
    second = [interaction("b0", "model-b", other, False, ts + 10, vector=by_event.vector)]
    # Then B's own evidence on another config grows past the takeover threshold.
    third = [interaction(f"b{i}", "model-b", own, True, ts + 10 + i, pattern_id=target) for i in range(1, 13)]

    async def send(batch):
        await publish(settings, settings.topic("interactions"), batch)

    asyncio.run(send(first))
    optimizations_by_key(settings, 1)  # A's recommendation is out before B asks
    asyncio.run(send(second + third))
    expected = reference_optimizations(feats, first + second + third, lambda i: target)
    by_key = optimizations_by_key(settings, sum(map(len, expected.values())))
    assert as_dicts(by_key) == expected, "the worker emits what the store computes in process"

    # A is recommended at support 3 and re-announced as its numbers move; B gets A's config,
    # transferred, then its own once its evidence takes over (and follows its numbers too).
    a_recs = by_key[f"{SPACE}/{target}/model-a"]
    assert changes(a_recs) == [("recommended", "model-a", good)]
    assert a_recs[0].support == 3 and a_recs[0].effectiveness >= 0.5
    assert [r.support for r in a_recs] == sorted({r.support for r in a_recs}) and a_recs[-1].support > 3
    assert changes(by_key[f"{SPACE}/{target}/model-b"]) == [
        ("recommended", "model-a", good), ("retired", "model-a", good), ("recommended", "model-b", own)]

    # Feedback moved the context pattern's confidence, exactly as the core's apply_feedback does.
    expected = SpaceMemory(SPACE, PatternConfig())
    for f in feats:
        expected.learn_one(f.id, f.vector, f.ts)
    for i in first + second + third:
        expected.apply_feedback(target, i.outcome.success, i.outcome.quality, i.ts)
    after = {p["pattern_id"]: p for p in http_json(f"{worker.url}/patterns/{SPACE}")["patterns"]}
    assert after[target]["confidence"] != before[target]["confidence"]
    assert after[target]["confidence"] == expected.confidence_at(expected.get(target))

    answer = http_json(f"{worker.url}/recognize", {"space": SPACE, "vector": by_event.vector.tolist(),
                                                   "model_id": "model-b", "k": 1})
    assert answer["matches"][0]["pattern_id"] == target
    assert [(o["model_id"], o["source_model_id"], o["config"]) for o in answer["optimizations"]] == [
        ("model-b", "model-b", own)]
    answer = http_json(f"{worker.url}/recognize", {"space": SPACE, "vector": by_event.vector.tolist(), "k": 1})
    assert {o["model_id"]: o["config"] for o in answer["optimizations"]} == {"model-a": good, "model-b": own}

    # The tables come back from the changelog: with no local state, a third model still gets the
    # transfer, B's published recommendation is restored (b13 re-announces it only if its numbers
    # moved past the tolerance, exactly as in process), and /recognize answers as before.
    worker.stop()
    shutil.rmtree(env["FMS_DATA_DIR"])
    worker = workers(env)
    last = [interaction("b13", "model-b", own, True, ts + 30, pattern_id=target),
            interaction("c0", "model-c", other, False, ts + 31, pattern_id=target)]
    asyncio.run(send(last))
    expected = reference_optimizations(feats, first + second + third + last, lambda i: target)
    by_key = optimizations_by_key(settings, sum(map(len, expected.values())))
    assert as_dicts(by_key) == expected, "B's recommendation was restored, not announced as new"
    (c_rec,) = by_key[f"{SPACE}/{target}/model-c"]
    assert c_rec.event == "recommended" and c_rec.source_model_id in {"model-a", "model-b"}
    answer = http_json(f"{worker.url}/recognize", {"space": SPACE, "vector": by_event.vector.tolist(),
                                                   "model_id": "model-b", "k": 1})
    assert [o["config"] for o in answer["optimizations"]] == [own]


def test_bad_interactions_go_to_the_dead_letter_topic_with_their_code(memory_env, workers):
    env = memory_env()
    settings = settings_of(env)
    workers(env)
    feats, _ = grouped_stream(20, 2, dim=8, seed=3, space=SPACE)

    async def go():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90)
        ok = interaction("ok", "m", {"beam": 1}, True, 100.0, event_id=feats[0].id)
        bad = {
            "unknown_pattern": encode(interaction("x1", "m", {"beam": 1}, True, 100.0, pattern_id="p-nope")),
            "unknown_event": encode(interaction("x2", "m", {"beam": 1}, True, 100.0, event_id="never-seen")),
            "unknown_space": encode(Interaction(id="x3", space="elsewhere", model_id="m", config={},
                                                outcome=Outcome(True), ts=1.0, pattern_id="p-1")),
            "dimension_mismatch": encode(interaction("x4", "m", {}, True, 100.0, vector=np.ones(3, np.float32))),
            "ambiguous_context": json.dumps({"v": 1, "id": "x5", "space": SPACE, "model_id": "m",
                                             "pattern_id": "p", "event_id": "e", "config": {},
                                             "outcome": {"success": True}, "ts": 1.0}).encode(),
            "out_of_range": json.dumps({"v": 1, "id": "x6", "space": SPACE, "model_id": "m", "pattern_id": "p",
                                        "config": {}, "outcome": {"success": True, "quality": 3}, "ts": 1.0}).encode(),
            "invalid_json": b"{nope",
        }
        records = [(SPACE.encode(), v) for v in bad.values()] + [(SPACE.encode(), encode(ok))]
        await produce(settings.bootstrap_servers, settings.topic("interactions"), records)
        dead = await read_topic(settings, settings.topic("dead-letter"), count=len(bad), timeout=90)
        # The good interaction comes last: its feedback re-publishes its pattern, with its ts.
        for _ in range(100):
            patterns = await read_topic(settings, settings.topic("patterns"))
            if any(raw is not None and decode("patterns", raw).record.ts == 100.0 for _, raw in patterns):
                break
            await asyncio.sleep(0.2)
        return bad, dead, patterns

    bad, dead, patterns = asyncio.run(go())
    codes = []
    for key, raw in dead:
        record = decode("dead-letter", raw).record
        assert record.topic == settings.topic("interactions") and key in {SPACE, ""}
        codes.append(record.errors[0].code)
    assert sorted(codes) == sorted(bad), "each bad interaction once, with its own code"
    # The good interaction after them was applied: its feedback re-published its pattern.
    feedback = [decode("patterns", raw).record for _, raw in patterns if raw is not None]
    assert [p.ts for p in feedback].count(100.0) == 1


def test_the_last_record_per_key_agrees_with_recognize(memory_env, workers):
    """After a stream of interactions of an experienced model and two newcomers on three patterns,
    the last `fms.optimizations` record of every key is what /recognize reports for that (pattern,
    model) now, to within the tolerance: a record, own or transferred, follows its source's numbers."""
    env = memory_env()
    settings = settings_of(env)
    worker = workers(env)
    feats, _ = grouped_stream(90, 3, dim=24, seed=5, space=SPACE)

    async def learn_patterns():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        return await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90)

    recs = {r.event_id: r for r in (decode("recognitions", raw).record for _, raw in asyncio.run(learn_patterns()))}
    example = {}  # pattern -> a feature recognized as it
    for f in feats[30:]:  # past the space's strict start, whose first patterns merges may absorb
        example.setdefault(recs[f.id].pattern_id, f)
    patterns = sorted(example)
    assert len(patterns) == 3

    rng = np.random.default_rng(11)
    configs = [{"beam": 1}, {"beam": 4}, {"beam": 8}]
    inters, ts = [], feats[-1].ts + 1.0

    def add(model, pattern, c, p_success):
        nonlocal ts
        ok = bool(rng.random() < p_success)
        inters.append(Interaction(id=f"i{len(inters)}", space=SPACE, model_id=model, config=configs[c],
                                  outcome=Outcome(ok, latency_ms=30.0 + 20 * c, quality=0.9 if ok else None),
                                  ts=ts, pattern_id=pattern))
        ts += 1.0

    for step in range(60):
        for n, pattern in enumerate(patterns):
            best = n % 3
            c = step % 3
            add("model-a", pattern, c, 0.95 if c == best else 0.4)
            if step in (24, 40):  # the newcomers report a failed try of a config of their own
                add("model-b", pattern, (best + 1) % 3, 0.0)
                add("model-c", pattern, (best + 2) % 3, 0.0)
    asyncio.run(publish(settings, settings.topic("interactions"), inters))

    expected = reference_optimizations(feats, inters, lambda i: i.pattern_id)
    by_key = optimizations_by_key(settings, sum(map(len, expected.values())))
    assert as_dicts(by_key) == expected
    tol, factor = OptimizationConfig.reannounce_tolerance, OptimizationConfig.reannounce_support_factor
    transferred = 0
    for pattern in patterns:
        for model in ("model-a", "model-b", "model-c"):
            records = by_key[f"{SPACE}/{pattern}/{model}"]
            assert len(records) > 1, "every key's record moved with its numbers"
            last = records[-1]
            answer = http_json(f"{worker.url}/recognize", {"space": SPACE, "vector": example[pattern].vector.tolist(),
                                                           "model_id": model, "k": 1})
            assert answer["matches"][0]["pattern_id"] == pattern
            assert last.event == "recommended"
            (now,) = answer["optimizations"]
            assert (now["config"], now["source_model_id"]) == (last.config, last.source_model_id)
            assert abs(now["effectiveness"] - last.effectiveness) <= tol, (pattern, model)
            assert last.support * factor > now["support"] > last.support / factor
            transferred += last.source_model_id != model
    assert transferred == 6, "the newcomers' records are transfers"


def test_the_demo_never_shows_a_transfer_above_its_source(memory_env, workers):
    """The demo's interactions (an experienced model, then a newcomer reporting one outcome per
    pattern) through a worker: on the topic, every transferred effectiveness is at most its
    source's own record for the same config, and is that record times the transfer discount."""
    env = memory_env()
    settings = settings_of(env)
    workers(env)
    feats, _ = grouped_stream(600, 6, seed=7, space="demo")

    async def go():
        await ensure_topics(settings)
        await publish(settings, settings.topic("audio-features"), feats)
        recognitions = await read_topic(settings, settings.topic("recognitions"), count=len(feats), timeout=90)
        by_event = {r.event_id: r for r in (decode("recognitions", raw).record for _, raw in recognitions)}
        return await demo_optimizations(settings, feats, by_event)

    latest = asyncio.run(go())
    patterns = {p for p, _ in latest}
    assert len(patterns) == 6 and set(latest) == {(p, m) for p in patterns for m in ("asr-large", "asr-small")}
    checked, bad = transfer_violations(latest)
    assert bad == [] and checked == 6
    for p in patterns:
        small, large = latest[(p, "asr-small")], latest[(p, "asr-large")]
        assert small.source_model_id == "asr-large" and small.config == large.config
        assert abs(small.effectiveness - 0.8 * large.effectiveness) <= OptimizationConfig.reannounce_tolerance
