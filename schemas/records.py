"""One immutable dataclass per record of the wire contract (shared/CONTRACT.md, version 1).

Each record has ``to_dict(vector_form="b64")``, giving exactly the contract's JSON object, and
``from_dict(obj, result, limits)``, which checks a parsed object, adds every problem it finds to
``result`` and returns the record only when there were none. ``from_dict`` does not look at ``v``:
that is the codec's job, before it picks the record type.

Rules shared by all records:
- A JSON null counts as absent: optional fields become None, required ones are MISSING_FIELD.
- Unknown fields are ignored (older workers read newer clients).
- Numbers are JSON ints or floats, never booleans, and always finite. Counts are ints >= 0.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import pybase64

from .validation import (
    AMBIGUOUS_CONTEXT,
    AUDIO_EMPTY,
    AUDIO_LENGTH_MISMATCH,
    AUDIO_NAN,
    AUDIO_SILENT,
    AUDIO_TOO_LONG,
    ID_TOO_LONG,
    INVALID_BASE64,
    INVALID_ENUM,
    MISSING_FIELD,
    OUT_OF_RANGE,
    SAMPLE_RATE_OUT_OF_RANGE,
    UNKNOWN_ENCODING,
    WRONG_TYPE,
    Issue,
    ValidationResult,
)
from .vectors import as_vector, decode_base64, decode_vector, encode_vector, json_type_name

VERSION = 1

AUDIO_ENCODINGS: dict[str, np.dtype] = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
CHANNELS = (1, 2)
PATTERN_EVENTS = ("created", "updated", "merged", "evicted")
OPTIMIZATION_EVENTS = ("recommended", "retired")
BREAKER_STATES = ("closed", "open", "half_open")
HEALTH_STATES = ("healthy", "degraded", "unhealthy")
GENERATION_STATES = ("replaying", "switching", "current")
CONTEXT_FIELDS = ("pattern_id", "event_id", "vector")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    max_dim: int | None = 1000  # the design documents' maxPatternSize; None: no limit
    max_id_len: int = 128
    max_record_bytes: int = 1_048_576
    max_audio_seconds: float = 30.0
    min_sample_rate: int = 8000
    max_sample_rate: int = 192000
    # Peak below this fraction of full scale (about -80 dBFS) counts as silence.
    silence_peak: float = 1e-4


DEFAULT_LIMITS = ValidationLimits()
# What construction and encode() check: the contract's shapes, but not a worker's size policies,
# which a reader configured differently may not share.
CONTRACT_LIMITS = ValidationLimits(max_dim=None, max_audio_seconds=math.inf)
# True while from_dict builds a record out of values it has just validated.
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("record_values_checked", default=False)


def _validate_input(record: Any) -> None:
    """An input record made in code is checked as the worker will check it (ValidationError, with the
    dead letters' codes), so a service learns of a bad record where it makes it."""
    if _CHECKED.get():
        return
    result = ValidationResult()
    try:
        obj = record.to_dict()
    except (TypeError, ValueError, AttributeError) as exc:  # a field of a type no record can hold
        result.error(WRONG_TYPE, f"{type(record).__name__} cannot be written as a record: {exc}")
    else:
        type(record).from_dict(obj, result, CONTRACT_LIMITS)
    result.raise_if_invalid()


class _Fields:
    """Reads the fields of one JSON object, adding an issue for each bad one.

    Every getter returns None both for an absent optional field and for an invalid one; which of
    the two it was is visible in the result, which is all a caller needs.
    """

    __slots__ = ("obj", "result", "limits", "prefix", "_errors_at_start")

    def __init__(
        self, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits, prefix: str = ""
    ) -> None:
        self.obj = obj
        self.result = result
        self.limits = limits
        self.prefix = prefix
        self._errors_at_start = len(result.errors)

    @property
    def failed(self) -> bool:
        return len(self.result.errors) > self._errors_at_start

    def name(self, key: str) -> str:
        return self.prefix + key

    def _raw(self, key: str, required: bool) -> Any:
        value = self.obj.get(key)
        if value is None and required:
            self.result.error(MISSING_FIELD, f"{self.name(key)} is required", self.name(key))
        return value

    def _wrong_type(self, key: str, expected: str, value: Any) -> None:
        self.result.error(
            WRONG_TYPE, f"{self.name(key)} must be {expected}, not {json_type_name(value)}", self.name(key)
        )

    def string(self, key: str, *, required: bool = True, non_empty: bool = False) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self._wrong_type(key, "a string", value)
            return None
        if non_empty and not value:
            self.result.error(MISSING_FIELD, f"{self.name(key)} must not be empty", self.name(key))
            return None
        return value

    def ident(self, key: str, *, required: bool = True) -> str | None:
        value = self.string(key, required=required, non_empty=True)
        if value is not None and len(value) > self.limits.max_id_len:
            self.result.error(
                ID_TOO_LONG,
                f"{self.name(key)} has {len(value)} characters, the limit is {self.limits.max_id_len}",
                self.name(key),
            )
            return None
        return value

    def boolean(self, key: str, *, required: bool = True) -> bool | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            self._wrong_type(key, "a boolean", value)
            return None
        return value

    def integer(self, key: str, *, required: bool = True, minimum: int | None = None) -> int | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if type(value) is not int:
            self._wrong_type(key, "an integer", value)
            return None
        low = _INT64_MIN if minimum is None else minimum
        if not low <= value <= _INT64_MAX:
            self.result.error(
                OUT_OF_RANGE, f"{self.name(key)} = {value} is outside {low}..{_INT64_MAX}", self.name(key)
            )
            return None
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = True,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if type(value) not in (int, float):
            self._wrong_type(key, "a number", value)
            return None
        number = _finite_float(value)
        if number is None:
            self.result.error(OUT_OF_RANGE, f"{self.name(key)} is not a finite number", self.name(key))
            return None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            bounds = f"{'' if minimum is None else minimum}..{'' if maximum is None else maximum}"
            self.result.error(
                OUT_OF_RANGE, f"{self.name(key)} = {number!r} is outside {bounds}", self.name(key)
            )
            return None
        return number

    def ts(self) -> float | None:
        return self.number("ts", minimum=0.0)

    def enum(
        self, key: str, choices: tuple[str, ...], *, required: bool = True, code: str = INVALID_ENUM
    ) -> str | None:
        value = self.string(key, required=required)
        if value is not None and value not in choices:
            self.result.error(
                code, f"{self.name(key)} = {value!r:.60} is not one of {', '.join(choices)}", self.name(key)
            )
            return None
        return value

    def vector(self, key: str, *, required: bool = True) -> np.ndarray | None:
        value = self._raw(key, required)
        if value is None:
            return None
        vec = decode_vector(value, self.name(key), self.result, max_dim=self.limits.max_dim)
        if vec is not None:
            self.result.metadata.setdefault("dim", len(vec))
        return vec

    def object(self, key: str, *, required: bool = True) -> dict[str, Any] | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._wrong_type(key, "an object", value)
            return None
        return value

    def child(self, key: str, *, required: bool = True) -> _Fields | None:
        value = self.object(key, required=required)
        if value is None:
            return None
        return _Fields(value, self.result, self.limits, prefix=f"{self.name(key)}.")

    def array(self, key: str, *, required: bool = True) -> list[Any] | None:
        value = self._raw(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            self._wrong_type(key, "an array", value)
            return None
        return value

    def config(self, key: str) -> dict[str, str | int | float | bool] | None:
        value = self.object(key)
        if value is None:
            return None
        ok = True
        for name, item in value.items():
            where = f"{self.name(key)}.{name}"
            if type(item) in (int, float) and _finite_float(item) is None:
                self.result.error(OUT_OF_RANGE, f"{where} is not a finite number", where)
                ok = False
            elif type(item) not in (str, int, float, bool):
                self.result.error(
                    WRONG_TYPE, f"{where} must be a string, number or boolean, not {json_type_name(item)}", where
                )
                ok = False
        return dict(value) if ok else None

    def base64(self, key: str) -> bytes | None:
        text = self.string(key)
        if text is None:
            return None
        data = decode_base64(text)
        if data is None:
            self.result.error(INVALID_BASE64, f"{self.name(key)} is not valid base64", self.name(key))
        return data

    def build(self, cls: type[_R], **values: Any) -> _R | None:
        if self.failed:
            return None
        token = _CHECKED.set(True)  # these values were just validated: no second check at construction
        try:
            return cls(**values)
        finally:
            _CHECKED.reset(token)


def _finite_float(value: int | float) -> float | None:
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return bool(a == b)


class Record:
    """Base of the topic records and HTTP bodies.

    It supplies equality that understands numpy fields: the dataclass one raises on arrays.
    """

    __slots__ = ()
    KIND: ClassVar[str]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]  # records hold dicts and arrays

    def __post_init__(self) -> None:
        _unwrap_numpy_scalars(self)


def _unwrap_numpy_scalars(obj: Any) -> None:
    """Turn numpy scalars (an np.float32 similarity, an np.int64 count) into Python ones.

    Records are often built from numpy results; orjson and the strict JSON type checks that
    encode() applies both want the built-in types.
    """
    for name in _field_names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, np.generic):
            object.__setattr__(obj, name, value.item())
        elif name == "config" and isinstance(value, dict):
            plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in value.items()}
            object.__setattr__(obj, name, plain)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; records are built several per input.
    return tuple(f.name for f in fields(cls))


