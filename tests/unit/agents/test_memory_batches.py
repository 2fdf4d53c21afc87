"""Batching changes nothing: a space's records applied as one transaction (agents.memory.apply_steps)
leave the same memory and give the same outcomes and outputs as the same records one by one.
No broker: the table is a dict, as in test_journal."""
from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import memory as memory_agent
from agents.memory import APPLIED, FEATURES, INTERACTIONS, Step, apply_steps, emit_step
from agents.recognition import PatternEvents
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
    recent = RecentRecognitions(Prefixed(journal, "r/"), Prefixed(journal, "rq/"), 64)
    recent_interactions = RecentInteractions(Prefixed(journal, "i/"), Prefixed(journal, "iq/"), 64)
    return table, SimpleNamespace(
        checkpoint=Checkpoint(journal, caches=(store, optimizations, recent, recent_interactions)),
        store=store,
        optimizations=optimizations,
        recent=recent,
        recent_interactions=recent_interactions,
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


@contextlib.contextmanager
def learning_alone(rt):
    """The reference: apply_steps as it was before it learned runs of feature records together: each
    record learned by itself (PatternStore.learn) and remembered before the next step is looked at."""
    apply_one = memory_agent._apply_one

    def apply_and_learn(runtime, space, step, tx, learning):
        outcome, output = apply_one(runtime, space, step, tx, learning)
        if learning:
            memory_agent._learn(runtime, space, learning)
            output = step.output
        return outcome, output

    store = rt.store
    store.learn_iter = lambda memory, items: (store.learn(memory, *item) for item in items)
    memory_agent._apply_one = apply_and_learn
    try:
        yield
    finally:
        memory_agent._apply_one = apply_one
        del store.learn_iter


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 80))
def test_a_batch_s_feature_records_learned_together_write_what_they_write_one_by_one(seed, size):
    """The runs of feature records a batch learns together (PatternStore.learn_iter) write the same
    values in the same order as the records learned one by one: every transaction's journal entry,
    which holds its writes in the order the changelog gets them, is the same, and so are the
    outcomes, the outputs and the tables."""
    records = stream(seed, 160)
    runs = []
    for together in (True, False):
        table, rt = runtime()
        steps, entries = steps_of(records), []
        with contextlib.nullcontext() if together else learning_alone(rt):
            for i in range(0, len(steps), size):
                apply_steps(rt, "s", steps[i:i + size])
                entries.append(table.get("j/s"))
        runs.append((summary(steps), entries, dict(table)))
    assert runs[0] == runs[1]
    assert sum(s.source == FEATURES for s in steps) > 50


class Sent:
    """Stands in for the emitter: what was sent, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, object]] = []

    async def send(self, name, key, record, **_):
        self.records.append((name, key, record))


def emitted(rt, batches: list[list[Step]]) -> list[tuple[str, str, object]]:
    """What agents.memory.MemoryProcessor.apply sends for `batches`: each step's outputs in order,
    then the batch's pattern events."""
    rt.emit = Sent()
    rt.metrics = SimpleNamespace(optimization_events=SimpleNamespace(labels=lambda **_: SimpleNamespace(inc=int)))

    async def go():
        for batch in batches:
            patterns = PatternEvents()
            for step in batch:
                if step.outcome != "rejected":  # dead letters are not what this test is about
                    await emit_step(rt, step, patterns)
            await patterns.send(rt.emit)

    asyncio.run(go())
    return rt.emit.records


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 40))
def test_a_batch_announces_each_pattern_once_and_a_compacted_reader_sees_the_same(seed, size):
    records = stream(seed, 120)
    _, rt = runtime()
    steps = steps_of(records)
    batches = [steps[i:i + size] for i in range(0, len(steps), size)]
    for batch in batches:
        apply_steps(rt, "s", batch)
    coalesced = emitted(rt, batches)
    one_by_one = emitted(rt, [[s] for s in steps])

    # Recognitions and optimization records: one per record, as before (a recognition's ts is when it is sent).
    others = lambda out: [(name, k, {f: x for f, x in v.to_dict().items() if not (name == "recognitions" and f == "ts")})  # noqa: E731
                          for name, k, v in out if name != "patterns"]
    assert others(coalesced) == others(one_by_one) and others(coalesced)
    # Fewer records, and what a compacted topic keeps of each key is the same.
    assert len(coalesced) < len(one_by_one)
    latest = lambda out: {k: None if v is None else v.to_dict() for name, k, v in out if name == "patterns"}  # noqa: E731
    assert latest(coalesced) == latest(one_by_one)
    # Only "updated" records are folded into a newer one: every "created", "merged" (with the ids it
    # absorbed) and "evicted" record still goes out, in order, and a key's tombstone comes last.
    kept = lambda out: [(k, v.to_dict()) for name, k, v in out  # noqa: E731
                        if name == "patterns" and v is not None and v.event != "updated"]
    assert sorted(kept(coalesced), key=lambda r: r[0]) == sorted(kept(one_by_one), key=lambda r: r[0])
    for batch in batches:
        together = [(k, v) for name, k, v in emitted(rt, [batch]) if name == "patterns"]
        for i, (key, value) in enumerate(together):
            later = [v for k, v in together[i + 1:] if k == key]
            if value is None:
                assert not later, "a tombstone ends its key"
            elif value.event == "updated":
                assert later in ([], [None]), "one update per key per batch, after anything else the key says"
