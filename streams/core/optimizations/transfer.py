"""What one model learned, offered to the others: recommendations and exploration priors from
related memories (package docstring, 7).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from streams.core.optimizations.config import DEFAULT_CONFIG, OptimizationConfig
from streams.core.optimizations.config_stats import Prior, clamp01, effectiveness
from streams.core.optimizations.model_pattern_memory import ModelPatternMemory
from streams.core.optimizations.recommendation import Recommendation


def usable(keys: Iterable[str], known_params: Iterable[str] | None, capabilities: Iterable[str] | None) -> bool:
    """Capability rule (package docstring, 7): keys within ``known | capabilities``; anything when both
    are unknown (no history and no declared capabilities)."""
    known = set(known_params or ())
    if not known and capabilities is None:
        return True
    return set(keys) <= known | set(capabilities or ())


Candidates = Mapping[Any, "ModelPatternMemory"] | Iterable["ModelPatternMemory"]


def _as_memories(candidates: Candidates) -> list[ModelPatternMemory]:
    mems = list(candidates.values()) if isinstance(candidates, Mapping) else list(candidates)
    return sorted(mems, key=lambda m: (m.pattern_id, m.model_id))


def _similarities(pattern_id: str, related_patterns: Iterable[tuple[str, float]]) -> dict[str, float]:
    sims = {}
    for pid, sim in related_patterns:
        if pid == pattern_id:
            continue
        sim = clamp01(float(sim))
        if sim > sims.get(pid, -1.0):
            sims[pid] = sim
    sims[pattern_id] = 1.0
    return sims


def _sources(target_model, pattern_id, candidates, related_patterns, target_capabilities, target_params):
    mems = _as_memories(candidates)
    sims = _similarities(pattern_id, related_patterns)
    own = next((m for m in mems if m.model_id == target_model and m.pattern_id == pattern_id), None)
    known = set(target_params or ())
    for m in mems:
        if m.model_id == target_model:
            known |= m.params
    sources = [(m, sims[m.pattern_id]) for m in mems if m is not own and m.pattern_id in sims]
    return own, known, sources


def recommend(
    target_model: str,
    pattern_id: str,
    candidates: Mapping[Any, ModelPatternMemory] | Iterable[ModelPatternMemory],
    related_patterns: Iterable[tuple[str, float]] = (),
    cfg: OptimizationConfig = DEFAULT_CONFIG,
    target_capabilities: Iterable[str] | None = None,
    *,
    target_params: Iterable[str] | None = None,
    now: float | None = None,
    incumbent_key: str | None = None,
    space: str | None = None,
) -> Recommendation | None:
    """The config ``target_model`` should run on ``pattern_id``, own or transferred (package docstring, 7).

    ``candidates``: memories of ``pattern_id`` and of the related patterns, any model, the target's
    own included (a mapping's keys are ignored: each memory names its pattern and model).
    ``now``: event time for retention (default: each memory's own clock).
    """
    own, known, sources = _sources(target_model, pattern_id, candidates, related_patterns,
                                   target_capabilities, target_params)
    thr = cfg.effectiveness_threshold
    if space is None:
        space = own.space if own is not None else (sources[0][0].space if sources else "")
    own_opts: dict[str, tuple] = {}
    if own is not None:
        for s in own.eligible(now):
            e = effectiveness(s, cfg)
            own_opts[s.key] = (e, s.key, target_model, pattern_id,
                               Recommendation(space, pattern_id, target_model, dict(s.config), s.key, e,
                                              s.support, target_model, pattern_id))
        if own.support >= cfg.own_evidence_threshold and any(o[0] >= thr for o in own_opts.values()):
            return _pick(list(own_opts.values()), thr, cfg, incumbent_key)
    transferred: list[tuple] = []
    for m, sim in sources:
        w = cfg.transfer_discount * sim
        for s in m.eligible(now):
            if s.key in own_opts or not usable(s.config, known, target_capabilities):
                continue
            e = effectiveness(s, cfg) * w
            transferred.append((e, s.key, m.model_id, m.pattern_id,
                                Recommendation(space, pattern_id, target_model, dict(s.config), s.key, e,
                                               s.support, m.model_id, m.pattern_id)))
    # own evidence on a transferred config replaces the transfer
    covered = {o[1] for o in transferred} | {
        s.key for m, _ in sources for s in m.eligible(now) if s.key in own_opts}
    tier1 = transferred + [own_opts[k] for k in sorted(covered & own_opts.keys())]
    return _pick(tier1, thr, cfg, incumbent_key) or _pick(list(own_opts.values()), thr, cfg, incumbent_key)


def _pick(options, thr: float, cfg: OptimizationConfig, incumbent_key: str | None) -> Recommendation | None:
    options = [o for o in options if o[0] >= thr]
    if not options:
        return None
    options.sort(key=lambda o: (-o[0], o[1], o[2], o[3]))
    best = options[0]
    if incumbent_key is not None and best[1] != incumbent_key:
        inc = next((o for o in options if o[1] == incumbent_key), None)
        if inc is not None and best[0] <= inc[0] + cfg.switch_margin:
            return inc[4]
    return best[4]


def transfer_priors(
    target_model: str,
    pattern_id: str,
    candidates: Mapping[Any, ModelPatternMemory] | Iterable[ModelPatternMemory],
    related_patterns: Iterable[tuple[str, float]] = (),
    cfg: OptimizationConfig = DEFAULT_CONFIG,
    target_capabilities: Iterable[str] | None = None,
    *,
    target_params: Iterable[str] | None = None,
    now: float | None = None,
) -> list[Prior]:
    """Power priors from other memories for :meth:`ModelPatternMemory.suggest` (package docstring, 7):
    ``w * (value, n - value)`` pseudo-observations per source config, ``w = transfer_discount *
    similarity``, at most ``prior_max_weight`` per source config. Only eligible source configs
    (``support >= min_support``, unexpired) count, so that one lucky or unlucky try by one model
    does not steer every other model; usability as for :func:`recommend`."""
    _, known, sources = _sources(target_model, pattern_id, candidates, related_patterns,
                                 target_capabilities, target_params)
    out = []
    for m, sim in sources:
        w = cfg.transfer_discount * sim
        if w <= 0.0:
            continue
        for s in m.eligible(now):
            if not usable(s.config, known, target_capabilities):
                continue
            n = s.support
            scale = w if w * n <= cfg.prior_max_weight else cfg.prior_max_weight / n
            out.append(Prior(dict(s.config), s.key, scale * s.value, scale * (n - s.value),
                             s.mean_latency_ms, m.model_id, m.pattern_id))
    return out
