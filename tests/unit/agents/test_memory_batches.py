"""Batching changes nothing: a space's records applied as one transaction (agents.memory.apply_steps)
leave the same memory and give the same outcomes and outputs as the same records one by one.
No broker: the table is a dict, as in test_journal."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.memory import APPLIED, FEATURES, INTERACTIONS, Step, apply_steps
from schemas.records import AudioFeature, Interaction, Outcome
from schemas.validation import ValidationResult
from streams.core.optimizations import OptimizationConfig
from streams.core.patterns import PatternConfig
from streams.core.sequence import Held
from streams.state.checkpoint import Checkpoint
from streams.state.journal import Journal
from streams.state.optimizations import OptimizationStore
from streams.state.patterns import PatternStore, Prefixed, RecentInteractions, RecentRecognitions


def runtime():
    table: dict = {}
    journal = Journal(table)
    store = PatternStore(Prefixed(journal, "p/"), Prefixed(journal, "s/"), PatternConfig(max_patterns=5))
    optimizations = OptimizationStore(Prefixed(journal, "o/"), Prefixed(journal, "oi/"),
                                      OptimizationConfig(min_support=2))
    return table, SimpleNamespace(
        checkpoint=Checkpoint(journal, caches=(store, optimizations)),
        store=store,
        optimizations=optimizations,
        recent=RecentRecognitions(Prefixed(journal, "r/"), Prefixed(journal, "rp/"), 64),
        recent_interactions=RecentInteractions(Prefixed(journal, "i/"), Prefixed(journal, "ip/"), 64),
    )


def stream(seed: int, n: int) -> list[tuple[str, int, object]]:
    """Features of a few groups and interactions naming earlier (and some unknown) events, with a
    redelivered record now and then, as (source, offset, record)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(7, 16))
    out, offsets, features = [], {FEATURES: 0, INTERACTIONS: 0}, []
    last_feature = None
    for k in range(n):
        roll = rng.random()
        if k % 37 == 36:  # a redelivery: the last record, and the last feature (never rejected)
            out.append(out[-1])
            if out[-1][0] != FEATURES and last_feature is not None:
                out.append(last_feature)
            continue
        if roll < 0.6 or not features:
            v = centres[rng.integers(7)] + 0.05 * rng.normal(size=16)
            rec = AudioFeature(id=f"e{k}", space="s", vector=v.astype(np.float32), ts=1000.0 + k)
            source = FEATURES
            features.append(rec.id)
        else:
            event = features[rng.integers(len(features))] if rng.random() < 0.9 else "nope"
            rec = Interaction(id=f"i{k}", space="s", model_id=f"m{rng.integers(2)}",
                              config={"beam": int(rng.integers(1, 4))},
                              outcome=Outcome(bool(rng.random() < 0.7), quality=float(rng.random())),
                              ts=1000.0 + k, event_id=event)
            source = INTERACTIONS
        out.append((source, offsets[source], rec))
        if source == FEATURES:
            last_feature = out[-1]
        offsets[source] += 1
    return out


def steps_of(records) -> list[Step]:
    return [Step(Held(source, 0, offset, 0.0, None), source, rec, ValidationResult())
            for source, offset, rec in records]


def summary(steps: list[Step]):
    out = []
    for s in steps:
        if s.outcome != APPLIED:
            out.append((s.outcome, [e.code for e in s.result.errors]))
        elif s.source == FEATURES:
            seen, change = s.output
            out.append((s.outcome, seen, [(p.pattern_id, kind, p.count, p.confidence) for p, kind in change.events],
                        change.removed))
        else:
            pattern, records = s.output
            out.append((s.outcome, pattern.pattern_id, pattern.confidence, [r.to_dict() for r in records]))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_batches_of_any_size_give_the_memory_and_outputs_of_one_by_one(seed, cuts):
    records = stream(seed, 120)

    table_one, rt_one = runtime()
    one = steps_of(records)
    for step in one:
        apply_steps(rt_one, "s", [step])

    table_batched, rt_batched = runtime()
    batched = steps_of(records)
    i, c = 0, 0
    while i < len(batched):
        size = cuts[c % len(cuts)]
        apply_steps(rt_batched, "s", batched[i:i + size])
        i, c = i + size, c + 1

    assert summary(batched) == summary(one)
    state = lambda t: {k: v for k, v in t.items() if not k.startswith("j/")}  # noqa: E731
    assert state(table_batched) == state(table_one)
    assert rt_batched.checkpoint.journal.applied("s") == rt_one.checkpoint.journal.applied("s")
    outcomes = {s.outcome for s in one}
    assert APPLIED in outcomes and "duplicate" in outcomes and "rejected" in outcomes, outcomes
