"""schemas/: records, validation codes, vector forms and the codec, without a broker."""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

import numpy as np
import orjson
import pytest

import schemas
from schemas import (
    DEFAULT_LIMITS,
    Audio,
    AudioFeature,
    BreakerState,
    DeadLetter,
    Interaction,
    Issue,
    Optimization,
    Outcome,
    PatternEvent,
    Recognition,
    RecordKind,
    Related,
    ResourceMetrics,
    ValidationError,
    ValidationLimits,
    ValidationResult,
    check_dimension,
    dead_letter,
    decode,
    decode_json,
    decode_vector,
    encode,
    encode_json,
    encode_vector,
    record_key,
)
from schemas import validation as codes


def b64_f32(values: list[float]) -> dict[str, str]:
    return {"dtype": "float32", "b64": base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PCM_TONE = (np.sin(np.arange(1600) / 5.0) * 8000).astype("<i2").tobytes()


def valid(kind: str) -> dict[str, Any]:
    """A minimal valid record of each kind, fresh for every call."""
    samples: dict[str, dict[str, Any]] = {
        "audio": {
            "v": 1, "id": "a1", "space": "s", "sample_rate": 16000, "channels": 1,
            "encoding": "pcm_s16le", "data": b64(PCM_TONE), "ts": 1700000000.5,
        },
        "audio-features": {"v": 1, "id": "f1", "space": "s", "vector": b64_f32([0.5, -1.0, 2.0]), "ts": 1.5},
        "interactions": {
            "v": 1, "id": "i1", "space": "s", "model_id": "m", "pattern_id": "p1",
            "config": {"lr": 0.01, "name": "x", "on": True, "n": 3},
            "outcome": {"success": True, "latency_ms": 12.5, "quality": 0.75}, "ts": 2.0,
        },
        "recognitions": {
            "v": 1, "event_id": "f1", "space": "s", "pattern_id": "p1", "similarity": 0.9,
            "confidence": 0.5, "new": False, "ts": 3.0,
        },
        "patterns": {
            "v": 1, "space": "s", "pattern_id": "p1", "event": "updated", "count": 4, "confidence": 0.8,
            "centroid": b64_f32([0.25, 0.5]), "related": [{"pattern_id": "p2", "similarity": 0.6}], "ts": 4.0,
        },
        "optimizations": {
            "v": 1, "space": "s", "pattern_id": "p1", "model_id": "m", "config": {"lr": 0.01},
            "effectiveness": 0.7, "support": 12, "source_model_id": "m2", "event": "recommended", "ts": 5.0,
        },
        "breaker-state": {
            "v": 1, "worker": "w1", "operation": "produce", "state": "half_open", "failure_rate": 0.25,
            "slow_call_rate": 0.0, "calls": 40, "reason": "probe", "ts": 6.0,
        },
        "resource-metrics": {
            "v": 1, "worker": "w1", "rss_bytes": 1 << 30, "cpu_percent": 55.5, "memory_estimate_bytes": 12345,
            "patterns": 10, "optimizations": 3, "health": "degraded", "ts": 7.0,
        },
        "dead-letter": {
            "v": 1, "topic": "fms.audio-features", "partition": 0, "offset": 42,
            "errors": [{"code": "vector_nan", "message": "vector holds NaN", "field": "vector"},
                       {"code": "invalid_json", "message": "not JSON"}],
            "warnings": [], "raw": b64(b"{oops"), "ts": 8.0,
        },
    }
    return copy.deepcopy(samples[kind])


ALL_KINDS = [k.value for k in (*schemas.INPUT_KINDS, *schemas.OUTPUT_KINDS)]


def dec(kind: str, obj: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> schemas.Decoded:
    return decode(kind, orjson.dumps(obj), limits)


def codes_of(d: schemas.Decoded) -> list[str]:
    return [i.code for i in d.result.errors]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_record_round_trips(kind: str) -> None:
    obj = valid(kind)
    d = dec(kind, obj)
    assert d.result.is_valid, d.result.errors
    assert d.ok
    assert d.record.to_dict() == obj
    again = decode(kind, encode(d.record))
    assert again.record == d.record
    assert orjson.loads(encode(d.record)) == obj


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decoded_record_type_and_kind(kind: str) -> None:
    record = dec(kind, valid(kind)).record
    assert type(record) is schemas.RECORD_CLASSES[RecordKind(kind)]
    assert schemas.kind_of(record) == kind


def test_array_vector_form_round_trips() -> None:
    obj = valid("audio-features")
    obj["vector"] = [0.5, -1.0, 2.0, 0.1]
    record = dec("audio-features", obj).record
    out = record.to_dict(vector_form="array")
    assert out["vector"] == pytest.approx([0.5, -1.0, 2.0, 0.1], rel=1e-7)
    assert np.array_equal(dec("audio-features", out).record.vector, record.vector)
    assert record.to_dict()["vector"]["dtype"] == "float32"


def test_both_vector_forms_give_the_same_array() -> None:
    values = [0.5, -1.25, 3.0]
    r1, r2 = ValidationResult(), ValidationResult()
    a = decode_vector(values, "v", r1, max_dim=10)
    b = decode_vector(b64_f32(values), "v", r2, max_dim=10)
    assert r1.is_valid and r2.is_valid
    assert a.dtype == b.dtype == np.float32
    assert a.flags.c_contiguous and b.flags.c_contiguous
    assert np.array_equal(a, b)


def test_b64_is_bit_exact() -> None:
    special = np.array(
        [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.1, 1 / 3],
        dtype=np.float32,
    )
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=5000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    vec = np.concatenate([special, bits[np.isfinite(bits)]])
    r = ValidationResult()
    back = decode_vector(encode_vector(vec), "v", r, max_dim=None)
    assert r.is_valid
    assert back.tobytes() == vec.astype("<f4").tobytes()
    # The array form survives JSON text bit for bit as well.
    text = orjson.dumps(encode_vector(vec, "array"))
    back = decode_vector(orjson.loads(text), "v", r, max_dim=None)
    assert back.tobytes() == vec.astype("<f4").tobytes()


def test_encode_vector_rejects_unknown_form() -> None:
    with pytest.raises(ValueError):
        encode_vector([1.0], "hex")


def test_interaction_contexts_round_trip() -> None:
    for key, value in (("event_id", "f1"), ("vector", b64_f32([1.0, 2.0]))):
        obj = valid("interactions")
        del obj["pattern_id"]
        obj[key] = value
        d = dec("interactions", obj)
        assert d.ok, d.result.errors
        assert d.record.to_dict() == obj
    obj = valid("interactions")
    obj["outcome"] = {"success": False}
    d = dec("interactions", obj)
    assert d.record.outcome == Outcome(success=False)
    assert d.record.to_dict() == obj


def test_optional_fields_are_omitted_and_null_is_absent() -> None:
    obj = valid("audio-features")
    obj["model_id"] = None
    obj["meta"] = None
    d = dec("audio-features", obj)
    assert d.ok
    assert "model_id" not in d.record.to_dict() and "meta" not in d.record.to_dict()
    obj = valid("audio-features") | {"model_id": "w2v2", "meta": {"src": "mic", "n": [1, 2]}}
    assert dec("audio-features", obj).record.to_dict() == obj
    obj = valid("patterns")
    del obj["related"]
    assert dec("patterns", obj).record.related is None
    obj["related"] = []
    assert dec("patterns", obj).record.to_dict() == obj


def test_integer_numbers_are_accepted_where_numbers_are() -> None:
    obj = valid("recognitions") | {"similarity": 1, "ts": 1700000000}
    d = dec("recognitions", obj)
    assert d.ok
    assert d.record.similarity == 1.0 and isinstance(d.record.ts, float)


def test_unknown_fields_are_ignored() -> None:
    for kind in ALL_KINDS:
        obj = valid(kind)
        extended = obj | {"future": {"x": [1, 2]}, "zz": None}
        d = dec(kind, extended)
        assert d.ok, (kind, d.result.errors)
        assert d.record.to_dict() == obj
    obj = valid("interactions")
    obj["outcome"]["future"] = "x"
    obj["related_stuff"] = 1
    assert dec("interactions", obj).ok
    obj = valid("audio-features")
    obj["vector"]["endianness"] = "little"
    assert dec("audio-features", obj).ok


def test_records_are_immutable_and_compare_by_value() -> None:
    a = dec("audio-features", valid("audio-features")).record
    b = dec("audio-features", valid("audio-features")).record
    assert a == b and a is not b
    other = dec("audio-features", valid("audio-features") | {"vector": [1.0, 2.0]}).record
    assert a != other
    with pytest.raises(AttributeError):
        a.id = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.vector[0] = 1.0
    with pytest.raises(TypeError):
        hash(a)


def test_constructed_records_coerce_vectors() -> None:
    src = np.array([1.0, 2.0], dtype=np.float64)
    record = AudioFeature(id="x", space="s", vector=src, ts=1.0)
    assert record.vector.dtype == np.float32 and not record.vector.flags.writeable
    src[0] = 9.0  # the caller's buffer stays theirs
    assert record.vector[0] == 1.0
    assert src.flags.writeable


# --------------------------------------------------------------------------- error codes


def only(d: schemas.Decoded, code: str, field: str | None = "__any__") -> None:
    assert codes_of(d) == [code], d.result.errors
    assert d.record is None
    if field != "__any__":
        assert d.result.errors[0].field == field


def test_invalid_utf8() -> None:
    only(decode("audio-features", b'{"v":1,"id":"\xff\xfe"}'), codes.INVALID_UTF8)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"v":1,}', b"[1]x", b"\xef\xbb\xbf{}", b'{"v":1, "id": nan}'])
def test_invalid_json(raw: bytes) -> None:
    only(decode("audio-features", raw), codes.INVALID_JSON)


@pytest.mark.parametrize("raw", [b"[1,2]", b'"s"', b"3", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    only(decode("interactions", raw), codes.NOT_AN_OBJECT)


def test_tombstone_is_not_an_object() -> None:
    d = decode("patterns", None)
    only(d, codes.NOT_AN_OBJECT)
    assert d.result.metadata["tombstone"] is True


@pytest.mark.parametrize("version", [None, 2, 0, True, "1", 1.0])
def test_unsupported_version_stops_validation(version: Any) -> None:
    obj = {"id": 5}  # otherwise broken: only the version is reported
    if version is not None:
        obj["v"] = version
    only(dec("audio-features", obj), codes.UNSUPPORTED_VERSION, "v")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_missing_fields(kind: str) -> None:
    obj = valid(kind)
    for key in [k for k in obj if k not in ("v", "related", "reason", "pattern_id")]:
        broken = {k: v for k, v in obj.items() if k != key}
        only(dec(kind, broken), codes.MISSING_FIELD, key)
        only(dec(kind, broken | {key: None}), codes.MISSING_FIELD, key)


def test_empty_identifier_is_missing() -> None:
    only(dec("audio-features", valid("audio-features") | {"space": ""}), codes.MISSING_FIELD, "space")
    obj = valid("interactions")
    obj["outcome"] = {}
    only(dec("interactions", obj), codes.MISSING_FIELD, "outcome.success")


@pytest.mark.parametrize(
    ("kind", "patch", "field"),
    [
        ("audio-features", {"id": 5}, "id"),
        ("audio-features", {"ts": True}, "ts"),
        ("audio-features", {"ts": "1.0"}, "ts"),
        ("audio-features", {"vector": "1,2"}, "vector"),
        ("audio-features", {"vector": [1.0, True]}, "vector[1]"),
        ("audio-features", {"vector": [1.0, "2"]}, "vector[1]"),
        ("audio-features", {"vector": [1.0, None]}, "vector[1]"),
        ("audio-features", {"vector": [[1.0], [2.0]]}, "vector[0]"),
        ("audio-features", {"vector": {"dtype": "float32", "b64": 5}}, "vector.b64"),
        ("audio-features", {"meta": [1]}, "meta"),
        ("audio-features", {"model_id": 3}, "model_id"),
        ("audio", {"sample_rate": 16000.0}, "sample_rate"),
        ("audio", {"channels": "1"}, "channels"),
        ("audio", {"data": [1, 2]}, "data"),
        ("interactions", {"config": [["lr", 1]]}, "config"),
        ("interactions", {"config": {"lr": [1, 2]}}, "config.lr"),
        ("interactions", {"config": {"opt": {"lr": 1}}}, "config.opt"),
        ("interactions", {"config": {"opt": None}}, "config.opt"),
        ("interactions", {"outcome": {"success": "yes"}}, "outcome.success"),
        ("interactions", {"outcome": {"success": 1}}, "outcome.success"),
        ("interactions", {"outcome": True}, "outcome"),
        ("recognitions", {"new": 0}, "new"),
        ("patterns", {"count": 4.0}, "count"),
        ("patterns", {"related": {"pattern_id": "p2"}}, "related"),
        ("patterns", {"related": ["p2"]}, "related[0]"),
        ("patterns", {"related": [{"pattern_id": "p2", "similarity": "high"}]}, "related[0].similarity"),
        ("breaker-state", {"reason": 5}, "reason"),
        ("breaker-state", {"state": 1}, "state"),
        ("dead-letter", {"errors": [{"code": "x", "message": 1}]}, "errors[0].message"),
        ("dead-letter", {"partition": "0"}, "partition"),
    ],
)
def test_wrong_type(kind: str, patch: dict[str, Any], field: str) -> None:
    only(dec(kind, valid(kind) | patch), codes.WRONG_TYPE, field)


@pytest.mark.parametrize(
    ("kind", "patch", "field"),
    [
        ("interactions", {"outcome": {"success": True, "quality": 1.5}}, "outcome.quality"),
        ("interactions", {"outcome": {"success": True, "quality": -0.1}}, "outcome.quality"),
        ("interactions", {"outcome": {"success": True, "latency_ms": -1}}, "outcome.latency_ms"),
        ("audio-features", {"ts": -1.0}, "ts"),
        ("optimizations", {"effectiveness": 1.01}, "effectiveness"),
        ("optimizations", {"support": -1}, "support"),
        ("patterns", {"count": -1}, "count"),
        ("patterns", {"count": 2**63}, "count"),
        ("resource-metrics", {"rss_bytes": -5}, "rss_bytes"),
        ("breaker-state", {"failure_rate": -0.5}, "failure_rate"),
    ],
)
def test_out_of_range(kind: str, patch: dict[str, Any], field: str) -> None:
    only(dec(kind, valid(kind) | patch), codes.OUT_OF_RANGE, field)


def test_range_edges_are_accepted() -> None:
    obj = valid("interactions")
    obj["outcome"] = {"success": True, "quality": 0, "latency_ms": 0}
    assert dec("interactions", obj).ok
    obj["outcome"]["quality"] = 1
    assert dec("interactions", obj).ok


def test_non_finite_numbers_outside_vectors() -> None:
    only(decode("recognitions", orjson.dumps(valid("recognitions"))[:-1].replace(b'"ts":3.0', b'"ts":NaN') + b"}"),
         codes.OUT_OF_RANGE, "ts")
    raw = orjson.dumps(valid("interactions")).replace(b'"lr":0.01', b'"lr":Infinity')
    only(decode("interactions", raw), codes.OUT_OF_RANGE, "config.lr")
    # Where no field check looks (meta), a NaN token still makes the value invalid JSON.
    raw = orjson.dumps(valid("audio-features") | {"meta": {"x": 1}}).replace(b'"x":1', b'"x":NaN')
    only(decode("audio-features", raw), codes.INVALID_JSON)


@pytest.mark.parametrize(
    ("kind", "key"),
    [("audio-features", "id"), ("audio-features", "space"), ("audio-features", "model_id"),
     ("interactions", "pattern_id"), ("interactions", "model_id"), ("recognitions", "event_id"),
     ("optimizations", "source_model_id")],
)
def test_id_too_long(kind: str, key: str) -> None:
    assert dec(kind, valid(kind) | {key: "x" * 128}).ok
    only(dec(kind, valid(kind) | {key: "x" * 129}), codes.ID_TOO_LONG, key)


def test_id_length_counts_characters_not_bytes() -> None:
    assert dec("audio-features", valid("audio-features") | {"id": "é" * 128}).ok


def test_vector_nan_from_json_token_and_b64() -> None:
    raw = b'{"v":1,"id":"f","space":"s","vector":[1.0,NaN,2.0],"ts":1}'
    only(decode("audio-features", raw), codes.VECTOR_NAN, "vector")
    only(dec("audio-features", valid("audio-features") | {"vector": b64_f32([1.0, math.nan])}),
         codes.VECTOR_NAN, "vector")
    # A quiet NaN with a payload is still NaN.
    payload = np.array([0x7FC00123], dtype="<u4").view("<f4")
    only(dec("audio-features", valid("audio-features") | {"vector": b64_f32(list(payload))}), codes.VECTOR_NAN)


@pytest.mark.parametrize("token", [b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_vector_infinite_from_json(token: bytes) -> None:
    raw = b'{"v":1,"id":"f","space":"s","vector":[1.0,' + token + b'],"ts":1}'
    only(decode("audio-features", raw), codes.VECTOR_INFINITE, "vector")


def test_vector_infinite_from_b64_and_float32_overflow() -> None:
    only(dec("audio-features", valid("audio-features") | {"vector": b64_f32([math.inf])}), codes.VECTOR_INFINITE)
    only(dec("audio-features", valid("audio-features") | {"vector": [1.0, 1e39]}), codes.VECTOR_INFINITE)
    raw = b'{"v":1,"id":"f","space":"s","vector":[-1' + b"0" * 39 + b'],"ts":1}'
    only(decode("audio-features", raw), codes.VECTOR_INFINITE)
    r = ValidationResult()
    assert decode_vector([10**400], "v", r, max_dim=None) is None
    assert r.error_codes == [codes.VECTOR_INFINITE]
    assert dec("audio-features", valid("audio-features") | {"vector": [3.4e38, 1e-50]}).ok


def test_vector_empty() -> None:
    only(dec("audio-features", valid("audio-features") | {"vector": []}), codes.VECTOR_EMPTY, "vector")
    only(dec("audio-features", valid("audio-features") | {"vector": {"dtype": "float32", "b64": ""}}),
         codes.VECTOR_EMPTY, "vector")


def test_vector_too_large() -> None:
    assert dec("audio-features", valid("audio-features") | {"vector": [0.5] * 1000}).ok
    only(dec("audio-features", valid("audio-features") | {"vector": [0.5] * 1001}), codes.VECTOR_TOO_LARGE)
    small = ValidationLimits(max_dim=4)
    only(dec("patterns", valid("patterns") | {"centroid": b64_f32([1.0] * 5)}, small),
         codes.VECTOR_TOO_LARGE, "centroid")
    assert dec("patterns", valid("patterns") | {"centroid": b64_f32([1.0] * 4)}, small).ok


def test_dimension_mismatch() -> None:
    r = ValidationResult()
    vec = np.zeros(3, dtype=np.float32)
    assert check_dimension(vec, None, "vector", r)
    assert check_dimension(vec, 3, "vector", r)
    assert r.is_valid
    assert not check_dimension(vec, 4, "vector", r)
    assert r.error_codes == [codes.DIMENSION_MISMATCH]
    assert r.errors[0].field == "vector"


@pytest.mark.parametrize(
    "text", ["!!!!", "AAA", "AAAA=", "AA==AA==", "AAAA\n", "ÅAAA", "AAA" + "=" * 1]
)
def test_invalid_base64(text: str) -> None:
    only(dec("audio-features", valid("audio-features") | {"vector": {"dtype": "float32", "b64": text}}),
         codes.INVALID_BASE64, "vector.b64")


def test_b64_must_hold_whole_float32s() -> None:
    only(dec("audio-features", valid("audio-features") | {"vector": {"dtype": "float32", "b64": b64(b"\0" * 6)}}),
         codes.INVALID_BASE64, "vector.b64")


def test_invalid_base64_in_audio_and_dead_letter() -> None:
    only(dec("audio", valid("audio") | {"data": "not base64!"}), codes.INVALID_BASE64, "data")
    only(dec("dead-letter", valid("dead-letter") | {"raw": "%%"}), codes.INVALID_BASE64, "raw")


def test_vector_object_fields() -> None:
    only(dec("audio-features", valid("audio-features") | {"vector": {"b64": b64(b"\0" * 4)}}),
         codes.MISSING_FIELD, "vector.dtype")
    only(dec("audio-features", valid("audio-features") | {"vector": {"dtype": "float32"}}),
         codes.MISSING_FIELD, "vector.b64")
    only(dec("audio-features", valid("audio-features") | {"vector": {"dtype": "float64", "b64": b64(b"\0" * 8)}}),
         codes.INVALID_ENUM, "vector.dtype")


def test_record_too_large() -> None:
    limits = ValidationLimits(max_record_bytes=64)
    obj = valid("audio-features")
    raw = orjson.dumps(obj)
    assert len(raw) > 64
    only(decode("audio-features", raw, limits), codes.RECORD_TOO_LARGE)
    # Checked before parsing, so even garbage gets this code.
    only(decode("audio-features", b"\xff" * (DEFAULT_LIMITS.max_record_bytes + 1)), codes.RECORD_TOO_LARGE)


@pytest.mark.parametrize(
    "context",
    [{}, {"pattern_id": "p", "event_id": "e"}, {"pattern_id": "p", "vector": [1.0]},
     {"pattern_id": "p", "event_id": "e", "vector": [1.0]}, {"pattern_id": None}],
)
def test_ambiguous_context(context: dict[str, Any]) -> None:
    obj = valid("interactions")
    del obj["pattern_id"]
    only(dec("interactions", obj | context), codes.AMBIGUOUS_CONTEXT)


@pytest.mark.parametrize(
    ("kind", "patch", "field"),
    [
        ("audio", {"channels": 3}, "channels"),
        ("audio", {"channels": 0}, "channels"),
        ("patterns", {"event": "exploded"}, "event"),
        ("optimizations", {"event": "created"}, "event"),
        ("breaker-state", {"state": "ajar"}, "state"),
        ("resource-metrics", {"health": "fine"}, "health"),
    ],
)
def test_invalid_enum(kind: str, patch: dict[str, Any], field: str) -> None:
    only(dec(kind, valid(kind) | patch), codes.INVALID_ENUM, field)


@pytest.mark.parametrize("event", ["created", "updated", "merged", "evicted"])
def test_every_pattern_event_is_accepted(event: str) -> None:
    assert dec("patterns", valid("patterns") | {"event": event}).ok


# --------------------------------------------------------------------------- audio


def test_unknown_encoding() -> None:
    only(dec("audio", valid("audio") | {"encoding": "mp3"}), codes.UNKNOWN_ENCODING, "encoding")


@pytest.mark.parametrize(
    ("encoding", "channels", "nbytes"), [("pcm_s16le", 1, 3), ("pcm_s16le", 2, 6), ("f32le", 1, 6), ("f32le", 2, 12)]
)
def test_audio_length_mismatch(encoding: str, channels: int, nbytes: int) -> None:
    obj = valid("audio") | {"encoding": encoding, "channels": channels, "data": b64(b"\x01" * nbytes)}
    only(dec("audio", obj), codes.AUDIO_LENGTH_MISMATCH, "data")


def test_audio_empty() -> None:
    only(dec("audio", valid("audio") | {"data": ""}), codes.AUDIO_EMPTY, "data")


def test_audio_too_long() -> None:
    limits = ValidationLimits(max_audio_seconds=0.05)
    d = dec("audio", valid("audio"), limits)  # 1600 frames at 16 kHz: 0.1 s
    only(d, codes.AUDIO_TOO_LONG, "data")
    assert dec("audio", valid("audio")).result.metadata["duration_s"] == pytest.approx(0.1)
    # The default limit: 31 s at 8 kHz.
    long = valid("audio") | {"sample_rate": 8000, "data": b64(PCM_TONE * 155)}
    only(dec("audio", long), codes.AUDIO_TOO_LONG)


def test_audio_nan() -> None:
    samples = np.array([0.1, np.nan, -0.2, 0.3], dtype="<f4")
    only(dec("audio", valid("audio") | {"encoding": "f32le", "data": b64(samples.tobytes())}), codes.AUDIO_NAN, "data")
    samples = np.array([0.1, np.inf], dtype="<f4")
    only(dec("audio", valid("audio") | {"encoding": "f32le", "data": b64(samples.tobytes())}), codes.AUDIO_NAN)


@pytest.mark.parametrize("rate", [7999, 192001, 0, -16000])
def test_sample_rate_out_of_range(rate: int) -> None:
    only(dec("audio", valid("audio") | {"sample_rate": rate}), codes.SAMPLE_RATE_OUT_OF_RANGE, "sample_rate")


@pytest.mark.parametrize("rate", [8000, 44100, 192000])
def test_sample_rate_edges(rate: int) -> None:
    assert dec("audio", valid("audio") | {"sample_rate": rate}).ok


@pytest.mark.parametrize(
    ("encoding", "data"),
    [("pcm_s16le", np.zeros(800, dtype="<i2").tobytes()),
     ("pcm_s16le", np.array([0, 2, -3, 1] * 100, dtype="<i2").tobytes()),
     ("f32le", np.full(800, 1e-6, dtype="<f4").tobytes())],
)
def test_audio_silent_is_a_warning(encoding: str, data: bytes) -> None:
    d = dec("audio", valid("audio") | {"encoding": encoding, "data": b64(data)})
    assert d.ok
    assert [w.code for w in d.result.warnings] == [codes.AUDIO_SILENT]


def test_audible_audio_has_no_warning() -> None:
    d = dec("audio", valid("audio"))
    assert d.ok and not d.result.warnings


def test_audio_samples_and_stereo() -> None:
    stereo = np.array([[1000, -1000], [16384, -32768]], dtype="<i2")
    d = dec("audio", valid("audio") | {"channels": 2, "data": b64(stereo.tobytes())})
    assert d.ok
    audio: Audio = d.record
    assert audio.frames == 2
    samples = audio.samples()
    assert samples.shape == (2, 2) and samples.dtype == np.float32
    assert samples[1, 0] == 0.5 and samples[1, 1] == -1.0


# --------------------------------------------------------------------------- collection


def test_all_errors_of_a_record_are_collected() -> None:
    obj = {
        "v": 1, "id": "x" * 200, "space": 5, "model_id": "m", "pattern_id": "p", "event_id": "e",
        "config": {"a": [1]}, "outcome": {"success": "no", "quality": 3}, "ts": "now",
    }
    d = dec("interactions", obj)
    got = sorted((i.code, i.field) for i in d.result.errors)
    assert got == sorted(
        [
            (codes.AMBIGUOUS_CONTEXT, None),
            (codes.ID_TOO_LONG, "id"),
            (codes.WRONG_TYPE, "space"),
            (codes.WRONG_TYPE, "config.a"),
            (codes.WRONG_TYPE, "outcome.success"),
            (codes.OUT_OF_RANGE, "outcome.quality"),
            (codes.WRONG_TYPE, "ts"),
        ]
    )
    assert d.record is None


def test_audio_errors_are_collected() -> None:
    obj = valid("audio") | {"sample_rate": 100, "channels": 5, "encoding": "ogg", "id": ""}
    assert sorted(codes_of(dec("audio", obj))) == sorted(
        [codes.SAMPLE_RATE_OUT_OF_RANGE, codes.INVALID_ENUM, codes.UNKNOWN_ENCODING, codes.MISSING_FIELD]
    )


def test_every_error_code_is_distinct_and_documented() -> None:
    names = [n for n in dir(codes) if n.isupper() and isinstance(getattr(codes, n), str)]
    values = [getattr(codes, n) for n in names]
    assert len(values) == len(set(values)) == 31
    assert set(values) == codes.ERROR_CODES | codes.WARNING_CODES
    for name, value in zip(names, values):
        assert value == name.lower()
        assert name in codes.__doc__ and value in codes.__doc__
        assert getattr(schemas, name) == value


def test_metadata() -> None:
    raw = orjson.dumps(valid("audio-features"))
    meta = decode("audio-features", raw).result.metadata
    assert meta["kind"] == "audio-features" and meta["bytes"] == len(raw) and meta["dim"] == 3
    assert meta["space"] == "s" and meta["id"] == "f1"
    assert dec("audio-features", valid("audio-features") | {"id": 7}).result.metadata["space"] == "s"


# --------------------------------------------------------------------------- codec helpers


def test_encode_checks_what_it_writes() -> None:
    good = Recognition(event_id="e", space="s", pattern_id="p", similarity=0.5, confidence=0.5, new=True, ts=1.0)
    assert decode("recognitions", encode(good)).record == good
    bad = Recognition(event_id="e", space="s", pattern_id="p", similarity=math.nan, confidence=0.5, new=True, ts=1.0)
    with pytest.raises(ValidationError) as exc:
        encode(bad)
    assert exc.value.result.error_codes == [codes.OUT_OF_RANGE]
    assert b"null" in encode(bad, validate=False)
    # Size policies are the reader's, not the writer's.
    wide = PatternEvent(space="s", pattern_id="p", event="created", count=1, confidence=1.0,
                        centroid=np.ones(1024, dtype=np.float32), ts=1.0)
    assert decode("patterns", encode(wide), ValidationLimits(max_dim=2048)).record == wide


def test_an_outgoing_vector_is_checked_from_the_values_it_encoded() -> None:
    # encode() does not decode its own base64 again, but still rejects what breaks the contract.
    def event(centroid):
        return PatternEvent(space="s", pattern_id="p", event="created", count=1, confidence=1.0,
                            centroid=np.asarray(centroid, dtype=np.float32), ts=1.0)

    for bad, code in (([1.0, math.nan], codes.VECTOR_NAN), ([0.0, 0.0], codes.VECTOR_ZERO),
                      ([1.0, math.inf], codes.VECTOR_INFINITE)):
        with pytest.raises(ValidationError) as exc:
            encode(event(bad))
        assert exc.value.result.error_codes == [code]
    # A b64 form changed after it was made is decoded like any input.
    form = encode_vector(np.array([1.0, 2.0], dtype=np.float32))
    form["b64"] = "not base64!"
    result = ValidationResult()
    assert decode_vector(form, "centroid", result, max_dim=None) is None
    assert result.error_codes == [codes.INVALID_BASE64]
    assert decode_vector(encode_vector(np.array([1.0, 2.0], dtype=np.float32)), "centroid",
                         ValidationResult(), max_dim=None).tolist() == [1.0, 2.0]


def test_constructed_records_encode_like_decoded_ones() -> None:
    records = [
        Interaction(id="i", space="s", model_id="m", config={"k": 1}, outcome=Outcome(True, quality=0.5), ts=1.0,
                    vector=[1.0, 2.0]),
        PatternEvent(space="s", pattern_id="p", event="merged", count=2, confidence=0.5, centroid=[0.5], ts=1.0,
                     related=[Related("q", 0.25)]),
        Optimization(space="s", pattern_id="p", model_id="m", config={}, effectiveness=0.5, support=3,
                     source_model_id="m", event="retired", ts=1.0),
        BreakerState(worker="w", operation="op", state="open", failure_rate=0.5, slow_call_rate=0.1, calls=9, ts=1.0),
        ResourceMetrics(worker="w", rss_bytes=1, cpu_percent=1.0, memory_estimate_bytes=2, patterns=3,
                        optimizations=4, health="healthy", ts=1.0),
    ]
    for record in records:
        for form in ("b64", "array"):
            back = decode(schemas.kind_of(record), encode(record, vector_form=form))
            assert back.ok, back.result.errors
            assert back.record == record


def test_record_keys_and_topics() -> None:
    assert RecordKind.AUDIO_FEATURES.topic() == "fms.audio-features"
    assert RecordKind.DEAD_LETTER.topic("test.") == "test.dead-letter"
    assert [k.topic() for k in schemas.INPUT_KINDS] == ["fms.audio", "fms.audio-features", "fms.interactions"]
    assert record_key(dec("patterns", valid("patterns")).record) == "s/p1"
    assert record_key(dec("optimizations", valid("optimizations")).record) == "s/p1/m"
    assert record_key(dec("breaker-state", valid("breaker-state")).record) == "w1/produce"
    assert record_key(dec("resource-metrics", valid("resource-metrics")).record) == "w1"
    assert record_key(dec("interactions", valid("interactions")).record) == "s"
    with pytest.raises(ValueError):
        record_key(dec("dead-letter", valid("dead-letter")).record)
    with pytest.raises(ValueError):
        decode("no-such-kind", b"{}")


def test_dead_letter_bounds_and_round_trips() -> None:
    raw = b"x" * (200 * 1024)
    result = ValidationResult()
    for i in range(500):
        result.error(codes.WRONG_TYPE, "m" * 2000, f"config.{'k' * 1000}{i}")
    result.warn(codes.AUDIO_SILENT, "quiet")
    dl = dead_letter(topic="fms.audio", partition=3, offset=17, raw=raw, result=result, ts=9.0)
    assert isinstance(dl, DeadLetter)
    assert dl.raw_bytes == raw[: 64 * 1024]
    assert len(dl.errors) == 100 and dl.warnings == (Issue(codes.AUDIO_SILENT, "quiet"),)
    assert "400 more" in dl.errors[-1].message
    wire = encode(dl)
    assert len(wire) < 1_000_000
    back = decode("dead-letter", wire)
    assert back.ok and back.record == dl


def test_dead_letter_of_a_real_failure_and_a_tombstone() -> None:
    raw = b'{"v":1,"id":"f","space":"s","vector":[NaN],"ts":1}'
    d = decode("audio-features", raw)
    dl = dead_letter(topic="fms.audio-features", partition=0, offset=1, raw=raw, result=d.result, ts=2.0)
    assert dl.to_dict()["errors"] == [{"code": "vector_nan", "message": "vector holds NaN", "field": "vector"}]
    assert dl.raw_bytes == raw
    d = decode("audio-features", None)
    dl = dead_letter(topic="t", partition=0, offset=2, raw=None, result=d.result, ts=2.0)
    assert dl.raw == "" and dl.errors[0].code == codes.NOT_AN_OBJECT
    assert decode("dead-letter", encode(dl)).record == dl


def test_issue_and_result_helpers() -> None:
    assert Issue("c", "m").to_dict() == {"code": "c", "message": "m"}
    assert Issue("c", "m", "f").to_dict() == {"code": "c", "message": "m", "field": "f"}
    r = ValidationResult()
    assert r.is_valid
    r.warn(codes.AUDIO_SILENT, "quiet")
    assert r.is_valid
    r.raise_if_invalid()
    r.error(codes.WRONG_TYPE, "bad", "x")
    assert not r.is_valid
    with pytest.raises(ValidationError, match="wrong_type"):
        r.raise_if_invalid()


def test_json_helpers() -> None:
    state = {"a": np.arange(3, dtype=np.float32), "b": [1, "x"], "n": np.float32(0.5)}
    assert decode_json(encode_json(state)) == {"a": [0.0, 1.0, 2.0], "b": [1, "x"], "n": 0.5}
    record = dec("patterns", valid("patterns")).record
    assert decode_json(encode_json({"p": record})) == {"p": valid("patterns")}
    assert decode_json('{"x": 1}') == {"x": 1}
    with pytest.raises(ValueError):
        decode_json(b"{nope")
    with pytest.raises(TypeError):
        encode_json(object())


def test_recognize_request_body() -> None:
    d = decode("recognize-request", b'{"space":"s","vector":[1,2,3]}')
    assert d.ok and d.record.model_id is None and d.record.vector.tolist() == [1.0, 2.0, 3.0]
    only(decode("recognize-request", b'{"space":"s"}'), codes.MISSING_FIELD, "vector")
    with pytest.raises(ValueError):
        RecordKind.RECOGNIZE_REQUEST.topic()


def test_schemas_imports_no_stream_runtime() -> None:
    import subprocess
    import sys

    code = "import sys, schemas; sys.exit(any(m in sys.modules for m in ('faust', 'aiokafka')))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_numpy_scalars_become_python_ones() -> None:
    rec = Recognition(event_id="e", space="s", pattern_id="p", similarity=np.float32(0.5),
                      confidence=np.float64(0.25), new=np.bool_(True), ts=np.float64(1.0))
    assert type(rec.similarity) is float and type(rec.new) is bool
    assert decode("recognitions", encode(rec)).record == rec
    pattern = PatternEvent(space="s", pattern_id="p", event="created", count=np.int64(3), confidence=np.float32(1),
                           centroid=[1.0], ts=1.0, related=[Related("q", np.float32(0.5))])
    assert type(pattern.count) is int and type(pattern.related[0].similarity) is float
    opt = Optimization(space="s", pattern_id="p", model_id="m", config={"lr": np.float32(0.5)}, effectiveness=0.5,
                       support=np.int32(2), source_model_id="m", event="recommended", ts=1.0)
    assert decode("optimizations", encode(opt)).record == opt
    assert Outcome(success=np.bool_(False), quality=np.float32(0.5)).to_dict() == {"success": False, "quality": 0.5}


def test_zero_vector_is_rejected_in_both_forms():
    from schemas.codec import decode, encode_json
    for vector in ([0.0, 0.0, 0.0], {"dtype": "float32", "b64": "AAAAAAAAAAAAAAAA"}):
        d = decode("audio-features", encode_json({"v": 1, "id": "z", "space": "s", "vector": vector, "ts": 1.0}))
        assert d.record is None
        assert [e.code for e in d.result.errors] == ["vector_zero"]


def test_a_merged_pattern_record_names_what_it_absorbed_and_bad_ids_are_named_by_position():
    event = PatternEvent(space="s", pattern_id="p-1", event="merged", count=3, confidence=0.5,
                         centroid=[0.6, 0.8], ts=1.0, absorbed=["p-2", "p-3"])
    d = event.to_dict()
    assert d["absorbed"] == ["p-2", "p-3"]
    back = decode("patterns", encode(event)).record
    assert back.absorbed == ("p-2", "p-3") and back.to_dict() == d
    assert "absorbed" not in PatternEvent(space="s", pattern_id="p", event="created", count=1, confidence=1.0,
                                          centroid=[1.0], ts=1.0).to_dict()
    bad = decode("patterns", orjson.dumps({**d, "absorbed": ["p-2", 7, ""]}))
    assert not bad.result.is_valid
    assert [e.field for e in bad.result.errors] == ["absorbed[1]", "absorbed[2]"]


def test_input_records_are_checked_when_made_with_the_dead_letters_codes() -> None:
    # A service learns of a bad record where it makes it, with the codes a dead letter would carry.
    with pytest.raises(ValidationError) as exc:
        AudioFeature(id="", space="s", vector=np.ones(3, dtype=np.float32), ts=1.0)
    assert exc.value.result.error_codes == [codes.MISSING_FIELD]  # an empty id is no id
    with pytest.raises(ValidationError) as exc:
        AudioFeature(id="f", space="s", vector=np.array([1.0, math.nan], dtype=np.float32), ts=1.0)
    assert exc.value.result.error_codes == [codes.VECTOR_NAN]
    with pytest.raises(ValidationError) as exc:
        Interaction(id="i", space="s", model_id="m", config={"beam": [1, 2]}, outcome=Outcome(True), ts=1.0,
                    pattern_id="p")
    assert codes.WRONG_TYPE in exc.value.result.error_codes
    with pytest.raises(ValidationError) as exc:
        Audio(id="a", space="s", sample_rate=16_000, channels=1, encoding="pcm_s16le", data=b"\x00", ts=1.0)
    assert exc.value.result.error_codes == [codes.AUDIO_LENGTH_MISMATCH]
    # Decoding builds records from values it has just checked, and checks them once.
    good = AudioFeature(id="f", space="s", vector=np.ones(3, dtype=np.float32), ts=1.0)
    assert decode("audio-features", encode(good)).record == good
    # A worker's size policies are not the writer's: a wide vector is a valid record to make.
    AudioFeature(id="w", space="s", vector=np.ones(4096, dtype=np.float32), ts=1.0)
