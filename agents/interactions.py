"""fms.interactions -> context pattern -> pattern feedback and optimization memory -> fms.optimizations.

What one interaction does to the memory and what it emits; agents.memory runs it in order with
the feature records. The scoring, transfer and retirement rules are in streams.core.optimizations;
the feedback rule is SpaceMemory.apply_feedback.
"""
from __future__ import annotations

import logging

from schemas.records import Optimization
from schemas.state import RecentInteraction
from schemas.validation import (
    NO_MATCHING_PATTERN,
    UNKNOWN_EVENT,
    UNKNOWN_PATTERN,
    UNKNOWN_SPACE,
    ValidationResult,
)
from schemas.vectors import check_dimension
from streams.core.optimizations import pattern_feedback

log = logging.getLogger(__name__)


def resolve_context(interaction, memory, recent, result: ValidationResult) -> str | None:
    """The live pattern an interaction's context names, or None with the reason in `result`.

    pattern_id follows merges to the survivor; event_id goes through the recent recognitions of
    the space (then through merges, as the pattern may have been absorbed since); a vector names
    the pattern learning it would join (SpaceMemory.recognize), without learning it.
    """
    space = interaction.space
    if memory is None:
        result.error(UNKNOWN_SPACE, f"space {space!r} has no patterns on this worker", "space")
        return None
    if interaction.pattern_id is not None:
        pid = memory.resolve(interaction.pattern_id)
        if pid is None:
            result.error(UNKNOWN_PATTERN, f"pattern {interaction.pattern_id!r} is not (or no longer) in "
                         f"space {space!r}", "pattern_id")
        return pid
    if interaction.event_id is not None:
        seen = recent.get(space, interaction.event_id)
        if seen is None:
            result.error(UNKNOWN_EVENT, f"event {interaction.event_id!r} has no recent recognition in "
                         f"space {space!r}", "event_id")
            return None
        pid = memory.resolve(seen.pattern_id)
        if pid is None:
            result.error(UNKNOWN_PATTERN, f"event {interaction.event_id!r} was recognized as "
                         f"{seen.pattern_id!r}, which has been evicted", "event_id")
        return pid
    if not check_dimension(interaction.vector, memory.dim, "vector", result):
        return None
    match = memory.recognize(interaction.vector)  # the pattern learning it would join
    if match is None:
        nearest = memory.predict_one(interaction.vector, k=1)
        best = f"{nearest[0].similarity:.3f}" if nearest else "none"
        result.error(NO_MATCHING_PATTERN, f"the vector matches no pattern of space {space!r} at "
                     f"{memory.threshold} (best {best})", "vector")
        return None
    return match.pattern_id


def apply(runtime, interaction, pattern_id: str, offset: int):
    """Apply one interaction inside the space's transaction: its optimization memory first (a
    config the core refuses raises before any write), then the pattern's feedback."""
    store, space = runtime.store, interaction.space
    memory = store.space(space)

    def related_of(pid: str):  # for recommendations transferred from this memory, on other patterns
        pattern = memory.get(pid)
        return None if pattern is None else pattern.related

    events = runtime.optimizations.learn(space, pattern_id, interaction.model_id, interaction.config,
                                         interaction.outcome, interaction.ts,
                                         memory.get(pattern_id).related, related_of)
    success, quality = pattern_feedback(interaction.outcome)
    pattern = store.feedback(store.space(space), pattern_id, success, quality, interaction.ts)
    records = tuple(e.to_record() for e in events)
    runtime.recent_interactions.remember(space, RecentInteraction(
        interaction.id, pattern_id, offset, tuple(r.to_dict() for r in records)))
    return pattern, records


async def emit_applied(runtime, interaction, applied, patterns) -> None:
    pattern, records = applied
    patterns.add(interaction.space, pattern, "updated", interaction.ts)
    for record in records:
        runtime.metrics.optimization_events.labels(event=record.event).inc()
        await runtime.emit.send("optimizations", record.key, record)


def again(runtime, space: str, interaction):
    """An interaction applied before a crash, delivered again: not applied again; its optimization
    records as they were and its pattern's current state go out again, in case they did not."""
    seen = runtime.recent_interactions.get(space, interaction.id)
    pattern = None if seen is None else runtime.store.space(space).get(seen.pattern_id)
    if seen is None or pattern is None:
        log.warning("redelivered interaction %s/%s is no longer in the recent ring; nothing to emit again",
                    space, interaction.id)
        return None
    records = tuple(Optimization.from_dict(d, ValidationResult()) for d in seen.optimizations)
    return pattern, records