def _with_optional(out: dict[str, Any], **optional: Any) -> dict[str, Any]:
    for key, value in optional.items():
        if value is not None:
            out[key] = value
    return out


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, eq=False)
class Audio(Record):
    KIND: ClassVar[str] = "audio"

    id: str
    space: str
    sample_rate: int
    channels: int
    encoding: str
    data: bytes = field(repr=False)
    ts: float
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        object.__setattr__(self, "data", bytes(self.data))
        _validate_input(self)

    @property
    def frames(self) -> int:
        return len(self.data) // (AUDIO_ENCODINGS[self.encoding].itemsize * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def samples(self) -> np.ndarray:
        """float32 samples in [-1, 1], shape (frames, channels)."""
        raw = np.frombuffer(self.data, dtype=AUDIO_ENCODINGS[self.encoding])
        scaled = raw.astype(np.float32) / np.float32(32768.0) if raw.dtype.kind == "i" else raw.astype(np.float32)
        return scaled.reshape(-1, self.channels)

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out = {
            "v": VERSION,
            "id": self.id,
            "space": self.space,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "encoding": self.encoding,
            "data": pybase64.b64encode_as_string(self.data),
            "ts": self.ts,
        }
        return _with_optional(out, meta=self.meta)

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        values = dict(
            id=f.ident("id"),
            space=f.ident("space"),
            sample_rate=_sample_rate(f),
            channels=_channels(f),
            encoding=f.enum("encoding", tuple(AUDIO_ENCODINGS), code=UNKNOWN_ENCODING),
            data=f.base64("data"),
            ts=f.ts(),
            meta=f.object("meta", required=False),
        )
        if values["data"] is not None:
            _check_audio(values, result, limits)
        return f.build(cls, **values)


