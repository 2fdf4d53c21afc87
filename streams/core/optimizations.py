"""Optimization memory: the pure core that turns interactions into config recommendations.

The shell resolves an ``fms.interactions`` record to its context pattern, loads the
:class:`ModelPatternMemory` of ``(space, pattern_id, model_id)`` from a changelogged table
(:meth:`ModelPatternMemory.from_state`), calls :meth:`~ModelPatternMemory.learn_one`, emits the
returned :class:`Event` s on ``fms.optimizations`` (:meth:`Event.to_record`) and writes
:meth:`~ModelPatternMemory.to_state` back. Like River's estimators the objects here are small and
pure (``learn_one`` / ``predict_one``, no I/O, no clock); state is plain JSON (str, int, float,
bool, None, lists, dicts), at most ``max_configs`` configs per memory.

Notation: for one config ``c`` of one (pattern, model), ``s`` / ``f`` are its successes /
failures, ``n = s + f`` its support, ``cfg`` an :class:`OptimizationConfig`.

1. **Config identity** (:func:`config_key`). Values are canonicalized (:func:`canonical_config`):
   bools stay bools, integral floats become ints (``1.0`` is ``1``; ``-0.0`` is ``0``), other floats
   keep their shortest round-trip repr, strings stay; NaN/inf and other types are rejected. The key
   is the compact JSON of the canonical dict with sorted keys, so equal configs aggregate whatever
   their key order or number spelling.

2. **Statistics** (:class:`ConfigStats`). Per config: ``successes``, ``failures``, ``value`` =
   ``sum y`` with ``y = quality (1.0 when absent) if success else 0`` (the very score the pattern
   memory's ``apply_feedback`` uses, see 9), quality sum/count over the outcomes that report one,
   latency sum/count, ``first_ts``, ``last_ts``. Sums are added in arrival order.

3. **Effectiveness** (:func:`effectiveness`), in 0..1::

       alpha = prior_success + value                 (default prior Beta(1, 1))
       beta  = prior_failure + (n - value)
       m     = alpha / (alpha + beta)                 posterior mean of E[y]
       sd    = sqrt(m (1 - m) / (alpha + beta + 1))   posterior standard deviation
       lower = clamp(m - lower_z * sd, 0, 1)          lower_z = 1: ~16th percentile
       lat   = latency_scale_ms / (latency_scale_ms + mean latency_ms)   (1 without latency data)
       effectiveness = lower * lat

   Why: ``E[y] = P(success) * E[quality | success]`` is the expected delivered quality, a failure
   delivering nothing. Modelling ``y`` in [0, 1] with a Beta posterior (the fractional Bernoulli
   update that Thompson sampling uses for [0, 1] rewards) shrinks *both* the success rate and the
   quality toward the prior while evidence is thin, and never understates the uncertainty (a
   Bernoulli outcome has the largest variance of any [0, 1] outcome with that mean). Taking the
   lower credible bound instead of the mean makes evidence count: a lucky 1/1 scores 0.43, a
   steady 40/50 scores 0.73, 3/3 scores 0.64 and 2/3 scores 0.40 (the raw averages would rank
   them 1.0 > 0.8). The latency factor is smooth, needs no knowledge of other configs, halves the
   score at ``latency_scale_ms`` (10 s) and costs a 100 ms config 1%, a 1 s config 9%. It uses
   the arithmetic mean latency (the expected cost of a call). Everything is ``+ - * / sqrt``:
   correctly rounded IEEE operations, so the same on every machine.

4. **Recommendation state machine** (:meth:`ModelPatternMemory.learn_one`). Eligible configs have
   ``n >= min_support`` (3) and evidence within the retention period. The *best* is the eligible
   config of highest effectiveness (ties: smallest config key). At most one config is
   *recommended* (published) at a time:

   - it is ``"retired"`` when its effectiveness drops below ``effectiveness_threshold`` (0.5), when
     another eligible config beats it by more than ``switch_margin`` (0.02, hysteresis against
     flapping), or when it leaves the memory (expired or evicted);
   - the best eligible config is ``"recommended"`` when nothing is recommended and its
     effectiveness is ``>= effectiveness_threshold``.

   A switch therefore emits ``retired`` (old) then ``recommended`` (new), in that order. Events
   carry the ``ts`` of the record (or ``expire`` call) that caused them, and the effectiveness and
   support of their config at that moment. The memory's own events do not re-announce a config
   as its numbers move (:meth:`~ModelPatternMemory.predict_one` gives the live values); what the
   shell publishes goes through :func:`transition`, which does (10).

5. **Retention, in event time.** The memory's clock ``now`` is the largest ``ts`` it has seen (or
   been given by :meth:`~ModelPatternMemory.expire`). Configs whose ``last_ts < now -
   retention_s`` (30 days) are dropped, on every learn and on ``expire(now)``. A record whose
   ``ts`` is already older than that is ignored: its evidence has expired.

6. **Limits.** A memory tracks at most ``max_configs`` configs: a new config evicts the lowest
   :func:`config_value` first (never the recommended one unless ``max_configs == 1``)::

       value     = (effectiveness + recency + frequency) / 3                  in 0..1
       recency   = max(0, 1 - (now - last_ts) / retention_s)
       frequency = n / (n + support_scale)                                 support_scale = 10

   Ties: older ``last_ts`` first, then config key. The same formula ranks whole memories for the
   shell's per-space limit (:func:`memory_value`, :func:`eviction_candidates`) with the best
   eligible effectiveness (0 without one), the memory's newest evidence and its total support.
   :func:`optimizations_to_evict` is the per-space arithmetic, stateless like
   ``streams.core.limits.evictions_needed``: a space holding ``count`` memories sheds
   ``count - max_optimizations`` at once (hard cap, 500), and once ``count >
   cleanup_optimizations`` (400) it sheds toward ``floor(400 * cleanup_target)`` = 360, at most
   ``max_evictions_per_call`` per call. Call it with the count *including* a memory about to be
   created. An evicted memory's recommendation is retired (:meth:`ModelPatternMemory.drop`).
   A config's canonical key is at most ``max_config_bytes`` (4 KiB, else ``ValueError``) and a
   memory remembers at most ``max_params`` (256) parameter names, so a state stays a few KiB.

7. **Knowledge transfer** (:func:`recommend`, :func:`transfer_priors`). The candidates are memories
   of the target pattern (similarity 1) and of its related patterns (similarity ``s`` from the
   pattern memory), any model. The target's own memory of the pattern is the one with its
   ``model_id`` and ``pattern_id``.

   - *Takeover.* If the target's own support (all its interactions on the pattern) is ``>=
     own_evidence_threshold`` (10) and its best eligible effectiveness ``>=
     effectiveness_threshold``, its own best is the recommendation; transfer is no longer consulted.
   - *Transfer first.* Otherwise every eligible config (``n >= min_support``, unexpired) of every
     other candidate memory that the target can use is an option with ``effectiveness = source
     effectiveness * transfer_discount (0.8) * s``, except that where the target itself has an
     eligible record of that config, its own effectiveness replaces the transfer (own evidence
     about that exact config wins, undiscounted). The highest option ``>= effectiveness_threshold``
     is recommended.
   - *Own, thin.* Only when no such option qualifies, the target's own other eligible configs are
     considered (so that three lucky tries of an untested config do not displace what many
     interactions of other models established).

   Ties: config key, then source model id, then source pattern id. With ``incumbent_key`` (the
   config the shell last published) a challenger must beat the incumbent by more than
   ``switch_margin``. ``source_model_id`` / ``source_pattern_id`` name the source.

   *Capability rule* (:func:`usable`). The target's known parameters are the union of the config
   keys of the target's memories among the candidates (any pattern) plus ``target_params`` (the
   shell may keep a per-model union over all patterns). A config is usable iff its keys are a
   subset of ``known | target_capabilities``; when the target has no history and no
   ``target_capabilities`` is given, everything is usable (nothing says otherwise, and a wrong
   guess costs one interaction).

   For exploration the same sources become a *power prior* (:func:`transfer_priors`): each eligible
   source config adds ``w * (value, n - value)`` pseudo-observations, ``w = transfer_discount *
   s``, scaled down so that a source contributes at most ``prior_max_weight`` (10)
   pseudo-observations, and all sources of one config together at most that much again. The
   target's own evidence therefore dominates after a few dozen interactions. Single tries do not
   transfer (``min_support``): otherwise one unlucky first try by one model steers every model
   away from a config, and models facing one pattern herd (seen in the benchmark).

8. **Exploration** (:func:`score_for_exploration`, :meth:`ModelPatternMemory.suggest`). What a model
   should run *next* is the config of highest optimistic score over the posterior of 3 (with any
   transfer prior) and the memory's latency factor (the prior's for an untried config)::

       score = clamp(m + xi * sd, 0, 1) * lat

   Default (``exploration="ucb"``): ``xi = ucb_z = 1``, the mirror image of effectiveness's lower
   bound: optimism in the face of uncertainty, deterministic by construction (ties: config key).
   Untried configs (``options``, transfer priors) start at the prior, score 0.79, so each is tried
   before a proven config settles. ``exploration="thompson"`` draws ``xi`` instead: a deterministic
   approximately standard-normal number (sum of 12 uniforms minus 6, Irwin-Hall, from BLAKE2b of
   space, pattern, model, the memory's interaction count, ``salt`` and the config key, in integer
   arithmetic) times ``exploration_scale``. A fixed moderate quantile is used because the horizon
   of one (pattern, model) is short: in the benchmark (8 configs, 150 interactions, no transfer)
   Thompson sampling, even with its sd halved, and ``ucb_z = 2`` explore so much that their regret
   exceeds plain greedy's, while ``ucb_z`` 0.75..1.5 beat it; 1 sits in the middle. The
   published recommendation (4) is deliberately the pessimistic bound; the suggestion is the
   optimistic one. The shell can serve both: the published config as the answer, the suggestion
   as the config to run next (it knows no configs the model has not reported unless given
   ``options``; transfer priors bring other models' configs in).

9. **Pattern feedback** (:func:`pattern_feedback`): ``(outcome.success, outcome.quality)``, quality
   ``None`` when absent. ``SpaceMemory.apply_feedback`` scores it ``y = quality or 1.0 if success
   else 0.0``, the same ``y`` as 2, so a context's reliability and its configs' effectiveness
   read the same evidence. Latency is a property of a config, not of the context; it is not fed back.

10. **Re-announcement** (:func:`transition`, :func:`reannounce_due`). A published recommendation's
   ``effectiveness`` and ``support`` are the memory's current view of it, to within a tolerance:
   when the shell re-decides a (pattern, model) and the same config from the same source (model
   and pattern) comes out, it is announced again (``recommended``, no ``retired`` before it) when::

       |effectiveness - published effectiveness| > reannounce_tolerance            (0.02)
       or support >= published support * reannounce_support_factor               (2: doubled)
       or support * reannounce_support_factor <= published support                 (halved)

   and otherwise not, so the comparison is always against the numbers last announced, not the
   last decision's: drift below the tolerance accumulates until it crosses it. A change of source
   pattern alone (same config, same source model) is announced too, since it names a different
   memory. ``reannounce_tolerance = 1`` and ``reannounce_support_factor = 0`` turn each trigger off.

   How often one key re-announces is bounded by the rule itself rather than by a clock: a key is
   re-decided only at an interaction of its own (pattern, model) or of the memory it transfers
   from (or when that memory is dropped), it gets at most one ``recommended`` per decision, and only after its numbers moved by more
   than the tolerance since its last record (or its support doubled). One outcome moves a config's
   posterior mean by at most ``1 / (n + 3)`` (default prior), so effectiveness re-announcements thin out as support
   ``n`` grows: over 10,000 interactions at a steady 60-95% success rate, one config's record went
   out 19 to 27 times in all at the defaults, 15 to 20 of them within its first 100 interactions
   (``tests/unit/test_optimizations.py``, test_reannouncements_thin_out_as_support_grows). An
   event-time rate limit was not used: a re-announcement it holds back stays unannounced if the
   key's interactions stop within the interval, and on a compacted topic the last record is what
   a reader keeps. Everything here is event-driven and clock-free, so a replay emits the same
   records.

Determinism: no clock, no global randomness; configs are iterated in key order wherever the
order can matter; floats are summed in arrival order; ties are broken by keys. The same sequence
of calls gives the same events, suggestions and state, and ``from_state(to_state())`` at any point
continues bit-identically (floats survive JSON exactly: Python and orjson print the shortest
round-trip repr).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from schemas.records import Optimization

__all__ = [
    "ConfigStats",
    "Event",
    "ModelPatternMemory",
    "OptimizationConfig",
    "Prior",
    "Recommendation",
    "canonical_config",
    "config_key",
    "config_value",
    "effectiveness",
    "eviction_candidates",
    "exploration_draw",
    "latency_factor",
    "memory_value",
    "optimizations_to_evict",
    "pattern_feedback",
    "posterior",
    "reannounce_due",
    "recommend",
    "score_for_exploration",
    "transfer_priors",
    "transition",
    "usable",
]

DAY = 86400.0
_STATE_VERSION = 1
RECOMMENDED = "recommended"
RETIRED = "retired"


@dataclass(frozen=True)
class OptimizationConfig:
    # the design documents' optimizations block
    effectiveness_threshold: float = 0.5  # effectivenessThreshold
    retention_s: float = 30 * DAY  # retentionPeriod, event time
    max_optimizations: int = 500  # per space: memories of (pattern, model)
    cleanup_optimizations: int = 400  # cleanupThresholds.optimizations
    cleanup_target: float = 0.9  # a cleanup sheds toward this fraction of the threshold
    max_evictions_per_call: int = 64  # cleanup pace; the hard cap is restored at once
    # one (pattern, model)
    min_support: int = 3  # interactions before a config can be recommended
    max_configs: int = 16  # configs tracked per (pattern, model)
    max_config_bytes: int = 4096  # of a config's canonical key
    max_params: int = 256  # parameter names remembered per memory (capability rule)
    switch_margin: float = 0.02  # a challenger must beat the recommended config by more
    # scoring (module docstring, 3)
    prior_success: float = 1.0
    prior_failure: float = 1.0
    lower_z: float = 1.0  # effectiveness = posterior mean - lower_z * sd
    latency_scale_ms: float | None = 10_000.0  # None: latency is ignored
    support_scale: float = 10.0  # frequency term of eviction values
    # exploration (8)
    exploration: str = "ucb"  # or "thompson"
    ucb_z: float = 1.0  # optimistic score = posterior mean + ucb_z * sd
    exploration_scale: float = 1.0  # Thompson: multiplies the posterior sd of the draw
    # transfer (7)
    transfer_discount: float = 0.8
    own_evidence_threshold: int = 10  # target support before its own results take over
    prior_max_weight: float = 10.0  # pseudo-observations a transfer prior may add per config
    # re-announcement (10)
    reannounce_tolerance: float = 0.02  # published effectiveness moved more than this: re-announce; 1: never
    reannounce_support_factor: float = 2.0  # published support grown (or shrunk) by this factor: re-announce; 0: never

    def __post_init__(self) -> None:
        if not 0.0 <= self.effectiveness_threshold <= 1.0:
            raise ValueError("effectiveness_threshold must be in [0, 1]")
        if not 0.0 < self.retention_s < math.inf:
            raise ValueError("retention_s must be > 0 and finite")
        if self.max_optimizations < 1 or not 1 <= self.cleanup_optimizations <= self.max_optimizations:
            raise ValueError("need 1 <= cleanup_optimizations <= max_optimizations")
        if not 0.0 < self.cleanup_target <= 1.0:
            raise ValueError("cleanup_target must be in (0, 1]")
        if self.max_evictions_per_call < 1:
            raise ValueError("max_evictions_per_call must be >= 1")
        if self.min_support < 1 or self.max_configs < 1 or self.max_config_bytes < 2 or self.max_params < 0:
            raise ValueError("min_support, max_configs >= 1, max_config_bytes >= 2, max_params >= 0")
        if not 0.0 <= self.switch_margin <= 1.0:
            raise ValueError("switch_margin must be in [0, 1]")
        if not (0.0 < self.prior_success < math.inf and 0.0 < self.prior_failure < math.inf):
            raise ValueError("prior_success and prior_failure must be > 0 and finite")
        if not 0.0 <= self.lower_z < math.inf:
            raise ValueError("lower_z must be >= 0 and finite")
        if self.latency_scale_ms is not None and not 0.0 < self.latency_scale_ms < math.inf:
            raise ValueError("latency_scale_ms must be > 0 and finite, or None")
        if not 0.0 < self.support_scale < math.inf:
            raise ValueError("support_scale must be > 0 and finite")
        if self.exploration not in ("thompson", "ucb"):
            raise ValueError('exploration must be "thompson" or "ucb"')
        if not 0.0 < self.exploration_scale < math.inf:
            raise ValueError("exploration_scale must be > 0 and finite")
        if not 0.0 <= self.ucb_z < math.inf:
            raise ValueError("ucb_z must be >= 0 and finite")
        if not 0.0 <= self.transfer_discount <= 1.0:
            raise ValueError("transfer_discount must be in [0, 1]")
        if self.own_evidence_threshold < 0:
            raise ValueError("own_evidence_threshold must be >= 0")
        if not 0.0 <= self.prior_max_weight < math.inf:
            raise ValueError("prior_max_weight must be >= 0 and finite")
        if not 0.0 <= self.reannounce_tolerance <= 1.0:
            raise ValueError("reannounce_tolerance must be in [0, 1]")
        if not (self.reannounce_support_factor == 0.0 or 1.0 < self.reannounce_support_factor < math.inf):
            raise ValueError("reannounce_support_factor must be 0 (off) or > 1 and finite")


DEFAULT_CONFIG = OptimizationConfig()

# -- configs and outcomes -----------------------------------------------------

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


def _key_of_canonical(canon: Mapping[str, Any]) -> str:
    return json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_key(config: Mapping[str, Any]) -> str:
    """Canonical, order-independent key: equal configs have equal keys."""
    return _key_of_canonical(canonical_config(config))


@dataclass(frozen=True, slots=True)
class _Outcome:
    success: bool
    latency_ms: float | None
    quality: float | None


def _outcome(outcome: Any) -> _Outcome:
    """Reads a wire outcome dict or an object with ``success``/``latency_ms``/``quality``."""
    if isinstance(outcome, Mapping):
        success, lat, q = outcome.get("success"), outcome.get("latency_ms"), outcome.get("quality")
    else:
        success = getattr(outcome, "success", None)
        lat, q = getattr(outcome, "latency_ms", None), getattr(outcome, "quality", None)
    if not isinstance(success, bool):
        raise ValueError("outcome.success must be a bool")
    if lat is not None:
        if isinstance(lat, bool) or not isinstance(lat, numbers.Real):
            raise ValueError("outcome.latency_ms must be a number")
        lat = float(lat)
        if not 0.0 <= lat < math.inf:
            raise ValueError("outcome.latency_ms must be >= 0 and finite")
    if q is not None:
        if isinstance(q, bool) or not isinstance(q, numbers.Real):
            raise ValueError("outcome.quality must be a number")
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError("outcome.quality must be in [0, 1]")
    return _Outcome(success, lat, q)


def pattern_feedback(outcome: Any) -> tuple[bool, float | None]:
    """What the shell passes to ``SpaceMemory.apply_feedback``: ``(success, quality or None)``.

    ``apply_feedback`` scores it ``y = (quality or 1.0) if success else 0.0``, the same ``y`` the
    optimization posterior uses. Latency describes the config, not the context: not fed back.
    """
    o = _outcome(outcome)
    return o.success, o.quality


# -- statistics and scores ----------------------------------------------------


@dataclass(slots=True)
class ConfigStats:
    """Evidence about one config of one (space, pattern, model)."""

    config: dict[str, str | int | float | bool]
    key: str
    successes: int = 0
    failures: int = 0
    value: float = 0.0  # sum of y = (quality or 1) if success else 0
    quality_sum: float = 0.0
    quality_n: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0

    @classmethod
    def new(cls, config: Mapping[str, Any], ts: float = 0.0) -> ConfigStats:
        canon = canonical_config(config)
        return cls(config=canon, key=_key_of_canonical(canon), first_ts=float(ts), last_ts=float(ts))

    @property
    def support(self) -> int:
        return self.successes + self.failures

    @property
    def mean_quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_sum / self.latency_n if self.latency_n else None

    def learn(self, outcome: Any, ts: float) -> None:
        o = outcome if isinstance(outcome, _Outcome) else _outcome(outcome)
        ts = float(ts)
        if o.success:
            self.successes += 1
            self.value += 1.0 if o.quality is None else o.quality
        else:
            self.failures += 1
        if o.quality is not None:
            self.quality_sum += o.quality
            self.quality_n += 1
        if o.latency_ms is not None:
            self.latency_sum += o.latency_ms
            self.latency_n += 1
        if self.support == 1:
            self.first_ts = self.last_ts = ts
        else:
            self.first_ts = min(self.first_ts, ts)
            self.last_ts = max(self.last_ts, ts)

    def to_state(self) -> dict:
        return {
            "config": dict(self.config),
            "s": self.successes,
            "f": self.failures,
            "y": self.value,
            "qs": self.quality_sum,
            "qn": self.quality_n,
            "ls": self.latency_sum,
            "ln": self.latency_n,
            "t0": self.first_ts,
            "t1": self.last_ts,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> ConfigStats:
        canon = canonical_config(d["config"])
        return cls(
            config=canon,
            key=_key_of_canonical(canon),
            successes=int(d["s"]),
            failures=int(d["f"]),
            value=float(d["y"]),
            quality_sum=float(d["qs"]),
            quality_n=int(d["qn"]),
            latency_sum=float(d["ls"]),
            latency_n=int(d["ln"]),
            first_ts=float(d["t0"]),
            last_ts=float(d["t1"]),
        )


def posterior(
    stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG, prior: tuple[float, float] = (0.0, 0.0)
) -> tuple[float, float]:
    """``(alpha, beta)`` of the Beta posterior over ``E[y]``, with extra pseudo-counts ``prior``."""
    a = cfg.prior_success + prior[0]
    b = cfg.prior_failure + prior[1]
    if stats is not None:
        a = a + stats.value
        b = b + (stats.support - stats.value)
    return a, b


def _moments(a: float, b: float) -> tuple[float, float]:
    t = a + b
    m = a / t
    return m, math.sqrt(max(0.0, m * (1.0 - m)) / (t + 1.0))


def latency_factor(
    stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG, fallback_ms: float | None = None
) -> float:
    """``S / (S + mean latency)``, ``S = latency_scale_ms``; 1.0 without latency data."""
    if cfg.latency_scale_ms is None:
        return 1.0
    mean = stats.mean_latency_ms if stats is not None else None
    if mean is None:
        mean = fallback_ms
    if mean is None:
        return 1.0
    return cfg.latency_scale_ms / (cfg.latency_scale_ms + mean)


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def effectiveness(stats: ConfigStats | None, cfg: OptimizationConfig = DEFAULT_CONFIG) -> float:
    """Lower credible bound of expected delivered quality, times the latency factor (docstring, 3)."""
    m, sd = _moments(*posterior(stats, cfg))
    return _clamp01(m - cfg.lower_z * sd) * latency_factor(stats, cfg)


def score_for_exploration(
    stats: ConfigStats | None,
    cfg: OptimizationConfig = DEFAULT_CONFIG,
    draw: float | None = None,
    prior: tuple[float, float] = (0.0, 0.0),
    prior_latency_ms: float | None = None,
) -> float:
    """Optimistic score: ``clamp(m + xi * sd, 0, 1) * lat`` with ``xi = draw`` (Thompson) or ``ucb_z``."""
    xi = cfg.ucb_z if draw is None else draw
    m, sd = _moments(*posterior(stats, cfg, prior))
    return _clamp01(m + xi * sd) * latency_factor(stats, cfg, prior_latency_ms)


def exploration_draw(seed: str, key: str) -> float:
    """A deterministic approximately standard-normal draw (Irwin-Hall of 12 uniforms from BLAKE2b)."""
    h = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=48).digest()
    total = sum(int.from_bytes(h[i : i + 4], "little") for i in range(0, 48, 4))
    return (total + 6) / 4294967296.0 - 6.0  # each uniform is (u + 1/2) / 2^32


def _recency(last_ts: float, now: float, cfg: OptimizationConfig) -> float:
    return max(0.0, 1.0 - max(0.0, now - last_ts) / cfg.retention_s)


def _frequency(n: int, cfg: OptimizationConfig) -> float:
    return n / (n + cfg.support_scale)


def config_value(stats: ConfigStats, now: float, cfg: OptimizationConfig = DEFAULT_CONFIG) -> float:
    """Worth of keeping a config: ``(effectiveness + recency + frequency) / 3`` (docstring, 6)."""
    return (effectiveness(stats, cfg) + _recency(stats.last_ts, now, cfg) + _frequency(stats.support, cfg)) / 3.0


# -- events and recommendations ----------------------------------------------


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
    enough from ``prev``'s numbers to be announced again (docstring, 10)."""
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
    ``prev`` is what was last announced, so that small moves add up (docstring, 10)."""
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


# -- the memory of one (space, pattern, model) --------------------------------


class ModelPatternMemory:
    """Config statistics and the published recommendation of one (space, pattern, model)."""

    __slots__ = ("space", "pattern_id", "model_id", "cfg", "_stats", "_current", "_now", "_n", "_params")

    def __init__(self, space: str, pattern_id: str, model_id: str, cfg: OptimizationConfig = DEFAULT_CONFIG):
        self.space = space
        self.pattern_id = pattern_id
        self.model_id = model_id
        self.cfg = cfg
        self._stats: dict[str, ConfigStats] = {}
        self._current: str | None = None
        self._now: float | None = None
        self._n = 0  # interactions ever learned (seeds exploration draws)
        self._params: set[str] = set()

    # -- reading
    @property
    def now(self) -> float | None:
        return self._now

    @property
    def n(self) -> int:
        return self._n

    @property
    def support(self) -> int:
        """Interactions behind the configs held now."""
        return sum(s.support for s in self._stats.values())

    @property
    def last_ts(self) -> float | None:
        return max((s.last_ts for s in self._stats.values()), default=None)

    @property
    def params(self) -> frozenset[str]:
        """The config keys this model has sent on this pattern (the first ``max_params``)."""
        return frozenset(self._params)

    @property
    def current_key(self) -> str | None:
        return self._current

    def __len__(self) -> int:
        return len(self._stats)

    def stats(self) -> list[ConfigStats]:
        return [self._stats[k] for k in sorted(self._stats)]

    def get(self, config: Mapping[str, Any] | str) -> ConfigStats | None:
        return self._stats.get(config if isinstance(config, str) else config_key(config))

    def effectiveness_of(self, config: Mapping[str, Any] | str) -> float:
        return effectiveness(self.get(config), self.cfg)

    def eligible(self, now: float | None = None) -> list[ConfigStats]:
        """Configs with ``support >= min_support`` and unexpired evidence at ``now``, key order."""
        horizon = self._horizon(now)
        return [s for s in self.stats() if s.support >= self.cfg.min_support and s.last_ts >= horizon]

    def best(self, now: float | None = None) -> ConfigStats | None:
        """The eligible config of highest effectiveness (ties: smallest key), whatever its score."""
        best, best_e = None, -1.0
        for s in self.eligible(now):
            e = effectiveness(s, self.cfg)
            if e > best_e:
                best, best_e = s, e
        return best

    def predict_one(self) -> Recommendation | None:
        """The published recommendation with its current effectiveness and support."""
        if self._current is None:
            return None
        return self._recommendation(self._stats[self._current])

    def _recommendation(self, s: ConfigStats, eff: float | None = None) -> Recommendation:
        return Recommendation(self.space, self.pattern_id, self.model_id, dict(s.config), s.key,
                              effectiveness(s, self.cfg) if eff is None else eff, s.support,
                              self.model_id, self.pattern_id)

    def _horizon(self, now: float | None) -> float:
        t = self._now if now is None else (now if self._now is None else max(now, self._now))
        return -math.inf if t is None else t - self.cfg.retention_s

    # -- learning
    def learn_one(self, config: Mapping[str, Any], outcome: Any, ts: float) -> list[Event]:
        """Fold one interaction in; returns the ``retired``/``recommended`` events it causes."""
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError("ts must be finite")
        o = _outcome(outcome)
        canon = canonical_config(config)
        key = _key_of_canonical(canon)
        if len(key.encode()) > self.cfg.max_config_bytes:
            raise ValueError(f"config is larger than max_config_bytes={self.cfg.max_config_bytes}")
        now = ts if self._now is None else max(self._now, ts)
        if ts < now - self.cfg.retention_s:
            return []  # already expired
        self._now = now
        self._n += 1
        if len(self._params) < self.cfg.max_params:
            for name in canon:  # sorted: the same names are kept on every replay
                if name not in self._params and len(self._params) < self.cfg.max_params:
                    self._params.add(name)
        removed = self._expire_stats()
        s = self._stats.get(key)
        if s is None:
            if len(self._stats) >= self.cfg.max_configs:
                removed.update(self._evict_configs(len(self._stats) - self.cfg.max_configs + 1))
            s = ConfigStats(config=canon, key=key, first_ts=ts, last_ts=ts)
            self._stats[key] = s
        s.learn(o, ts)
        return self._refresh(ts, removed)

    def expire(self, now: float) -> list[Event]:
        """Advance the event clock to ``now`` and drop configs older than the retention period."""
        now = float(now)
        if not math.isfinite(now):
            raise ValueError("now must be finite")
        self._now = now if self._now is None else max(self._now, now)
        return self._refresh(self._now, self._expire_stats())

    def drop(self, ts: float) -> list[Event]:
        """Forget everything (the shell evicts this memory); retires the recommendation if any."""
        removed = dict(self._stats)
        self._stats.clear()
        return self._refresh(float(ts), removed)

    def _expire_stats(self) -> dict[str, ConfigStats]:
        horizon = self._horizon(None)
        old = [k for k, s in self._stats.items() if s.last_ts < horizon]
        return {k: self._stats.pop(k) for k in sorted(old)}

    def _evict_configs(self, k: int) -> dict[str, ConfigStats]:
        now = self._now if self._now is not None else 0.0
        pool = [s for s in self.stats() if s.key != self._current or self.cfg.max_configs == 1]
        pool.sort(key=lambda s: (config_value(s, now, self.cfg), s.last_ts, s.key))
        return {s.key: self._stats.pop(s.key) for s in pool[:k]}

    def _refresh(self, ts: float, removed: Mapping[str, ConfigStats]) -> list[Event]:
        cfg = self.cfg
        events: list[Event] = []
        best = self.best()
        best_e = effectiveness(best, cfg) if best is not None else -1.0
        if self._current is not None:
            key = self._current
            s = self._stats.get(key)
            gone = s is None
            if gone:
                s = removed[key]
            e = effectiveness(s, cfg)
            beaten = best is not None and best.key != key and best_e > e + cfg.switch_margin
            if gone or e < cfg.effectiveness_threshold or beaten:
                events.append(self._recommendation(s, e).event(RETIRED, ts))
                self._current = None
        if self._current is None and best is not None and best_e >= cfg.effectiveness_threshold:
            self._current = best.key
            events.append(self._recommendation(best, best_e).event(RECOMMENDED, ts))
        return events

    # -- exploration
    def suggest(
        self, options: Iterable[Mapping[str, Any]] = (), priors: Iterable[Prior] = (), salt: str = ""
    ) -> dict | None:
        """The config to run next: Thompson sampling (or UCB) over known configs, ``options`` and
        ``priors`` (from :func:`transfer_priors`); ``None`` when there is nothing to choose from."""
        cfg = self.cfg
        cands: dict[str, dict] = {k: s.config for k, s in self._stats.items()}
        for o in options:
            canon = canonical_config(o)
            cands.setdefault(_key_of_canonical(canon), canon)
        prior_ab: dict[str, list[float]] = {}
        for p in priors:
            cands.setdefault(p.config_key, p.config)
            acc = prior_ab.setdefault(p.config_key, [0.0, 0.0, 0.0, 0.0])  # a, b, latency*w, w
            acc[0] += p.alpha
            acc[1] += p.beta
            if p.latency_ms is not None:
                w = p.alpha + p.beta
                acc[2] += p.latency_ms * w
                acc[3] += w
        if not cands:
            return None
        seed = f"{self.space}\x1f{self.pattern_id}\x1f{self.model_id}\x1f{self._n}\x1f{salt}"
        best_key, best_score = None, -1.0
        for key in sorted(cands):
            pa, pb, lw, w = prior_ab.get(key, (0.0, 0.0, 0.0, 0.0))
            tot = pa + pb
            if tot > cfg.prior_max_weight:
                scale = cfg.prior_max_weight / tot
                pa, pb = pa * scale, pb * scale
            lat = lw / w if w > 0.0 else None
            draw = exploration_draw(seed, key) * cfg.exploration_scale if cfg.exploration == "thompson" else None
            score = score_for_exploration(self._stats.get(key), cfg, draw, (pa, pb), lat)
            if score > best_score:
                best_key, best_score = key, score
        return dict(cands[best_key])

    # -- persistence
    def to_state(self) -> dict:
        return {
            "v": _STATE_VERSION,
            "space": self.space,
            "pattern_id": self.pattern_id,
            "model_id": self.model_id,
            "n": self._n,
            "now": self._now,
            "current": self._current,
            "params": sorted(self._params),
            "configs": [s.to_state() for s in self.stats()],
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any], cfg: OptimizationConfig = DEFAULT_CONFIG) -> ModelPatternMemory:
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"unsupported optimization state version {d.get('v')!r}")
        m = cls(d["space"], d["pattern_id"], d["model_id"], cfg)
        m._n = int(d["n"])
        m._now = None if d["now"] is None else float(d["now"])
        m._params = set(d["params"])
        for sd in d["configs"]:
            s = ConfigStats.from_state(sd)
            m._stats[s.key] = s
        cur = d["current"]
        m._current = cur if cur in m._stats else None
        return m

    def __repr__(self) -> str:
        return (f"ModelPatternMemory({self.space!r}, {self.pattern_id!r}, {self.model_id!r}, "
                f"configs={len(self._stats)}, support={self.support}, current={self._current!r})")


# -- per-space limits ---------------------------------------------------------


def memory_value(mem: ModelPatternMemory, now: float, cfg: OptimizationConfig | None = None) -> float:
    """``(best effectiveness + recency + frequency) / 3`` of a whole memory (docstring, 6)."""
    cfg = cfg or mem.cfg
    best = mem.best(now)
    eff = effectiveness(best, cfg) if best is not None else 0.0
    last = mem.last_ts
    rec = 0.0 if last is None else _recency(last, now, cfg)
    return (eff + rec + _frequency(mem.support, cfg)) / 3.0


def eviction_candidates(
    memories: Iterable[ModelPatternMemory], k: int, now: float, cfg: OptimizationConfig | None = None
) -> list[ModelPatternMemory]:
    """The ``k`` lowest-value memories, lowest first (ties: older evidence, then pattern, model)."""
    if k <= 0:
        return []
    ranked = sorted(
        memories,
        key=lambda m: (memory_value(m, now, cfg), -math.inf if m.last_ts is None else m.last_ts,
                       m.pattern_id, m.model_id),
    )
    return ranked[:k]


def optimizations_to_evict(count: int, cfg: OptimizationConfig = DEFAULT_CONFIG) -> int:
    """How many memories a space holding ``count`` should shed now (docstring, 6)."""
    hard = max(0, count - cfg.max_optimizations)
    if count <= cfg.cleanup_optimizations:
        return hard
    target = math.floor(cfg.cleanup_optimizations * cfg.cleanup_target)
    return max(hard, min(count - target, cfg.max_evictions_per_call))


# -- knowledge transfer -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prior:
    """Pseudo-observations about one config, transferred from one source memory."""

    config: dict
    config_key: str
    alpha: float
    beta: float
    latency_ms: float | None
    source_model_id: str
    source_pattern_id: str


def usable(keys: Iterable[str], known_params: Iterable[str] | None, capabilities: Iterable[str] | None) -> bool:
    """Capability rule (docstring, 7): keys within ``known | capabilities``; anything when both
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
        sim = _clamp01(float(sim))
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
    """The config ``target_model`` should run on ``pattern_id``, own or transferred (docstring, 7).

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
    """Power priors from other memories for :meth:`ModelPatternMemory.suggest` (docstring, 7):
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
