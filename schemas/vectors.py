"""The two wire forms of a vector: a JSON array of numbers, or little-endian float32 in base64.

Decoded vectors are contiguous, read-only float32 arrays: records are immutable, and a shared
array that someone scales in place would silently change every holder of it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import pybase64  # the stdlib's codec, SIMD: 15 -> 1 us to decode a 768-d vector, 4.9 -> 0.5 to encode

from .validation import (
    DIMENSION_MISMATCH,
    INVALID_BASE64,
    INVALID_ENUM,
    MISSING_FIELD,
    VECTOR_EMPTY,
    VECTOR_INFINITE,
    VECTOR_NAN,
    VECTOR_ZERO,
    VECTOR_TOO_LARGE,
    WRONG_TYPE,
    ValidationResult,
)

FLOAT32_LE = np.dtype("<f4")
_NUMBER_TYPES = frozenset({int, float})
VECTOR_FORMS = ("b64", "array")


def decode_vector(
    obj: Any, field: str, result: ValidationResult, *, max_dim: int | None
) -> np.ndarray | None:
    """Return the vector as a float32 array, or None after adding its errors to `result`."""
    if isinstance(obj, list):
        return _decode_array(obj, field, result, max_dim)
    if isinstance(obj, dict):
        return _decode_b64(obj, field, result, max_dim)
    result.error(
        WRONG_TYPE,
        f"a vector is a JSON array of numbers or a float32/b64 object, not {json_type_name(obj)}",
        field,
    )
    return None


class EncodedVector(dict):
    """The b64 form of a vector this process encoded, which still knows its float32 values.

    Validating a record on its way out (schemas.codec.encode) reads them instead of decoding the
    base64 again: it decodes to exactly these bits. Only `encode_vector` makes one; parsed JSON
    never holds one, so every vector that comes in is decoded and checked in full.
    """

    __slots__ = ("array", "text")


def encode_vector(arr: Any, form: str = "b64") -> dict[str, str] | list[float]:
    """The wire form of a vector; "b64" round-trips float32 bit for bit."""
    vec = np.asarray(arr, dtype=np.float32).reshape(-1)
    if form == "b64":
        data = vec.astype(FLOAT32_LE, copy=False).tobytes()
        text = pybase64.b64encode_as_string(data)
        encoded = EncodedVector(dtype="float32", b64=text)
        # A copy of values that can still change: the text stays what they were.
        encoded.array, encoded.text = (vec.copy() if vec.flags.writeable else vec), text
        return encoded
    if form == "array":
        # float32 -> Python float is exact, and shortest-repr float64 text parses back to the
        # same double, which casts back to the same float32: the array form round-trips too.
        return vec.tolist()
    raise ValueError(f"unknown vector form {form!r}; expected one of {VECTOR_FORMS}")


def check_dimension(
    vec: np.ndarray, expected: int | None, field: str, result: ValidationResult
) -> bool:
    """False (and DIMENSION_MISMATCH) when the space has a dimension and `vec` differs from it."""
    if expected is None or len(vec) == expected:
        return True
    result.error(
        DIMENSION_MISMATCH, f"vector has dimension {len(vec)}, its space has {expected}", field
    )
    return False


def as_vector(arr: Any) -> np.ndarray:
    """Coerce to the in-memory form records hold: contiguous, read-only, 1-D float32."""
    if (
        isinstance(arr, np.ndarray)
        and arr.dtype == np.float32
        and arr.ndim == 1
        and arr.flags.c_contiguous
        and not arr.flags.writeable
    ):
        return arr
    # A copy, so freezing it never freezes the caller's own buffer.
    return _freeze(np.array(arr, dtype=np.float32).reshape(-1))


def _decode_array(
    items: list[Any], field: str, result: ValidationResult, max_dim: int | None
) -> np.ndarray | None:
    if not items:
        result.error(VECTOR_EMPTY, "vector is empty", field)
        return None
    # map/set run in C: the common all-numbers case never executes Python code per element.
    if not set(map(type, items)) <= _NUMBER_TYPES:
        index, bad = next((i, x) for i, x in enumerate(items) if type(x) not in _NUMBER_TYPES)
        result.error(WRONG_TYPE, f"vector element is {json_type_name(bad)}, not a number", f"{field}[{index}]")
        return None
    ok = _check_length(len(items), field, result, max_dim)
    try:
        wide = np.asarray(items, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        result.error(VECTOR_INFINITE, "vector holds an integer too large for float32", field)
        return None
    vec = _finish(wide, field, result)
    return vec if ok else None


def _decode_b64(
    obj: dict[str, Any], field: str, result: ValidationResult, max_dim: int | None
) -> np.ndarray | None:
    errors_before = len(result.errors)
    dtype, text = obj.get("dtype"), obj.get("b64")
    if dtype is None:
        result.error(MISSING_FIELD, "vector object needs a dtype", f"{field}.dtype")
    elif dtype != "float32":
        result.error(INVALID_ENUM, f"vector dtype must be 'float32', not {dtype!r:.40}", f"{field}.dtype")
    if text is None:
        result.error(MISSING_FIELD, "vector object needs b64", f"{field}.b64")
        return None
    if not isinstance(text, str):
        result.error(WRONG_TYPE, f"b64 must be a string, not {json_type_name(text)}", f"{field}.b64")
        return None
    if type(obj) is EncodedVector and text is obj.text:
        data = obj.array.astype(FLOAT32_LE, copy=False).tobytes()  # what `text` decodes to
    else:
        data = decode_base64(text)
    if data is None:
        result.error(INVALID_BASE64, "b64 is not valid base64", f"{field}.b64")
        return None
    if not data:
        result.error(VECTOR_EMPTY, "vector is empty", field)
        return None
    if len(data) % FLOAT32_LE.itemsize:
        result.error(
            INVALID_BASE64, f"b64 decodes to {len(data)} bytes, not a multiple of 4", f"{field}.b64"
        )
        return None
    _check_length(len(data) // FLOAT32_LE.itemsize, field, result, max_dim)
    vec = np.frombuffer(data, dtype=FLOAT32_LE).astype(np.float32, copy=False)
    if not np.isfinite(vec).all():
        _report_non_finite(vec, field, result)
    elif len(result.errors) == errors_before and not vec.any():
        result.error(VECTOR_ZERO, "vector is all zeros and has no direction", field)
    if len(result.errors) > errors_before:
        return None
    return _freeze(np.ascontiguousarray(vec))


def decode_base64(text: str) -> bytes | None:
    """Strict standard base64 (padding required, no stray characters), or None."""
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    # pybase64 refuses a few oddities the standard library's strict mode takes (padding after a
    # whole quantum: "0000="). What was accepted stays accepted; only bad input pays for this.
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_length(n: int, field: str, result: ValidationResult, max_dim: int | None) -> bool:
    if max_dim is not None and n > max_dim:
        result.error(VECTOR_TOO_LARGE, f"vector has dimension {n}, the limit is {max_dim}", field)
        return False
    return True


def _finish(wide: np.ndarray, field: str, result: ValidationResult) -> np.ndarray | None:
    if not np.isfinite(wide).all():
        _report_non_finite(wide, field, result)
        return None
    with np.errstate(over="ignore"):
        vec = wide.astype(np.float32)
    if not np.isfinite(vec).all():
        result.error(VECTOR_INFINITE, "vector holds a value that overflows float32", field)
        return None
    if not vec.any():
        # Every vector is compared by direction; all zeros has none.
        result.error(VECTOR_ZERO, "vector is all zeros and has no direction", field)
        return None
    return _freeze(vec)


def _report_non_finite(vec: np.ndarray, field: str, result: ValidationResult) -> None:
    if np.isnan(vec).any():
        result.error(VECTOR_NAN, "vector holds NaN", field)
    if np.isinf(vec).any():
        result.error(VECTOR_INFINITE, "vector holds an infinite value", field)


def _freeze(vec: np.ndarray) -> np.ndarray:
    vec.flags.writeable = False
    return vec


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
