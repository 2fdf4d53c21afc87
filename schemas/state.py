"""Records of the worker's own changelogged state (not on the wire contract).

They live here with the contract records so that the project has one place that turns bytes into
records. Arrays use the contract's float32 base64 vector form, which round-trips bit for bit: a
table restored from its changelog must give the same matches as the table that wrote it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import orjson

from schemas.codec import decode_json, encode_json
from schemas.validation import ValidationResult
from schemas.vectors import decode_vector, encode_vector

STATE_VERSION = 3
T = TypeVar("T")


class StateCorrupt(ValueError):
    """A state record this worker cannot read: a bug or a foreign writer, never user input."""


def _arrays_out(d: dict) -> dict:
    return {k: ({"array": encode_vector(v)} if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def _arrays_in(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and set(v) == {"array"}:
            b64 = v["array"]["b64"]
            # An empty array (e.g. no centring mean yet) has no valid vector form; keep it empty.
            if b64 == "":
                out[k] = np.zeros(0, dtype=np.float32)
                continue
            result = ValidationResult()
            vec = decode_vector(v["array"], k, result, max_dim=None)
            if vec is None:
                raise StateCorrupt(f"array {k}: {[e.code for e in result.errors]}")
            out[k] = vec
        else:
            out[k] = v
    return out


def encode_pattern_state(state: dict) -> bytes:
    """`state` is `Pattern.to_state()`: JSON-able but for numpy arrays."""
    return encode_json({"sv": STATE_VERSION, **_arrays_out(state)})


def decode_pattern_state(raw: bytes) -> dict:
    try:
        return _state_in(decode_json(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateCorrupt(f"unreadable pattern state: {exc}") from exc


def _state_in(d: dict) -> dict:
    if d.pop("sv", None) != STATE_VERSION:
        raise StateCorrupt("unknown pattern state version")
    return _arrays_in(d)


def encode_state_block(entries: list[bytes]) -> bytes:
    """Consecutive states under one key (a JSON list): each entry as `encode_pattern_state` made it,
    embedded without decoding it again."""
    return encode_json([orjson.Fragment(e) for e in entries])


def decode_state_block(raw: bytes) -> list[dict]:
    try:
        return [_state_in(d) for d in decode_json(raw)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateCorrupt(f"unreadable state block: {exc}") from exc


@dataclass(frozen=True)
class SpaceState:
    """One space's core state (centring mean, merge aliases, ...) and how many pages list its
    pattern ids. The ids live in pages of their own (`PatternPage`), so that a new pattern rewrites
    one small page instead of a list of every id in the space."""

    space: str
    pages: int
    core: dict

    def encode(self) -> bytes:
        return encode_json({"sv": STATE_VERSION, "space": self.space, "pages": self.pages,
                            "core": _arrays_out(self.core)})

    @classmethod
    def decode(cls, raw: bytes) -> "SpaceState":
        return _decode_state(raw, "space state", lambda d: cls(
            space=d["space"], pages=int(d["pages"]), core=_arrays_in(d["core"])))


@dataclass(frozen=True)
class PatternPage:
    """Some of a space's pattern ids, in no particular order (the core orders patterns itself)."""

    pattern_ids: tuple[str, ...]

    def encode(self) -> bytes:
        return encode_json({"sv": STATE_VERSION, "ids": list(self.pattern_ids)})

    @classmethod
    def decode(cls, raw: bytes) -> "PatternPage":
        return _decode_state(raw, "pattern page", lambda d: cls(pattern_ids=tuple(str(i) for i in d["ids"])))


def _decode_state(raw: bytes, what: str, build: Callable[[dict], T], positional: bool = False) -> T:
    """``build`` over the decoded state record: a missing or malformed field, like bytes that are
    not JSON, is a StateCorrupt that names ``what``. `positional`: the record may also be an
    array whose first element is the version."""
    try:
        d = decode_json(raw)
    except ValueError as exc:
        raise StateCorrupt(f"unreadable {what}: {exc}") from exc
    if positional and isinstance(d, list):
        version = d[0] if d else None
    else:
        version = d.get("sv") if isinstance(d, dict) else None
    if version != STATE_VERSION:
        raise StateCorrupt(f"unknown {what} version")
    try:
        return build(d)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise StateCorrupt(f"unreadable {what}: {exc}") from exc


@dataclass(frozen=True)
class OptimizationState:
    """One (space, pattern, model): the core's memory (`ModelPatternMemory.to_state()`), the
    recommendation the shell last published for it, own or transferred (None when nothing is), as
    announced, and the (pattern_id, model_id) of other memories whose published recommendation was
    transferred from this one (a superset: an entry is checked before use; written only when
    non-empty, so states from before it read as none)."""

    memory: dict
    published: dict | None = None
    dependents: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        d = {"sv": STATE_VERSION, "memory": self.memory, "published": self.published}
        if self.dependents:
            d["dependents"] = [[p, m] for p, m in sorted(self.dependents)]
        return encode_json(d)

    @classmethod
    def decode(cls, raw: bytes) -> "OptimizationState":
        return _decode_state(raw, "optimization state", lambda d: cls(
            memory=d["memory"], published=d["published"],
            dependents=tuple((str(p), str(m)) for p, m in d.get("dependents", ()))))


@dataclass(frozen=True)
class OptimizationIndex:
    """The optimization memories of one space: (pattern_id, model_id) -> newest evidence ts.

    The ts is refreshed lazily (see streams.state.optimizations), so it is a lower bound."""

    entries: dict[tuple[str, str], float]

    def encode(self) -> bytes:
        rows = [[p, m, ts] for (p, m), ts in sorted(self.entries.items())]
        return encode_json({"sv": STATE_VERSION, "entries": rows})

    @classmethod
    def decode(cls, raw: bytes) -> "OptimizationIndex":
        return _decode_state(raw, "optimization index", lambda d: cls(
            entries={(p, m): float(ts) for p, m, ts in d["entries"]}))


