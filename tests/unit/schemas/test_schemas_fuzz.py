"""Property tests: decode never raises, and valid vectors round-trip."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import ValidationResult, decode, decode_vector, encode, encode_vector

KINDS = [k.value for k in schemas.RecordKind]
FIELDS = sorted(
    {
        "v", "id", "space", "sample_rate", "channels", "encoding", "data", "ts", "meta", "vector", "model_id",
        "pattern_id", "event_id", "config", "outcome", "event_id", "similarity", "confidence", "new", "event",
        "count", "centroid", "related", "effectiveness", "support", "source_model_id", "worker", "operation",
        "state", "failure_rate", "slow_call_rate", "calls", "reason", "rss_bytes", "cpu_percent",
        "memory_estimate_bytes", "patterns", "optimizations", "health", "topic", "partition", "offset",
        "errors", "warnings", "raw", "success", "latency_ms", "quality", "dtype", "b64",
    }
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["float32", "pcm_s16le", "f32le", "created", "open", "healthy", "AAAA", "AACAPw=="])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(kind: str, raw: bytes) -> None:
    d = decode(kind, raw)
    assert d.record is None or d.result.is_valid
    assert d.record is not None or d.result.errors


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    obj=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12),
    tweak=st.sampled_from([b"", b"NaN", b"Infinity", b"-Infinity", b"1e400", b"\xff"]),
)
def test_arbitrary_objects_never_raise(kind: str, obj: dict[str, Any], tweak: bytes) -> None:
    obj["v"] = 1
    # The stdlib writes integers of any size, which orjson cannot.
    raw = json.dumps(obj, ensure_ascii=False).encode()
    if tweak:
        # Splice a non-JSON token in place of the first number or string, if there is one.
        for needle in (b"1", b'""', b"true", b"null"):
            at = raw.find(needle, 6)
            if at >= 0:
                raw = raw[:at] + tweak + raw[at + len(needle):]
                break
    d = decode(kind, raw)
    if d.record is not None:
        # Whatever is accepted must encode, and decode again to the same record.
        assert decode(kind, encode(d.record)).record == d.record


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(finite_f32, min_size=1, max_size=64).filter(any), form=st.sampled_from(["b64", "array"]))
def test_valid_vectors_round_trip(values: list[float], form: str) -> None:
    vec = np.asarray(values, dtype=np.float32)
    wire = orjson.loads(orjson.dumps(encode_vector(vec, form)))
    result = ValidationResult()
    back = decode_vector(wire, "vector", result, max_dim=None)
    assert result.is_valid, result.errors
    assert back.tobytes() == vec.tobytes()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=4, max_size=256).filter(lambda b: len(b) % 4 == 0))
def test_any_b64_float32_bytes_decode_or_report(data: bytes) -> None:
    result = ValidationResult()
    vec = decode_vector(
        {"dtype": "float32", "b64": base64.b64encode(data).decode()}, "vector", result, max_dim=None
    )
    floats = np.frombuffer(data, dtype="<f4")
    if not np.isfinite(floats).all():
        assert vec is None and set(result.error_codes) <= {"vector_nan", "vector_infinite"}
    elif not floats.any():
        assert vec is None and result.error_codes == ["vector_zero"]
    else:
        assert vec is not None and vec.tobytes() == data


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(finite_f32, min_size=1, max_size=32).filter(any),
    space=st.text(min_size=1, max_size=128),
    ts=st.floats(min_value=0, max_value=4e9),
)
def test_audio_feature_records_round_trip(values: list[float], space: str, ts: float) -> None:
    obj = {"v": 1, "id": "x", "space": space, "vector": encode_vector(values), "ts": ts}
    d = decode("audio-features", orjson.dumps(obj))
    assert d.ok, d.result.errors
    assert d.record.to_dict() == obj


@settings(max_examples=1000, deadline=None)
@given(text=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n!", max_size=40)
       | st.binary(max_size=30).map(lambda b: __import__("base64").b64encode(b).decode("ascii")))
def test_b64_decoding_is_exactly_the_standard_librarys_strict_base64(text):
    # pybase64 (SIMD) in front of base64.b64decode(validate=True): same bytes, same refusals.
    import base64
    import binascii

    from schemas.vectors import decode_base64

    try:
        expected = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    assert decode_base64(text) == expected


@given(values=st.lists(finite_f32, min_size=1, max_size=64))
def test_b64_encoding_is_the_standard_librarys(values):
    import base64

    from schemas.vectors import encode_vector

    data = np.asarray(values, dtype="<f4").tobytes()
    assert encode_vector(np.asarray(values, dtype=np.float32))["b64"] == base64.b64encode(data).decode("ascii")
