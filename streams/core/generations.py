"""Generations of the memory's state, as plain arithmetic: names, the replay's progress, the switch.

A generation is a complete copy of the memory's state (its own consumer group and changelog topics).
Generation 0 keeps the configured app id, so that deployments from before generations keep their
state; generation N >= 1 is `<app_id>-g<N>`. A generation that is not the current one writes the
contract's memory outputs to shadow topics, `<topic>.g<N>`, which no client follows.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

# The outputs that come from the memory's state; a replaying generation must not write them where
# clients read. breaker-state and resource-metrics describe a worker, not the memory: keyed by
# worker, they stay on the contract topics whatever the generation.
SHADOWED = ("recognitions", "patterns", "optimizations", "dead-letter")
# What a replay reads again: the memory's inputs (fms.audio feeds the extraction role, not the memory).
REPLAYED_INPUTS = ("audio-features", "interactions")


def app_id_of(base_app_id: str, generation: int) -> str:
    return base_app_id if generation == 0 else f"{base_app_id}-g{generation}"


def shadow_name(name: str, generation: int) -> str:
    """The name an output goes to for a generation that is not current (`name` as given, prefixed or not)."""
    return f"{name}.g{generation}"


def generation_of_app_id(base_app_id: str, app_id: str) -> int | None:
    match = re.fullmatch(rf"{re.escape(base_app_id)}(?:-g(\d+))?", app_id)
    return None if match is None else int(match.group(1) or 0)


def generation_of_app_topic(base_app_id: str, topic: str) -> int | None:
    """The generation owning a topic faust created for the memory's app: its tables' changelogs and its
    assignor topic. Other roles' topics (`<app_id>-extraction-...`) belong to no generation."""
    match = re.fullmatch(rf"{re.escape(base_app_id)}(?:-g(\d+))?-(?:[^-]+-changelog|__assignor-__leader)", topic)
    return None if match is None else int(match.group(1) or 0)


def generation_of_shadow(prefix: str, topic: str) -> int | None:
    for name in SHADOWED:
        match = re.fullmatch(rf"{re.escape(prefix + name)}\.g(\d+)", topic)
        if match:
            return int(match.group(1))
    return None


def parse_from(text: str) -> float:
    """`fms replay --from`: epoch seconds, or ISO-8601 (a time without a zone is UTC)."""
    try:
        value = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--from {text!r} is not a time")
    return value


@dataclass(frozen=True)
class Progress:
    """A replay's position over all input partitions, from offsets keyed alike (e.g. TopicPartition)."""

    replayed: int  # records the new generation has committed since its starting offsets
    total: int  # records between the starting offsets and the inputs' ends now
    lag: int  # records still ahead of the new generation

    @classmethod
    def of(cls, start: Mapping, committed: Mapping, end: Mapping) -> "Progress":
        replayed = total = lag = 0
        for tp, first in start.items():
            last = end.get(tp, first)
            done = min(max(committed.get(tp, first), first), last)
            replayed += done - first
            total += last - first
            lag += last - done
        return cls(replayed, total, lag)


def caught_up(lags: list[int], threshold: int, polls: int = 2) -> bool:
    """True when the last `polls` lags were all within `threshold`: one low reading may be a
    commit that happened to land just before a burst."""
    return len(lags) >= polls and all(lag <= threshold for lag in lags[-polls:])


def rewinds(old_committed: Mapping, new_committed: Mapping) -> dict:
    """Offsets to commit for the new generation at the switch: where it is ahead of the old one's last
    commit, back to that commit, so the records in between are delivered to it again and their outputs,
    recognized as already applied, go out again on the contract topics. Where it is behind, it goes on
    from where it is and applies those records for the first time."""
    return {tp: old for tp, old in old_committed.items()
            if old is not None and old >= 0 and tp in new_committed and new_committed[tp] > old}


def compacted_state(records) -> dict:
    """A compacted topic's state from its (key, value) records in order: the newest value per key,
    tombstoned keys left out."""
    state: dict = {}
    for key, value in records:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def reconcile(new: Mapping, contract: Mapping, absent) -> list[tuple]:
    """(key, value) records that turn the compacted contract state into the new generation's: each key
    whose value differs, then `absent(key, old_value)` (None: a tombstone; the old value itself: leave
    it) for each contract key the new generation does not have. Sorted by key."""
    out = [(key, value) for key, value in sorted(new.items()) if contract.get(key) != value]
    for key, value in sorted(contract.items()):
        if key not in new:
            replacement = absent(key, value)
            if replacement != value:
                out.append((key, replacement))
    return out
