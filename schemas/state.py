"""Records of the worker's own changelogged state (not on the wire contract).

They live here with the contract records so that the project has one place that turns bytes into
records. Centroids use the contract's float32 base64 form, which round-trips bit for bit: a table
restored from its changelog must give the same matches as the table that wrote it.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import orjson

STATE_VERSION = 1


class StateCorrupt(ValueError):
    """A state record this worker cannot read: a bug or a foreign writer, never user input."""


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f4").tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


def encode_pattern_state(state: dict) -> bytes:
    """`state` is `Pattern.to_state()`: JSON-able but for the centroid array."""
    out = dict(state)
    out["centroid"] = _b64(state["centroid"])
    out["sv"] = STATE_VERSION
    return orjson.dumps(out)


def decode_pattern_state(raw: bytes) -> dict:
    try:
        d = orjson.loads(raw)
        if d.pop("sv", None) != STATE_VERSION:
            raise StateCorrupt(f"pattern state version {d.get('sv')!r}")
        d["centroid"] = _unb64(d["centroid"])
        return d
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateCorrupt(f"unreadable pattern state: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SpaceState:
    """The index of one space: its dimension and its pattern ids in creation order."""

    space: str
    dim: int | None
    pattern_ids: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps(
            {"sv": STATE_VERSION, "space": self.space, "dim": self.dim, "pattern_ids": list(self.pattern_ids)}
        )

    @classmethod
    def decode(cls, raw: bytes) -> "SpaceState":
        try:
            d = orjson.loads(raw)
            if d.get("sv") != STATE_VERSION:
                raise StateCorrupt(f"space state version {d.get('sv')!r}")
            return cls(space=d["space"], dim=d["dim"], pattern_ids=tuple(d["pattern_ids"]))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StateCorrupt(f"unreadable space state: {exc}") from exc
