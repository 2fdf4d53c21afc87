"""The checks every learner of the core passes (River's `check_estimator` is the model): the same
stream gives the same state, a state saved anywhere and restored carries on exactly as if never
interrupted, and bad input raises a clear error and changes nothing.

A learner joins by giving an adapter: how to make one, a stream, how to learn one item, a canonical
form of its whole state, how to restore from it, and inputs it must refuse.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from streams.core.optimizations import ModelPatternMemory, OptimizationConfig
from streams.core.patterns import PatternConfig, SpaceMemory


@dataclass
class Learner:
    name: str
    make: Callable[[], Any]
    stream: Callable[[int], list]  # seed -> items
    learn: Callable[[Any, Any, int], Any]  # (learner, item, position) -> output
    state: Callable[[Any], str]  # a canonical text of the whole state
    restore: Callable[[Any], Any]  # learner -> a new learner restored from its saved state
    bad: list  # items that must be refused


def _canonical(obj: Any) -> str:
    def default(o):
        if isinstance(o, np.ndarray):
            return {"array": o.astype(np.float32).tobytes().hex(), "shape": list(o.shape)}
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        raise TypeError(type(o))
    return json.dumps(obj, default=default, sort_keys=True)


# -- the pattern memory of one space --------------------------------------------------------------

def _space_stream(seed: int) -> list:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16))
    return [(f"e{i}", (centres[rng.integers(5)] + rng.normal(scale=0.3, size=16)).astype(np.float32), 1000.0 + i)
            for i in range(300)]


def _learned(r) -> tuple:
    return (r.pattern_id, r.similarity, r.confidence, r.new, r.event, r.merged,
            [p.pattern_id for p in r.evicted], [p.to_state() for p in r.changed])


def _space_state(m: SpaceMemory) -> str:
    state = m.space_state()
    return _canonical({"patterns": [p.to_state() for p in m.patterns()], "space": state,
                       "sample": m.calibration_sample(), "sample_patterns": m.calibration_sample_patterns(),
                       "threshold": m.threshold})


def _space_restore(m: SpaceMemory) -> SpaceMemory:
    again = SpaceMemory(m.space, m.cfg)
    again.restore(m.patterns(), m.space_state(), m.calibration_sample(), m.calibration_sample_patterns())
    return again


SPACE = Learner(
    name="SpaceMemory (calibrated)",
    make=lambda: SpaceMemory("s", PatternConfig(max_patterns=40)),
    stream=_space_stream,
    learn=lambda m, item, i: _learned(m.learn_one(*item)),
    state=_space_state,
    restore=_space_restore,
    bad=[("bad-nan", np.array([math.nan] * 16, dtype=np.float32), 2000.0),
         ("bad-dim", np.ones(17, dtype=np.float32), 2000.0),
         ("bad-zero", np.zeros(16, dtype=np.float32), 2000.0),
         ("bad-ts", np.ones(16, dtype=np.float32), math.inf)],
)
PINNED = Learner(**{**SPACE.__dict__, "name": "SpaceMemory (pinned 0.6)",
                    "make": lambda: SpaceMemory("s", PatternConfig(match_threshold=0.6, max_patterns=40))})


# -- the optimization memory of one (pattern, model) -------------------------------------------------

def _optimization_stream(seed: int) -> list:
    rng = np.random.default_rng(seed)
    configs = [{"beam": b, "temperature": t} for b in (1, 2, 4) for t in (0.0, 0.5)]
    return [(configs[rng.integers(len(configs))],
             {"success": bool(rng.random() < 0.7), "latency_ms": float(rng.uniform(10, 200)),
              "quality": float(rng.random())}, 1000.0 + 60.0 * i) for i in range(200)]


OPTIMIZATION = Learner(
    name="ModelPatternMemory",
    make=lambda: ModelPatternMemory("s", "p-1", "asr", OptimizationConfig()),
    stream=_optimization_stream,
    learn=lambda m, item, i: [e.to_record().to_dict() for e in m.learn_one(*item)],
    state=lambda m: _canonical(m.to_state()),
    restore=lambda m: ModelPatternMemory.from_state(json.loads(json.dumps(m.to_state())), m.cfg),
    bad=[({"beam": [1, 2]}, {"success": True}, 5e4), ({"beam": 1}, {"success": "yes"}, 5e4),
         ({"beam": 1}, {"success": True, "quality": 2.0}, 5e4), ({"beam": 1}, {"success": True, "latency_ms": -1}, 5e4)],
)

LEARNERS = [SPACE, PINNED, OPTIMIZATION]


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda l: l.name)
def test_the_same_stream_gives_the_same_state_and_outputs(learner):
    a, b = learner.make(), learner.make()
    items = learner.stream(1)
    out_a = [_canonical(learner.learn(a, x, i)) for i, x in enumerate(items)]
    out_b = [_canonical(learner.learn(b, x, i)) for i, x in enumerate(items)]
    assert out_a == out_b
    assert learner.state(a) == learner.state(b)
    assert learner.state(a) != learner.state(learner.make()), "the stream changed the state"


@pytest.mark.parametrize("cut", [1, 37, 150, 299])
@pytest.mark.parametrize("learner", LEARNERS, ids=lambda l: l.name)
def test_a_state_saved_anywhere_carries_on_as_if_never_interrupted(learner, cut):
    items = learner.stream(2)
    live = learner.make()
    for i, x in enumerate(items):
        learner.learn(live, x, i)
    first = learner.make()
    for i, x in enumerate(items[:cut]):
        learner.learn(first, x, i)
    restored = learner.restore(first)
    assert learner.state(restored) == learner.state(first), "the round trip keeps everything"
    for i, x in enumerate(items[cut:], start=cut):
        learner.learn(restored, x, i)
    assert learner.state(restored) == learner.state(live)


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda l: l.name)
def test_bad_input_raises_a_clear_error_and_changes_nothing(learner):
    m = learner.make()
    for i, x in enumerate(learner.stream(3)[:50]):
        learner.learn(m, x, i)
    before = learner.state(m)
    for x in learner.bad:
        with pytest.raises((ValueError, TypeError)) as exc:
            learner.learn(m, x, 50)
        assert str(exc.value), "the error says what is wrong"
        assert learner.state(m) == before, f"{x!r:.60} changed the state"