def _sample_rate(f: _Fields) -> int | None:
    rate = f.integer("sample_rate")
    if rate is not None and not f.limits.min_sample_rate <= rate <= f.limits.max_sample_rate:
        f.result.error(
            SAMPLE_RATE_OUT_OF_RANGE,
            f"sample_rate {rate} is outside {f.limits.min_sample_rate}..{f.limits.max_sample_rate} Hz",
            "sample_rate",
        )
        return None
    return rate


def _channels(f: _Fields) -> int | None:
    channels = f.integer("channels")
    if channels is not None and channels not in CHANNELS:
        f.result.error(INVALID_ENUM, f"channels must be 1 or 2, not {channels}", "channels")
        return None
    return channels


def _check_audio(values: dict[str, Any], result: ValidationResult, limits: ValidationLimits) -> None:
    """The checks that need only base64 and numpy: length, duration, NaN, silence."""
    data: bytes = values["data"]
    if not data:
        result.error(AUDIO_EMPTY, "audio data is empty", "data")
        return
    encoding, channels, rate = values["encoding"], values["channels"], values["sample_rate"]
    if encoding is None or channels is None:
        return  # their own errors are reported; the byte layout is unknown
    dtype = AUDIO_ENCODINGS[encoding]
    frame_bytes = dtype.itemsize * channels
    if len(data) % frame_bytes:
        result.error(
            AUDIO_LENGTH_MISMATCH,
            f"{len(data)} bytes is not a whole number of {encoding} frames of {channels} channel(s)",
            "data",
        )
        return
    frames = len(data) // frame_bytes
    result.metadata["frames"] = frames
    if rate is not None:
        duration = frames / rate
        result.metadata["duration_s"] = duration
        if duration > limits.max_audio_seconds:
            result.error(
                AUDIO_TOO_LONG, f"audio lasts {duration:.3f} s, the limit is {limits.max_audio_seconds} s", "data"
            )
    samples = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "f":
        if not np.isfinite(samples).all():
            result.error(AUDIO_NAN, "f32le audio holds NaN or infinite samples", "data")
            return
        peak = float(np.abs(samples).max())
    else:
        # int16's own abs overflows at -32768.
        peak = float(np.abs(samples.astype(np.int32)).max()) / 32768.0
    if peak <= limits.silence_peak:
        result.warn(AUDIO_SILENT, f"audio is silent (peak {peak:.2e} of full scale)", "data")


