"""Bad input on fms.audio-features: each kind goes to fms.dead-letter with its own code, and every
good record around it is still recognized."""
from __future__ import annotations

import asyncio
import base64
import json

import numpy as np

from schemas.codec import decode, encode
from schemas.records import AudioFeature
from streams.ops.publish import read_topic
from streams.service.topics import ensure_topics
from tests.integration.test_recognition import settings_of
from tests.kafka_broker import produce

DIM = 16


def good(i: int) -> bytes:
    vec = np.zeros(DIM, dtype=np.float32)
    vec[i % 2] = 1.0
    return encode(AudioFeature(id=f"good-{i}", space="s", vector=vec, model_id=None, ts=1.0 + i, meta=None))


def raw(**fields) -> bytes:
    base = {"v": 1, "id": "bad", "space": "s", "vector": [0.5] * DIM, "ts": 1.0}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}, allow_nan=True).encode()


BAD = {
    "invalid_utf8": b"\xff\xfe\x00garbage\x80",
    "invalid_json": b"{this is not json",
    "missing_field": raw(vector=...),
    "wrong_type": raw(ts="yesterday"),
    "vector_nan": raw(vector=[float("nan")] + [0.5] * (DIM - 1)),
    "vector_infinite": raw(vector={"dtype": "float32", "b64": base64.b64encode(
        np.array([np.inf] + [0.5] * (DIM - 1), dtype="<f4").tobytes()).decode()}),
    "dimension_mismatch": raw(vector=[0.5] * (DIM + 3)),
    "vector_too_large": raw(vector=[0.5] * 5000),
    "unsupported_version": raw(v=2),
}


def test_each_bad_record_is_dead_lettered_with_its_code_and_good_ones_flow(memory_env, workers):
    env = memory_env()
    settings = settings_of(env)
    workers(env)

    records = [(b"s", good(0))]  # fixes the space's dimension first
    expected_codes = []
    for i, (code, value) in enumerate(BAD.items(), start=1):
        records.append((b"s", value))
        records.append((b"s", good(i)))
        expected_codes.append(code)
    goods = 1 + len(BAD)

    async def go():
        await ensure_topics(settings)
        await produce(env["KAFKA_BOOTSTRAP_SERVERS"], settings.topic("audio-features"), records)
        dl = await read_topic(settings, settings.topic("dead-letter"), count=len(BAD), timeout=90)
        recs = await read_topic(settings, settings.topic("recognitions"), count=goods, timeout=90)
        return dl, recs

    dead, recs = asyncio.run(go())
    assert {decode("recognitions", v).record.event_id for _, v in recs} == {f"good-{i}" for i in range(goods)}

    letters = [decode("dead-letter", v).record for _, v in dead]
    assert all(k == "s" for k, _ in dead), "dead letters keep the original key"
    assert [l.errors[0].code for l in letters] == expected_codes
    by_code = {l.errors[0].code: l for l in letters}
    for code, value in BAD.items():
        letter = by_code[code]
        assert letter.topic == settings.topic("audio-features")
        assert base64.b64decode(letter.raw) == value[: 64 * 1024]
        assert letter.errors[0].message
    assert by_code["missing_field"].errors[0].field == "vector"
    assert by_code["wrong_type"].errors[0].field == "ts"
    offsets = [l.offset for l in letters]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
