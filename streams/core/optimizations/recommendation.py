"""A published recommendation, its events, and when it is announced again (package docstring, 4
and 10).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import Optimization
from streams.core.optimizations.config import DEFAULT_CONFIG, OptimizationConfig


RECOMMENDED = "recommended"
RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class Event:
    """One ``fms.optimizations`` record, keyed ``<space>/<pattern_id>/<model_id>``."""

    event: str  # "recommended" | "retired"
    space: str
    pattern_id: str
    model_id: str
    config: dict
    effectiveness: float
    support: int
    source_model_id: str
    ts: float

    @property
    def key(self) -> str:
        return f"{self.space}/{self.pattern_id}/{self.model_id}"

    def to_record(self) -> Optimization:
        """The contract record (schemas owns its shape and validation)."""
        return Optimization(
            space=self.space, pattern_id=self.pattern_id, model_id=self.model_id, config=dict(self.config),
            effectiveness=self.effectiveness, support=self.support, source_model_id=self.source_model_id,
            event=self.event, ts=self.ts,
        )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A config for ``model_id`` on ``pattern_id``; transferred when the source differs."""

    space: str
    pattern_id: str
    model_id: str
    config: dict
    config_key: str
    effectiveness: float
    support: int
    source_model_id: str
    source_pattern_id: str

    @property
    def transferred(self) -> bool:
        return self.source_model_id != self.model_id or self.source_pattern_id != self.pattern_id

    def event(self, kind: str, ts: float) -> Event:
        return Event(kind, self.space, self.pattern_id, self.model_id, dict(self.config),
                     self.effectiveness, self.support, self.source_model_id, float(ts))


def reannounce_due(prev: Recommendation, new: Recommendation, cfg: OptimizationConfig = DEFAULT_CONFIG) -> bool:
    """Whether ``new``, the same config from the same source as the published ``prev``, moved far
    enough from ``prev``'s numbers to be announced again (package docstring, 10)."""
    if new.source_pattern_id != prev.source_pattern_id:
        return True
    if abs(new.effectiveness - prev.effectiveness) > cfg.reannounce_tolerance:
        return True
    f = cfg.reannounce_support_factor
    return f > 0.0 and (new.support >= prev.support * f or new.support * f <= prev.support)


def transition(prev: Recommendation | None, new: Recommendation | None, ts: float,
               cfg: OptimizationConfig = DEFAULT_CONFIG) -> list[Event]:
    """Events that move a published recommendation from ``prev`` to ``new``: ``retired`` (prev)
    then ``recommended`` (new) when the config or source model changes; for the same config from
    the same source model, ``recommended`` (new) alone when :func:`reannounce_due`, else nothing.
    ``prev`` is what was last announced, so that small moves add up (package docstring, 10)."""
    if prev is not None and new is not None and (prev.config_key, prev.source_model_id) == (
        new.config_key, new.source_model_id
    ):
        return [new.event(RECOMMENDED, ts)] if reannounce_due(prev, new, cfg) else []
    out = []
    if prev is not None:
        out.append(prev.event(RETIRED, ts))
    if new is not None:
        out.append(new.event(RECOMMENDED, ts))
    return out