@dataclass(frozen=True, slots=True, eq=False)
class AudioFeature(Record):
    KIND: ClassVar[str] = "audio-features"

    id: str
    space: str
    vector: np.ndarray
    ts: float
    model_id: str | None = None
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        object.__setattr__(self, "vector", as_vector(self.vector))
        _validate_input(self)

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out = {"v": VERSION, "id": self.id, "space": self.space, "vector": encode_vector(self.vector, vector_form)}
        _with_optional(out, model_id=self.model_id)
        out["ts"] = self.ts
        return _with_optional(out, meta=self.meta)

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            id=f.ident("id"),
            space=f.ident("space"),
            vector=f.vector("vector"),
            model_id=f.ident("model_id", required=False),
            ts=f.ts(),
            meta=f.object("meta", required=False),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    latency_ms: float | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        _unwrap_numpy_scalars(self)

    def to_dict(self) -> dict[str, Any]:
        return _with_optional({"success": self.success}, latency_ms=self.latency_ms, quality=self.quality)

    @classmethod
    def from_fields(cls, f: _Fields) -> Self | None:
        return f.build(
            cls,
            success=f.boolean("success"),
            latency_ms=f.number("latency_ms", required=False, minimum=0.0),
            quality=f.number("quality", required=False, minimum=0.0, maximum=1.0),
        )


def _outcome(f: _Fields) -> Outcome | None:
    child = f.child("outcome")
    return None if child is None else Outcome.from_fields(child)


