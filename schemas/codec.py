"""Bytes <-> records: the project's only JSON entry points.

``decode`` never raises on any bytes: every failure becomes issues in a ValidationResult, ready for
``dead_letter``. ``encode`` checks what it writes against the same rules, so a worker cannot put a
record on a topic that its own readers would reject.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import pybase64

from .records import (
    CONTRACT_LIMITS,
    DEFAULT_LIMITS,
    Audio,
    AudioFeature,
    BreakerState,
    DeadLetter,
    GenerationControl,
    Interaction,
    Optimization,
    PatternEvent,
    RecognizeRequest,
    Recognition,
    RECORD_TYPES,
    ResourceMetrics,
    ValidationLimits,
    Record,
)
from .validation import (
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    RECORD_TOO_LARGE,
    UNSUPPORTED_VERSION,
    Issue,
    ValidationError,
    ValidationResult,
)
from .vectors import json_type_name

DEFAULT_TOPIC_PREFIX = "fms."
MAX_DEAD_LETTER_RAW = 64 * 1024
# A dead letter must itself fit in a Kafka message, whatever the bad record looked like.
MAX_DEAD_LETTER_ISSUES = 100
MAX_ISSUE_MESSAGE = 500
MAX_ISSUE_FIELD = 200

# What encode() checks: the contract's shapes, but not this worker's size policies, which a
# reader configured differently may not share (the limits input records are checked with when made).
ENCODE_LIMITS = CONTRACT_LIMITS

_NON_FINITE_SEEN = "non_finite_tokens"


class RecordKind(StrEnum):
    AUDIO = "audio"
    AUDIO_FEATURES = "audio-features"
    INTERACTIONS = "interactions"
    RECOGNITIONS = "recognitions"
    PATTERNS = "patterns"
    OPTIMIZATIONS = "optimizations"
    BREAKER_STATE = "breaker-state"
    RESOURCE_METRICS = "resource-metrics"
    DEAD_LETTER = "dead-letter"
    CONTROL = "control"  # fms.control: the generations of the memory's state (streams.ops.generation)
    RECOGNIZE_REQUEST = "recognize-request"  # the POST /recognize body; no topic, no "v"

    def topic(self, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
        if self is RecordKind.RECOGNIZE_REQUEST:
            raise ValueError("recognize-request is an HTTP body, not a topic")
        return prefix + self.value


INPUT_KINDS = (RecordKind.AUDIO, RecordKind.AUDIO_FEATURES, RecordKind.INTERACTIONS)
OUTPUT_KINDS = (
    RecordKind.RECOGNITIONS,
    RecordKind.PATTERNS,
    RecordKind.OPTIMIZATIONS,
    RecordKind.BREAKER_STATE,
    RecordKind.RESOURCE_METRICS,
    RecordKind.DEAD_LETTER,
)
RECORD_CLASSES: dict[RecordKind, type[Record]] = {RecordKind(cls.KIND): cls for cls in RECORD_TYPES}
_UNVERSIONED = frozenset({RecordKind.RECOGNIZE_REQUEST})


@dataclass
class Decoded:
    record: Any | None
    result: ValidationResult

    @property
    def ok(self) -> bool:
        return self.record is not None and self.result.is_valid


class _Failed:
    pass


_FAILED = _Failed()


def decode(
    kind: RecordKind | str, raw: bytes | bytearray | memoryview | None, limits: ValidationLimits = DEFAULT_LIMITS
) -> Decoded:
    """Parse and validate one record value; never raises for any value bytes."""
    kind = RecordKind(kind)
    result = ValidationResult(metadata={"kind": kind.value})
    obj = _parse(raw, result, limits)
    if obj is _FAILED:
        return Decoded(None, result)
    return validate(kind, obj, limits, result)


def validate(
    kind: RecordKind | str,
    obj: Any,
    limits: ValidationLimits = DEFAULT_LIMITS,
    result: ValidationResult | None = None,
) -> Decoded:
    """Validate an already parsed JSON value as a record of `kind`."""
    kind = RecordKind(kind)
    if result is None:
        result = ValidationResult(metadata={"kind": kind.value})
    if not isinstance(obj, dict):
        result.error(NOT_AN_OBJECT, f"a record is a JSON object, not {json_type_name(obj)}")
        return Decoded(None, result)
    _note_identity(obj, result, limits)
    if kind not in _UNVERSIONED and not _check_version(obj, result):
        return Decoded(None, result)
    record = RECORD_CLASSES[kind].from_dict(obj, result, limits)  # type: ignore[attr-defined]
    if result.is_valid and result.metadata.get(_NON_FINITE_SEEN):
        # Only vectors and numbers are checked for NaN/Infinity; one anywhere else (say in
        # meta) would be re-encoded as null, so the record as a whole is not valid JSON.
        result.error(INVALID_JSON, "NaN or Infinity is not JSON")
    return Decoded(record if result.is_valid else None, result)


def encode(
    record: Record, *, vector_form: str = "b64", validate: bool = True, limits: ValidationLimits = ENCODE_LIMITS
) -> bytes:
    """The record's wire bytes; raises ValidationError if it breaks the contract."""
    obj = record.to_dict(vector_form)  # type: ignore[attr-defined]
    if validate:
        result = ValidationResult()
        type(record).from_dict(obj, result, limits)  # type: ignore[attr-defined]
        result.raise_if_invalid()
    return orjson.dumps(obj)


