"""The pattern memory: one space's patterns, learned from its records one at a time.

- space_memory.py: :class:`SpaceMemory`, the learner (``learn_one``, ``learn_many`` / ``predict_one``), and the
  algorithm's description in its docstring;
- calibration.py: how a space chooses its own match threshold from a sample of its stream;
- pattern.py: one :class:`Pattern`, what learning returns, confidence, value and eviction order;
- config.py: :class:`PatternConfig`;
- arithmetic.py: the dot products, sums and logarithms that make a memory bit-identical on
  every machine.
"""
from streams.core.patterns.config import DimensionMismatch, PatternConfig
from streams.core.patterns.pattern import (
    Learned,
    Match,
    Pattern,
    confidence,
    confidence_at,
    eviction_order,
    is_established,
    pattern_id_for,
    value_score,
)
from streams.core.patterns.space_memory import SpaceMemory, load_kernels

__all__ = [
    "DimensionMismatch",
    "Learned",
    "Match",
    "Pattern",
    "PatternConfig",
    "SpaceMemory",
    "confidence",
    "confidence_at",
    "eviction_order",
    "is_established",
    "load_kernels",
    "pattern_id_for",
    "value_score",
]
