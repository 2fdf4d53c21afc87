"""A model config's identity: its canonical form and its key (package docstring, 1)."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Mapping


_MAX_EXACT_INT = 2**53


def _canonical_value(name: str, v: Any) -> str | int | float | bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        x = float(v)
        if not math.isfinite(x):
            raise ValueError(f"config value {name!r} is not finite")
        if x.is_integer() and abs(x) <= _MAX_EXACT_INT:
            return int(x)
        return x
    raise TypeError(f"config value {name!r} must be a string, number or boolean, not {type(v).__name__}")


def canonical_config(config: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The config with canonical values, keys sorted (module docstring, 1)."""
    if not isinstance(config, Mapping):
        raise TypeError("a config is a mapping of str to str | number | bool")
    for k in config:
        if not isinstance(k, str):
            raise TypeError("config keys must be strings")
    return {k: _canonical_value(k, config[k]) for k in sorted(config)}


def key_of_canonical(canon: Mapping[str, Any]) -> str:
    return json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_key(config: Mapping[str, Any]) -> str:
    """Canonical, order-independent key: equal configs have equal keys."""
    return key_of_canonical(canonical_config(config))