@dataclass(frozen=True, slots=True, eq=False)
class Interaction(Record):
    KIND: ClassVar[str] = "interactions"

    id: str
    space: str
    model_id: str
    config: dict[str, str | int | float | bool]
    outcome: Outcome
    ts: float
    pattern_id: str | None = None
    event_id: str | None = None
    vector: np.ndarray | None = None

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        if self.vector is not None:
            object.__setattr__(self, "vector", as_vector(self.vector))
        _validate_input(self)

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out: dict[str, Any] = {"v": VERSION, "id": self.id, "space": self.space, "model_id": self.model_id}
        _with_optional(
            out,
            pattern_id=self.pattern_id,
            event_id=self.event_id,
            vector=None if self.vector is None else encode_vector(self.vector, vector_form),
        )
        out.update(config=dict(self.config), outcome=self.outcome.to_dict(), ts=self.ts)
        return out

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        named = [key for key in CONTEXT_FIELDS if obj.get(key) is not None]
        if len(named) != 1:
            result.error(
                AMBIGUOUS_CONTEXT,
                "an interaction names exactly one of pattern_id, event_id, vector; "
                + (f"this one names {', '.join(named)}" if named else "this one names none"),
                None,
            )
        return f.build(
            cls,
            id=f.ident("id"),
            space=f.ident("space"),
            model_id=f.ident("model_id"),
            pattern_id=f.ident("pattern_id", required=False),
            event_id=f.ident("event_id", required=False),
            vector=f.vector("vector", required=False),
            config=f.config("config"),
            outcome=_outcome(f),
            ts=f.ts(),
        )


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True, eq=False)
class Recognition(Record):
    KIND: ClassVar[str] = "recognitions"

    event_id: str
    space: str
    pattern_id: str
    similarity: float
    confidence: float
    new: bool
    ts: float

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        return {
            "v": VERSION,
            "event_id": self.event_id,
            "space": self.space,
            "pattern_id": self.pattern_id,
            "similarity": self.similarity,
            "confidence": self.confidence,
            "new": self.new,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            event_id=f.ident("event_id"),
            space=f.ident("space"),
            pattern_id=f.ident("pattern_id"),
            similarity=f.number("similarity"),
            confidence=f.number("confidence"),
            new=f.boolean("new"),
            ts=f.ts(),
        )


@dataclass(frozen=True, slots=True)
class Related:
    pattern_id: str
    similarity: float

    def __post_init__(self) -> None:
        _unwrap_numpy_scalars(self)

    def to_dict(self) -> dict[str, Any]:
        return {"pattern_id": self.pattern_id, "similarity": self.similarity}

    @classmethod
    def from_fields(cls, f: _Fields) -> Self | None:
        return f.build(cls, pattern_id=f.ident("pattern_id"), similarity=f.number("similarity"))


@dataclass(frozen=True, slots=True, eq=False)
class PatternEvent(Record):
    KIND: ClassVar[str] = "patterns"

    space: str
    pattern_id: str
    event: str
    count: int
    confidence: float
    centroid: np.ndarray
    ts: float
    related: tuple[Related, ...] | None = None
    # On a "merged" event: the ids this pattern absorbed (each also ends with a tombstone), so that
    # a consumer can relabel what it saw under them. An addition to contract v1, ignored by readers
    # that do not know it.
    absorbed: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        object.__setattr__(self, "centroid", as_vector(self.centroid))
        if self.related is not None:
            object.__setattr__(self, "related", tuple(self.related))
        if self.absorbed is not None:
            object.__setattr__(self, "absorbed", tuple(self.absorbed))

    @property
    def key(self) -> str:
        return f"{self.space}/{self.pattern_id}"

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out = {
            "v": VERSION,
            "space": self.space,
            "pattern_id": self.pattern_id,
            "event": self.event,
            "count": self.count,
            "confidence": self.confidence,
            "centroid": encode_vector(self.centroid, vector_form),
        }
        if self.related is not None:
            out["related"] = [r.to_dict() for r in self.related]
        if self.absorbed is not None:
            out["absorbed"] = list(self.absorbed)
        out["ts"] = self.ts
        return out

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            space=f.ident("space"),
            pattern_id=f.ident("pattern_id"),
            event=f.enum("event", PATTERN_EVENTS),
            count=f.integer("count", minimum=0),
            confidence=f.number("confidence"),
            centroid=f.vector("centroid"),
            related=_related(f),
            absorbed=_ids(f, "absorbed"),
            ts=f.ts(),
        )


def _ids(f: _Fields, key: str) -> tuple[str, ...] | None:
    """An optional array of ids, each checked as an id field is."""
    items = f.array(key, required=False)
    if items is None:
        return None
    out = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        value = _Fields({where: item}, f.result, f.limits, prefix=f.prefix).ident(where)
        if value is not None:
            out.append(value)
    return tuple(out)