def encode_json(obj: Any) -> bytes:
    """JSON for internal state and HTTP bodies; numpy arrays and records are understood."""
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATACLASS
    return orjson.dumps(obj, default=_json_default, option=options)


def decode_json(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse trusted JSON (internal state, HTTP bodies); raises ValueError on bad input."""
    return orjson.loads(raw)


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes | bytearray | memoryview | None,
    result: ValidationResult,
    ts: float,
) -> DeadLetter:
    """The dead-letter record for a rejected value, bounded in size whatever the value was."""
    data = b"" if raw is None else bytes(raw[:MAX_DEAD_LETTER_RAW])
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        errors=_bounded_issues(result.errors),
        warnings=_bounded_issues(result.warnings),
        raw=pybase64.b64encode_as_string(data),
        ts=float(ts),
    )


def kind_of(record: Record) -> RecordKind:
    return RecordKind(record.KIND)


def record_key(record: Record) -> str:
    """The Kafka key the contract gives a record (a dead letter keeps its original key)."""
    if isinstance(record, (Audio, AudioFeature, Interaction, Recognition, RecognizeRequest)):
        return record.space
    if isinstance(record, (PatternEvent, Optimization, BreakerState)):
        return record.key
    if isinstance(record, ResourceMetrics):
        return record.worker
    if isinstance(record, GenerationControl):
        return record.KEY
    raise ValueError(f"{type(record).__name__} has no key of its own")


def _parse(raw: bytes | bytearray | memoryview | None, result: ValidationResult, limits: ValidationLimits) -> Any:
    if raw is None:
        result.metadata["tombstone"] = True
        result.error(NOT_AN_OBJECT, "the value is null (a tombstone), not a record")
        return _FAILED
    if not isinstance(raw, bytes):
        if not isinstance(raw, (bytearray, memoryview)):
            raise TypeError(f"decode() takes bytes, not {type(raw).__name__}")
        raw = bytes(raw)
    result.metadata["bytes"] = len(raw)
    if len(raw) > limits.max_record_bytes:
        result.error(RECORD_TOO_LARGE, f"the value has {len(raw)} bytes, the limit is {limits.max_record_bytes}")
        return _FAILED
    try:
        return orjson.loads(raw)
    except ValueError as exc:
        orjson_error = str(exc)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.error(INVALID_UTF8, f"not UTF-8: {exc.reason} at byte {exc.start}")
        return _FAILED
    obj = _parse_non_finite(text)
    if obj is _FAILED:
        result.error(INVALID_JSON, f"not JSON: {orjson_error}"[:MAX_ISSUE_MESSAGE])
        return _FAILED
    result.metadata[_NON_FINITE_SEEN] = True
    return obj


def _parse_non_finite(text: str) -> Any:
    """The stdlib parse of JSON that orjson refused only for NaN/Infinity/overflowing numbers.

    Those are worth telling apart from garbage: a vector holding NaN should be dead-lettered as
    VECTOR_NAN, which says what the producer got wrong.
    """
    seen = False

    def constant(token: str) -> float:
        nonlocal seen
        seen = True
        return float(token)

    def number(token: str) -> float:
        nonlocal seen
        value = float(token)
        if not math.isfinite(value):
            seen = True
        return value

    try:
        obj = json.loads(text, parse_constant=constant, parse_float=number)
    except Exception:  # ValueError, RecursionError on deep nesting: garbage either way
        return _FAILED
    return obj if seen else _FAILED


def _check_version(obj: dict[str, Any], result: ValidationResult) -> bool:
    version = obj.get("v")
    if type(version) is int and version == 1:
        return True
    seen = "missing" if version is None else f"{version!r:.40}"
    result.error(UNSUPPORTED_VERSION, f"v is {seen}; this worker reads version 1", "v")
    return False


def _note_identity(obj: dict[str, Any], result: ValidationResult, limits: ValidationLimits) -> None:
    # Even a rejected record should be attributable to its space in metrics and logs.
    for key in ("space", "id"):
        value = obj.get(key)
        if isinstance(value, str):
            result.metadata[key] = value[: limits.max_id_len]


def _bounded_issues(issues: list[Issue]) -> tuple[Issue, ...]:
    kept = [
        Issue(
            i.code,
            i.message[:MAX_ISSUE_MESSAGE],
            None if i.field is None else i.field[:MAX_ISSUE_FIELD],
        )
        for i in issues[:MAX_DEAD_LETTER_ISSUES]
    ]
    dropped = len(issues) - len(kept)
    if dropped > 0:
        last = kept[-1]
        kept[-1] = Issue(last.code, f"{last.message} (and {dropped} more issues)", last.field)
    return tuple(kept)


def _json_default(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


__all__ = [
    "DEFAULT_TOPIC_PREFIX",
    "ENCODE_LIMITS",
    "INPUT_KINDS",
    "MAX_DEAD_LETTER_RAW",
    "OUTPUT_KINDS",
    "RECORD_CLASSES",
    "Decoded",
    "RecordKind",
    "ValidationError",
    "dead_letter",
    "decode",
    "decode_json",
    "encode",
    "encode_json",
    "kind_of",
    "record_key",
    "validate",
]
