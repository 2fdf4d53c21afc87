"""What the worker sends without validating it again (streams.service.emit.UNCHECKED) is valid: the
recognitions and pattern events the agents build from the core's results, on random streams with
merges, evictions and calibration. (Optimization records: tests/unit/core/optimizations/test_optimizations.py.)"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.recognition import pattern_event, recognition_of
from schemas.codec import decode, encode
from schemas.state import RecentRecognition
from streams.core.patterns import PatternConfig, SpaceMemory


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), groups=st.integers(1, 6), threshold=st.sampled_from([None, 0.3, 0.6, 0.95]),
       max_patterns=st.sampled_from([3, 1000]), spread=st.sampled_from([0.01, 0.3, 1.0]))
def test_recognitions_and_pattern_events_of_random_streams_are_valid(seed, groups, threshold, max_patterns, spread):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, 8))
    memory = SpaceMemory("s", PatternConfig(match_threshold=threshold, max_patterns=max_patterns))
    for i in range(80):
        vector = (centres[rng.integers(groups)] + rng.normal(scale=spread, size=8)).astype(np.float32)
        learned = memory.learn_one(f"e{i}", vector, 1000.0 + i)
        seen = RecentRecognition(event_id=f"e{i}", pattern_id=learned.pattern_id, similarity=learned.similarity,
                                 confidence=learned.confidence, new=learned.new, offset=i, changed=(), removed=())
        records = [("recognitions", recognition_of("s", seen))]
        merged = {}
        for survivor, absorbed in learned.merged:
            merged.setdefault(survivor, []).append(absorbed)
        for pattern, kind in zip(learned.changed, learned.change_events, strict=True):
            records.append(("patterns", pattern_event("s", pattern, kind, 1000.0 + i,
                                                      tuple(merged.get(pattern.pattern_id, ())) or None)))
        records += [("patterns", pattern_event("s", p, "evicted", 1000.0 + i)) for p in learned.evicted]
        for kind, record in records:
            raw = encode(record)  # validates: raises ValidationError on anything the contract rejects
            assert decode(kind, raw).record == record