def _related(f: _Fields) -> tuple[Related, ...] | None:
    items = f.array("related", required=False)
    if items is None:
        return None
    out = []
    for index, item in enumerate(items):
        where = f"related[{index}]"
        if not isinstance(item, dict):
            f.result.error(WRONG_TYPE, f"{where} must be an object, not {json_type_name(item)}", where)
            continue
        related = Related.from_fields(_Fields(item, f.result, f.limits, prefix=f"{where}."))
        if related is not None:
            out.append(related)
    return tuple(out)


@dataclass(frozen=True, slots=True, eq=False)
class Optimization(Record):
    KIND: ClassVar[str] = "optimizations"

    space: str
    pattern_id: str
    model_id: str
    config: dict[str, str | int | float | bool]
    effectiveness: float
    support: int
    source_model_id: str
    event: str
    ts: float

    @property
    def key(self) -> str:
        return f"{self.space}/{self.pattern_id}/{self.model_id}"

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        return {
            "v": VERSION,
            "space": self.space,
            "pattern_id": self.pattern_id,
            "model_id": self.model_id,
            "config": dict(self.config),
            "effectiveness": self.effectiveness,
            "support": self.support,
            "source_model_id": self.source_model_id,
            "event": self.event,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            space=f.ident("space"),
            pattern_id=f.ident("pattern_id"),
            model_id=f.ident("model_id"),
            config=f.config("config"),
            effectiveness=f.number("effectiveness", minimum=0.0, maximum=1.0),
            support=f.integer("support", minimum=0),
            source_model_id=f.ident("source_model_id"),
            event=f.enum("event", OPTIMIZATION_EVENTS),
            ts=f.ts(),
        )