@dataclass(frozen=True)
class RecentRecognition:
    """What an `fms.audio-features` record was recognized as: the context an interaction's
    `event_id` names, and what a redelivered record emits again. `offset` is the input record's
    offset (it picks the record's ring slot); `changed` the (pattern id, event) and `removed` the
    pattern ids of the `fms.patterns` records it caused."""

    event_id: str
    pattern_id: str
    similarity: float
    confidence: float
    new: bool
    offset: int
    changed: tuple[tuple[str, str], ...] = ()
    removed: tuple[str, ...] = ()

    # One is written for every input record, and carried twice by its commit's changelog (the
    # journal's copy, then the ring value): a JSON array, not an object, and a change of the
    # recognized pattern itself as its kind alone (the common ["updated"]) halve it (211 -> 105
    # bytes for a 19-character id). Objects, as older workers wrote them, are still read.
    def encode(self) -> bytes:
        changed = [kind if pid == self.pattern_id else [pid, kind] for pid, kind in self.changed]
        return encode_json([STATE_VERSION, self.event_id, self.pattern_id, self.similarity, self.confidence,
                            self.new, self.offset, changed, list(self.removed)])

    @classmethod
    def decode(cls, raw: bytes) -> "RecentRecognition":
        return _decode_state(raw, "recent recognition", cls._from_decoded, positional=True)

    @classmethod
    def _from_decoded(cls, d) -> "RecentRecognition":
        if isinstance(d, dict):  # an older worker's
            return cls(event_id=d["event_id"], pattern_id=d["pattern_id"], similarity=float(d["similarity"]),
                       confidence=float(d["confidence"]), new=bool(d["new"]), offset=int(d["offset"]),
                       changed=tuple((str(p), str(e)) for p, e in d.get("changed", ())),
                       removed=tuple(str(p) for p in d.get("removed", ())))
        _, event_id, pattern_id, similarity, confidence, new, offset, changed, removed = d
        pattern_id = str(pattern_id)
        return cls(event_id=str(event_id), pattern_id=pattern_id, similarity=float(similarity),
                   confidence=float(confidence), new=bool(new), offset=int(offset),
                   changed=tuple((pattern_id, str(c)) if isinstance(c, str) else (str(c[0]), str(c[1]))
                                 for c in changed),
                   removed=tuple(str(p) for p in removed))

    @staticmethod
    def id_of(d) -> str:
        """The event id of a decoded entry, in either layout."""
        return str(d["event_id"] if isinstance(d, dict) else d[1])


@dataclass(frozen=True)
class RecentInteraction:
    """What an `fms.interactions` record did: its context pattern and the `fms.optimizations`
    records it emitted (contract dicts), so that a redelivered interaction emits them again."""

    interaction_id: str
    pattern_id: str
    offset: int
    optimizations: tuple[dict, ...] = ()

    def encode(self) -> bytes:
        return encode_json({"sv": STATE_VERSION, "interaction_id": self.interaction_id,
                            "pattern_id": self.pattern_id, "offset": self.offset,
                            "optimizations": list(self.optimizations)})

    @classmethod
    def decode(cls, raw: bytes) -> "RecentInteraction":
        return _decode_state(raw, "recent interaction", lambda d: cls(
            interaction_id=d["interaction_id"], pattern_id=d["pattern_id"], offset=int(d["offset"]),
            optimizations=tuple(d["optimizations"])))

    @staticmethod
    def id_of(d) -> str:
        """The interaction id of a decoded entry."""
        return str(d["interaction_id"])


@dataclass(frozen=True)
class JournalEntry:
    """What a space's last commit applied: every table write it made (None: a delete), and the
    offset each of the space's inputs reached (input kind -> offset). See streams.state.journal.

    A large commit keeps its writes in `parts` JournalParts (in slot `slot`, see the journal)
    instead of inline, so that no changelog message nears Kafka's 1 MB message limit."""

    applied: dict[str, int]
    writes: tuple[tuple[str, bytes | None], ...]
    parts: int = 0
    slot: int = 0

    def encode(self) -> bytes:
        d = {"sv": STATE_VERSION, "applied": self.applied, "writes": _writes_out(self.writes)}
        if self.parts:
            d["parts"], d["slot"] = self.parts, self.slot
        return encode_json(d)

    @classmethod
    def decode(cls, raw: bytes) -> "JournalEntry":
        return _decode_state(raw, "journal entry", lambda d: cls(
            applied={str(k): int(v) for k, v in d["applied"].items()}, writes=_writes_in(d["writes"]),
            parts=int(d.get("parts", 0)), slot=int(d.get("slot", 0))))


@dataclass(frozen=True)
class JournalPart:
    """One part of a large commit's writes (JournalEntry.parts)."""

    writes: tuple[tuple[str, bytes | None], ...]

    def encode(self) -> bytes:
        return encode_json({"sv": STATE_VERSION, "writes": _writes_out(self.writes)})

    @classmethod
    def decode(cls, raw: bytes) -> "JournalPart":
        return _decode_state(raw, "journal part", lambda d: cls(writes=_writes_in(d["writes"])))


def _writes_out(writes) -> list:
    # State values are JSON documents themselves (schemas.codec): embedded as they are, not
    # escaped into strings, which is most of the journal's cost.
    return [[k, None if v is None else orjson.Fragment(v)] for k, v in writes]


def _writes_in(writes) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((str(k), None if v is None else encode_json(v)) for k, v in writes)
