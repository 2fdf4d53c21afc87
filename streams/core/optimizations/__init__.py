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
   (``tests/unit/core/optimizations/test_optimizations.py``, test_reannouncements_thin_out_as_support_grows). An
   event-time rate limit was not used: a re-announcement it holds back stays unannounced if the
   key's interactions stop within the interval, and on a compacted topic the last record is what
   a reader keeps. Everything here is event-driven and clock-free, so a replay emits the same
   records.

Determinism: no clock, no global randomness; configs are iterated in key order wherever the
order can matter; floats are summed in arrival order; ties are broken by keys. The same sequence
of calls gives the same events, suggestions and state, and ``from_state(to_state())`` at any point
continues bit-identically (floats survive JSON exactly: Python and orjson print the shortest
round-trip repr).

The files: config.py (:class:`OptimizationConfig`), identity.py (1), config_stats.py (2, 3, 6, 8, 9),
recommendation.py (4, 10), model_pattern_memory.py (4-6: :class:`ModelPatternMemory`, the learner)
and transfer.py (7).
"""
from streams.core.optimizations.config import DAY, DEFAULT_CONFIG, OptimizationConfig
from streams.core.optimizations.identity import canonical_config, config_key
from streams.core.optimizations.config_stats import (
    ConfigStats,
    Prior,
    config_value,
    effectiveness,
    exploration_draw,
    latency_factor,
    pattern_feedback,
    posterior,
    score_for_exploration,
)
from streams.core.optimizations.recommendation import (
    RECOMMENDED,
    RETIRED,
    Event,
    Recommendation,
    reannounce_due,
    transition,
)
from streams.core.optimizations.model_pattern_memory import (
    ModelPatternMemory,
    eviction_candidates,
    memory_value,
    optimizations_to_evict,
)
from streams.core.optimizations.transfer import recommend, transfer_priors, usable

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