@dataclass(frozen=True, slots=True, eq=False)
class BreakerState(Record):
    KIND: ClassVar[str] = "breaker-state"

    worker: str
    operation: str
    state: str
    failure_rate: float
    slow_call_rate: float
    calls: int
    ts: float
    reason: str | None = None

    @property
    def key(self) -> str:
        return f"{self.worker}/{self.operation}"

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out = {
            "v": VERSION,
            "worker": self.worker,
            "operation": self.operation,
            "state": self.state,
            "failure_rate": self.failure_rate,
            "slow_call_rate": self.slow_call_rate,
            "calls": self.calls,
        }
        _with_optional(out, reason=self.reason)
        out["ts"] = self.ts
        return out

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            worker=f.ident("worker"),
            operation=f.ident("operation"),
            state=f.enum("state", BREAKER_STATES),
            failure_rate=f.number("failure_rate", minimum=0.0),
            slow_call_rate=f.number("slow_call_rate", minimum=0.0),
            calls=f.integer("calls", minimum=0),
            reason=f.string("reason", required=False),
            ts=f.ts(),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ResourceMetrics(Record):
    KIND: ClassVar[str] = "resource-metrics"

    worker: str
    rss_bytes: int
    cpu_percent: float
    memory_estimate_bytes: int
    patterns: int
    optimizations: int
    health: str
    ts: float

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        return {
            "v": VERSION,
            "worker": self.worker,
            "rss_bytes": self.rss_bytes,
            "cpu_percent": self.cpu_percent,
            "memory_estimate_bytes": self.memory_estimate_bytes,
            "patterns": self.patterns,
            "optimizations": self.optimizations,
            "health": self.health,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        return f.build(
            cls,
            worker=f.ident("worker"),
            rss_bytes=f.integer("rss_bytes", minimum=0),
            cpu_percent=f.number("cpu_percent", minimum=0.0),
            memory_estimate_bytes=f.integer("memory_estimate_bytes", minimum=0),
            patterns=f.integer("patterns", minimum=0),
            optimizations=f.integer("optimizations", minimum=0),
            health=f.enum("health", HEALTH_STATES),
            ts=f.ts(),
        )


@dataclass(frozen=True, slots=True, eq=False)
class DeadLetter(Record):
    KIND: ClassVar[str] = "dead-letter"

    topic: str
    partition: int
    offset: int
    errors: tuple[Issue, ...]
    warnings: tuple[Issue, ...]
    raw: str  # base64 of (at most 64 KiB of) the original value
    ts: float

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        object.__setattr__(self, "errors", tuple(self.errors))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def raw_bytes(self) -> bytes:
        return pybase64.b64decode(self.raw)

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        return {
            "v": VERSION,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "raw": self.raw,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        raw = f.string("raw")
        if raw is not None and decode_base64(raw) is None:
            result.error(INVALID_BASE64, "raw is not valid base64", "raw")
        return f.build(
            cls,
            topic=f.string("topic", non_empty=True),
            partition=f.integer("partition"),
            offset=f.integer("offset"),
            errors=_issues(f, "errors"),
            warnings=_issues(f, "warnings"),
            raw=raw,
            ts=f.ts(),
        )


def _issues(f: _Fields, key: str) -> tuple[Issue, ...] | None:
    items = f.array(key)
    if items is None:
        return None
    out = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            f.result.error(WRONG_TYPE, f"{where} must be an object, not {json_type_name(item)}", where)
            continue
        g = _Fields(item, f.result, f.limits, prefix=f"{where}.")
        issue = g.build(
            Issue, code=g.string("code"), message=g.string("message"), field=g.string("field", required=False)
        )
        if issue is not None:
            out.append(issue)
    return tuple(out)


# --------------------------------------------------------------------------- control


@dataclass(frozen=True, slots=True, eq=False)
class GenerationControl(Record):
    """The newest value of `fms.control` (key "generation"): which generation of the memory's state
    clients follow, and the one being built beside it (an addition to the contract).

    While `generation` is replaying or switching, `previous` is still the current one.
    """

    KIND: ClassVar[str] = "control"

    generation: int
    state: str
    ts: float
    previous: int | None = None

    KEY: ClassVar[str] = "generation"

    @property
    def current(self) -> int:
        if self.state == "current":
            return self.generation
        return 0 if self.previous is None else self.previous

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        return {"v": VERSION, "generation": self.generation, "state": self.state, "previous": self.previous,
                "ts": self.ts}

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        generation = f.integer("generation", minimum=0)
        previous = f.integer("previous", required=False, minimum=0)
        if generation is not None and previous is not None and previous >= generation:
            result.error(OUT_OF_RANGE, f"previous = {previous} is not below generation = {generation}", "previous")
        return f.build(cls, generation=generation, state=f.enum("state", GENERATION_STATES),
                       previous=previous, ts=f.ts())


# --------------------------------------------------------------------------- HTTP bodies


MAX_RECOGNIZE_K = 100


@dataclass(frozen=True, slots=True, eq=False)
class RecognizeRequest(Record):
    """The body of ``POST /recognize``; HTTP bodies carry no ``v``.

    ``k`` (an addition to the contract, default 5, at most MAX_RECOGNIZE_K) is how many of the
    nearest patterns to return.
    """

    KIND: ClassVar[str] = "recognize-request"

    space: str
    vector: np.ndarray
    model_id: str | None = None
    k: int = 5

    def __post_init__(self) -> None:
        Record.__post_init__(self)
        object.__setattr__(self, "vector", as_vector(self.vector))

    def to_dict(self, vector_form: str = "b64") -> dict[str, Any]:
        out = {"space": self.space, "vector": encode_vector(self.vector, vector_form), "k": self.k}
        return _with_optional(out, model_id=self.model_id)

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], result: ValidationResult, limits: ValidationLimits = DEFAULT_LIMITS
    ) -> Self | None:
        f = _Fields(obj, result, limits)
        k = f.integer("k", required=False, minimum=1)
        if k is not None and k > MAX_RECOGNIZE_K:
            result.error(OUT_OF_RANGE, f"k = {k} is above {MAX_RECOGNIZE_K}", "k")
        return f.build(
            cls, space=f.ident("space"), vector=f.vector("vector"),
            model_id=f.ident("model_id", required=False), k=5 if k is None else k,
        )


RECORD_TYPES: tuple[type[Record], ...] = (
    Audio,
    AudioFeature,
    Interaction,
    Recognition,
    PatternEvent,
    Optimization,
    BreakerState,
    ResourceMetrics,
    DeadLetter,
    GenerationControl,
    RecognizeRequest,
)
