"""Validation results and the error codes of the wire contract.

Every rejected record goes to the dead-letter topic with a list of issues, each naming one of the
codes below. Clients and dashboards match on these strings, so they are part of the contract:
never rename one, only add.

=============================  ===========================  ===========================================
constant                       code                         meaning
=============================  ===========================  ===========================================
INVALID_UTF8                   invalid_utf8                 the value is not valid UTF-8
INVALID_JSON                   invalid_json                 not one JSON document (NaN/Infinity tokens
                                                            outside a checked number land here too)
NOT_AN_OBJECT                  not_an_object                the JSON value is not an object, or the
                                                            value is null (a tombstone)
UNSUPPORTED_VERSION            unsupported_version          ``v`` missing or not the integer 1
MISSING_FIELD                  missing_field                a required field is absent, null or an
                                                            empty identifier
WRONG_TYPE                     wrong_type                   a field has the wrong JSON type
OUT_OF_RANGE                   out_of_range                 a number outside its range, or not finite
ID_TOO_LONG                    id_too_long                  an identifier longer than 128 characters
VECTOR_NAN                     vector_nan                   a vector holds NaN
VECTOR_INFINITE                vector_infinite              a vector holds ±inf, or a value that
                                                            overflows float32
VECTOR_EMPTY                   vector_empty                 a vector of length 0
VECTOR_TOO_LARGE               vector_too_large             a vector longer than the configured max
VECTOR_ZERO                    vector_zero                  a vector of zeros: it has no direction
PROCESSING_FAILED              processing_failed            a valid record whose processing raised; the
                                                            message names the exception
DIMENSION_MISMATCH             dimension_mismatch           a vector's length differs from its space's
INVALID_BASE64                 invalid_base64               bad base64, or float32 bytes not a
                                                            multiple of 4
RECORD_TOO_LARGE               record_too_large             the raw value exceeds the size limit
AMBIGUOUS_CONTEXT              ambiguous_context            an interaction names zero or several of
                                                            pattern_id / event_id / vector
INVALID_ENUM                   invalid_enum                 a value outside its enumeration
UNKNOWN_ENCODING               unknown_encoding             audio encoding is not pcm_s16le / f32le
AUDIO_LENGTH_MISMATCH          audio_length_mismatch        audio byte count is not a whole number of
                                                            frames (sample width * channels)
AUDIO_EMPTY                    audio_empty                  audio without samples
AUDIO_TOO_LONG                 audio_too_long               audio longer than the configured limit
AUDIO_NAN                      audio_nan                    f32le audio holds NaN or ±inf
SAMPLE_RATE_OUT_OF_RANGE       sample_rate_out_of_range     sample rate outside 8000..192000 Hz
AUDIO_SILENT (warning)         audio_silent                 audio is all zero or nearly silent
UNKNOWN_SPACE                  unknown_space                an interaction's space has no patterns here
UNKNOWN_PATTERN                unknown_pattern              pattern_id names no live pattern, not even
                                                            through merges (never seen, or evicted)
UNKNOWN_EVENT                  unknown_event                event_id names no recent recognition of the
                                                            space (never seen, not yet recognized, or
                                                            older than the recent-recognition ring)
NO_MATCHING_PATTERN            no_matching_pattern          the interaction's vector matches no pattern
                                                            at the match threshold
RESOURCE_CONSTRAINT            resource_constraint          applying the record would leave its space
                                                            outside a resource constraint the cleanup
                                                            cannot restore (streams.core.resilience.limits)
=============================  ===========================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNSUPPORTED_VERSION = "unsupported_version"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
OUT_OF_RANGE = "out_of_range"
ID_TOO_LONG = "id_too_long"
VECTOR_NAN = "vector_nan"
VECTOR_INFINITE = "vector_infinite"
VECTOR_EMPTY = "vector_empty"
VECTOR_TOO_LARGE = "vector_too_large"
VECTOR_ZERO = "vector_zero"
PROCESSING_FAILED = "processing_failed"
DIMENSION_MISMATCH = "dimension_mismatch"
INVALID_BASE64 = "invalid_base64"
RECORD_TOO_LARGE = "record_too_large"
AMBIGUOUS_CONTEXT = "ambiguous_context"
INVALID_ENUM = "invalid_enum"
UNKNOWN_ENCODING = "unknown_encoding"
AUDIO_LENGTH_MISMATCH = "audio_length_mismatch"
AUDIO_EMPTY = "audio_empty"
AUDIO_TOO_LONG = "audio_too_long"
AUDIO_NAN = "audio_nan"
SAMPLE_RATE_OUT_OF_RANGE = "sample_rate_out_of_range"
AUDIO_SILENT = "audio_silent"
UNKNOWN_SPACE = "unknown_space"
UNKNOWN_PATTERN = "unknown_pattern"
UNKNOWN_EVENT = "unknown_event"
NO_MATCHING_PATTERN = "no_matching_pattern"
RESOURCE_CONSTRAINT = "resource_constraint"

ERROR_CODES: frozenset[str] = frozenset(
    {
        INVALID_UTF8,
        INVALID_JSON,
        NOT_AN_OBJECT,
        UNSUPPORTED_VERSION,
        MISSING_FIELD,
        WRONG_TYPE,
        OUT_OF_RANGE,
        ID_TOO_LONG,
        VECTOR_NAN,
        VECTOR_INFINITE,
        VECTOR_EMPTY,
        VECTOR_TOO_LARGE,
        VECTOR_ZERO,
        PROCESSING_FAILED,
        DIMENSION_MISMATCH,
        INVALID_BASE64,
        RECORD_TOO_LARGE,
        AMBIGUOUS_CONTEXT,
        INVALID_ENUM,
        UNKNOWN_ENCODING,
        AUDIO_LENGTH_MISMATCH,
        AUDIO_EMPTY,
        AUDIO_TOO_LONG,
        AUDIO_NAN,
        SAMPLE_RATE_OUT_OF_RANGE,
        UNKNOWN_SPACE,
        UNKNOWN_PATTERN,
        UNKNOWN_EVENT,
        NO_MATCHING_PATTERN,
        RESOURCE_CONSTRAINT,
    }
)
WARNING_CODES: frozenset[str] = frozenset({AUDIO_SILENT})


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass
class ValidationResult:
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        return not self.errors

    def error(self, code: str, message: str, field: str | None = None) -> None:
        self.errors.append(Issue(code, message, field))

    def warn(self, code: str, message: str, field: str | None = None) -> None:
        self.warnings.append(Issue(code, message, field))

    @property
    def error_codes(self) -> list[str]:
        return [issue.code for issue in self.errors]

    @property
    def warning_codes(self) -> list[str]:
        return [issue.code for issue in self.warnings]

    def extend(self, other: ValidationResult) -> None:
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)
        self.metadata.update(other.metadata)

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise ValidationError(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
        }


class ValidationError(Exception):
    """Raised where a caller cannot go on with an invalid record; carries the full result."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        summary = "; ".join(
            f"{i.code}{f' ({i.field})' if i.field else ''}: {i.message}" for i in result.errors[:5]
        )
        more = len(result.errors) - 5
        super().__init__(summary + (f"; and {more} more" if more > 0 else "") or "invalid record")


__all__ = [
    *sorted(
        name
        for name, value in list(globals().items())
        if name.isupper() and isinstance(value, str) and value in ERROR_CODES | WARNING_CODES
    ),
    "ERROR_CODES",
    "WARNING_CODES",
    "Issue",
    "ValidationError",
    "ValidationResult",
]
