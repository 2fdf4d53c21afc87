"""Clustering quality of the pattern memory on labelled streams, beside River's online clusterers
and offline clusterers.

Six generated vector streams (fixed seeds) stand in for pooled audio embeddings: well-separated
groups, overlapping groups, imbalanced groups, slow drift, groups that recur after days of absence,
and wav2vec2-like vectors whose large shared component makes every raw cosine > 0.9. A seventh is
real extraction output: generated sounds of eight kinds embedded by the extraction stage with a
random-weight wav2vec2-base (needs the `audio` extra; `--audio-records`, as it costs ~90 ms a
clip). Twelve more are real recorded sounds from Debian packages, as log-mel statistics, MFCC
statistics and a trained speaker encoder's embeddings (recorded_sounds.py, which installs the
packages as root), and eighteen more come from three further sets of packages, each drawn with two
seeds (real_sounds.py: icons, mixed and games, 50 sounds x 10 occurrences; `--no-recorded` leaves
all of these out). `--rehearsal` runs only a fourth set that nothing was tuned on (kids, four draws),
a rehearsal of the held-out check, saved as quality_rehearsal.json. Each record is learned once, in order, and its
predicted cluster is the one it is assigned right after learning (prequential), which is what the
memory's recognition returns from `learn_one`; `ari` resolves ids absorbed by later merges to their
survivor, `ari_raw` scores the ids exactly as the recognitions named them. A recorded or real
stream's order is one random draw of its occurrences, and the memory's ARI moves with the order
alone, so the memory, pinned and the sweep also run over `--orders` fixed orders of those streams
(`over_orders`: means, and the goals judged on them).

Rows: the memory as it ships (each space calibrates its own threshold), the memory pinned at 0.6
(the fixed default of earlier versions), the best fixed threshold of a sweep (an oracle: it picks
by ARI against the labels), River's DBSTREAM and KMeans (`learn_one`, then `predict_one`), and two
offline clusterers that see the whole stream at once: HDBSCAN (not told the number of groups) and
Ward's agglomerative clustering told the true number. River is pure Python over dicts; if that is
too slow, the memory and River can learn the same evenly spaced subsample (`--river-records`), and
the memory is then also scored on the whole stream.

    python benchmarks/quality.py [--records 4000] [--audio-records 1600] [--dim 768] [--river-records N] [--streams a,b]
                                 [--orders 5] [--rehearsal]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common import save  # noqa: E402  (sets sys.path)
from streams.core.patterns import PatternConfig, SpaceMemory
from streams.core.quality import adjusted_rand_index, normalized_mutual_information, purity

# Real embeddings vary mostly along a few shared directions (speaker, channel, loudness), not
# isotropically: half of every group's noise variance lives in one low-rank "nuisance" subspace.
NUISANCE_RANK = 16
NUISANCE_SHARE = 0.5
T0 = 1_700_000_000.0

# The fixed threshold every space used before spaces calibrated their own: today's baseline.
PINNED = 0.6


@dataclass
class Stream:
    name: str
    description: str
    vectors: np.ndarray  # (n, dim) float32, as a producer would publish them (not normalized)
    labels: np.ndarray  # (n,) true group
    ts: np.ndarray  # (n,) event time, seconds


def _frame(rng: np.random.Generator, dim: int, k: int) -> np.ndarray:
    """k orthonormal rows: centres, drift targets and the nuisance subspace never share a direction."""
    q, _ = np.linalg.qr(rng.normal(size=(dim, k)))
    return q.T


def _spread(kappa: np.ndarray) -> np.ndarray:
    """Noise norm that puts a record at cosine ``kappa`` to its (unit) centre: 1/sqrt(1 + s^2)."""
    return np.sqrt(1.0 / np.square(kappa) - 1.0)


def _noise(rng: np.random.Generator, sigma: np.ndarray, dim: int, nuisance: np.ndarray) -> np.ndarray:
    n = len(sigma)
    iso = rng.normal(size=(n, dim)) * (sigma * math.sqrt((1 - NUISANCE_SHARE) / dim))[:, None]
    low = (rng.normal(size=(n, NUISANCE_RANK)) @ nuisance) * (sigma * math.sqrt(NUISANCE_SHARE / NUISANCE_RANK))[:, None]
    return iso + low


def _balanced_order(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    return rng.choice(len(weights), size=n, p=weights / weights.sum())


def _ts(n: int, step_s: float) -> np.ndarray:
    return T0 + step_s * np.arange(n, dtype=np.float64)


def separated(n: int, dim: int, seed: int = 11) -> Stream:
    rng = np.random.default_rng(seed)
    k = 12
    f = _frame(rng, dim, k + NUISANCE_RANK)
    centres, nuisance = f[:k], f[k:]
    labels = _balanced_order(rng, n, np.ones(k))
    kappa = rng.uniform(0.88, 0.95, size=k)
    x = centres[labels] + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    return Stream("separated", "12 equal groups, orthogonal centres, cos to centre 0.88-0.95",
                  x.astype(np.float32), labels, _ts(n, 1.0))


def overlapping(n: int, dim: int, seed: int = 12) -> Stream:
    """Families of three sibling groups (say, similar speakers) whose centres are closer together
    than the members of one group are to each other, and whose differences lie in the nuisance
    subspace, where the noise is largest."""
    rng = np.random.default_rng(seed)
    families, per = 4, 3
    k = families * per
    f = _frame(rng, dim, families + NUISANCE_RANK)
    fam, nuisance = f[:families], f[families:]
    own = rng.normal(size=(k, NUISANCE_RANK)) @ nuisance
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    sibling_cos = 0.6  # centre-to-centre within a family (centre = a*family + b*own, a^2 = 0.6)
    centres = math.sqrt(sibling_cos) * fam[np.arange(k) // per] + math.sqrt(1 - sibling_cos) * own
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = _balanced_order(rng, n, np.ones(k))
    kappa = rng.uniform(0.75, 0.85, size=k)
    x = centres[labels] + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    return Stream("overlapping", "4 families x 3 sibling groups (sibling centres cos 0.6), cos to centre 0.75-0.85",
                  x.astype(np.float32), labels, _ts(n, 1.0))


def imbalanced(n: int, dim: int, seed: int = 13) -> Stream:
    rng = np.random.default_rng(seed)
    weights = np.array([0.60, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01, 0.01])
    k = len(weights)
    f = _frame(rng, dim, k + NUISANCE_RANK)
    centres, nuisance = f[:k], f[k:]
    labels = _balanced_order(rng, n, weights)
    kappa = rng.uniform(0.85, 0.95, size=k)
    x = centres[labels] + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    return Stream("imbalanced", "10 groups: one 60%, the smallest two 1% each, cos to centre 0.85-0.95",
                  x.astype(np.float32), labels, _ts(n, 1.0))


def drift(n: int, dim: int, seed: int = 14, degrees: float = 70.0) -> Stream:
    """Every centre turns steadily towards a fresh direction; by the end it is ``degrees`` away."""
    rng = np.random.default_rng(seed)
    k = 8
    f = _frame(rng, dim, 2 * k + NUISANCE_RANK)
    start, target, nuisance = f[:k], f[k:2 * k], f[2 * k:]
    labels = _balanced_order(rng, n, np.ones(k))
    theta = np.radians(degrees) * np.arange(n) / max(1, n - 1)
    centres = np.cos(theta)[:, None] * start[labels] + np.sin(theta)[:, None] * target[labels]
    kappa = rng.uniform(0.88, 0.95, size=k)
    x = centres + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    return Stream("drift", f"8 groups whose centres each rotate {degrees:.0f} degrees over the stream",
                  x.astype(np.float32), labels, _ts(n, 1.0))


def recurring(n: int, dim: int, seed: int = 15) -> Stream:
    """Groups 0-2 vanish for the middle half of the stream (~2.8 days of event time at one record
    every 2 minutes) and come back with a small session shift, as a returning speaker would."""
    rng = np.random.default_rng(seed)
    k, away = 8, 3
    f = _frame(rng, dim, k + NUISANCE_RANK)
    centres, nuisance = f[:k], f[k:]
    labels = _balanced_order(rng, n, np.ones(k))
    lo, hi = n // 4, 3 * n // 4
    gap = np.arange(lo, hi)
    absent = gap[labels[gap] < away]
    labels[absent] = rng.integers(away, k, size=len(absent))  # others fill the gap
    shifted = centres + 0.25 * rng.normal(size=centres.shape) / math.sqrt(dim)
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)  # cos ~0.97 to the first session
    per_record = np.where((np.arange(n) >= hi)[:, None], shifted[labels], centres[labels])
    kappa = rng.uniform(0.88, 0.95, size=k)
    x = per_record + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    return Stream("recurring", "8 groups; 3 absent for the middle half (~2.8 days of event time), then back",
                  x.astype(np.float32), labels, _ts(n, 120.0))


def wav2vec2_like(n: int, dim: int, seed: int = 16) -> Stream:
    """A shared component 4x the group offsets, with a few outlier dimensions carrying most of it
    (as transformer features do), a shared non-zero offset mean, and +-10% record norms: raw
    cosines between different groups are ~0.93, yet centred the groups separate."""
    rng = np.random.default_rng(seed)
    k = 10
    f = _frame(rng, dim, k + NUISANCE_RANK + 1)
    offsets, nuisance, shared = f[:k], f[k:k + NUISANCE_RANK], f[-1]
    common = 0.4 * rng.normal(size=dim) / math.sqrt(dim)
    outliers = rng.choice(dim, size=3, replace=False)
    common[outliers] += np.array([3.0, -2.0, 1.5])
    common *= 4.0 / np.linalg.norm(common)
    labels = _balanced_order(rng, n, np.ones(k))
    kappa = rng.uniform(0.85, 0.93, size=k)
    latent = offsets[labels] + _noise(rng, _spread(kappa)[labels], dim, nuisance)
    scale = rng.normal(1.0, 0.1, size=n)[:, None]
    x = scale * (common + 0.7 * shared + latent)
    return Stream("wav2vec2_like", "10 groups under a shared component |4| (+ outlier dims, offset mean |0.7|, +-10% norms)",
                  x.astype(np.float32), labels, _ts(n, 1.0))


def generated_audio(n: int, dim: int, seed: int = 17) -> Stream:
    """Generated sounds of eight kinds (benchmarks/sounds.py), one 1-s clip per record, embedded by
    the extraction stage: `load_extractor` (1-s windows, mean pooling over the last layer) of a
    wav2vec2-base-size model with random weights (seed 0; no trained weights can be downloaded
    here). `dim` is the model's (768). Needs the `audio` extra."""
    import tempfile
    from pathlib import Path

    from extraction import base_size_model
    from sounds import KINDS, sound
    from streams.core.audio import MODEL_RATE, prepare
    from streams.extraction.model import load_extractor
    from streams.extraction.settings import ExtractionSettings

    rng = np.random.default_rng(seed)
    labels = _balanced_order(rng, n, np.ones(len(KINDS)))
    clips = [sound(int(k), rng, MODEL_RATE, MODEL_RATE) for k in labels]
    with tempfile.TemporaryDirectory(prefix="fms-quality-model-") as tmp:
        ex = load_extractor(ExtractionSettings(model=str(base_size_model(Path(tmp))), offline=True,
                                               window_s=1.0, hop_s=1.0))
    windows = np.concatenate([prepare(c[:, None], MODEL_RATE, ex.plan, normalize=ex.normalize)[0] for c in clips])
    return Stream("generated_audio", f"{len(KINDS)} kinds of generated sound, 1-s clips, pooled by a random-weight "
                  "wav2vec2-base", ex.embed(windows), labels, _ts(n, 1.0))


def recorded(name: str) -> Callable[[int, int], Stream]:
    """A recorded-sound stream (recorded_sounds.py); its size and dimension are the stream's own."""
    def make(n: int, dim: int) -> Stream:
        from recorded_sounds import by_name

        x, y, desc = by_name(name)
        return Stream(name, desc, x, y, _ts(len(y), 1.0))
    return make


STREAMS: dict[str, Callable[[int, int], Stream]] = {
    "separated": separated,
    "overlapping": overlapping,
    "imbalanced": imbalanced,
    "drift": drift,
    "recurring": recurring,
    "wav2vec2_like": wav2vec2_like,
    "generated_audio": generated_audio,
}
RECORDED = ("recorded_icons_logmel", "recorded_icons_mfcc", "recorded_icons_resemblyzer",
            "recorded_oxygen_logmel", "recorded_oxygen_mfcc", "recorded_oxygen_resemblyzer",
            "recorded_speech_logmel", "recorded_speech_mfcc", "recorded_speech_resemblyzer",
            "recorded_icons_logmel_std", "recorded_oxygen_logmel_std", "recorded_speech_logmel_std")
STREAMS.update({name: recorded(name) for name in RECORDED})


def real(name: str, seed: int, own: str) -> Callable[[int, int], Stream]:
    """A stream of real_sounds.py (up to 50 sounds x 10 occurrences) named ``own``; another seed draws
    other sounds' occurrences (and for the games set other sounds), which shows how much a result owes
    to one draw."""
    def make(n: int, dim: int) -> Stream:
        from real_sounds import by_name

        x, y, desc = by_name(name, seed)
        return Stream(own, desc, x, y, _ts(len(y), 1.0))
    return make


REAL = tuple(f"real_{s}_{f}" for s in ("icons", "mixed", "games") for f in ("logmel", "mfcc", "resemblyzer"))
REAL_SEEDS = (7, 8)
for _seed in REAL_SEEDS:
    STREAMS.update({own: real(n, _seed, own)
                    for n in REAL for own in [n if _seed == REAL_SEEDS[0] else f"{n}_seed{_seed}"]})
# A rehearsal of the held-out check (real_sounds.py's "kids" set, added after the calibration was
# designed, no setting chosen on it), in four draws, with log-mel standardized per dimension as the
# held-out check also does. Not in the default run: `--rehearsal` runs these alone and saves them
# apart (quality_rehearsal.json), so that quality.json's figures stay comparable between runs.
REHEARSAL = {f"real_kids_{f}_seed{seed}": (f"real_kids_{f}", seed)
             for seed in (7, 8, 9, 10) for f in ("logmel", "mfcc", "resemblyzer", "logmel_std")}
STREAMS.update({own: real(name, seed, own) for own, (name, seed) in REHEARSAL.items()})
# Embedding costs ~90 ms per clip at wav2vec2-base size on 2 cores: this stream is shorter.
RECORDS_OF = {"generated_audio": "audio_records"}


# -- geometry -----------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def geometry(s: Stream, segments: int = 4) -> dict:
    """What the generator produced, measured the way the memory sees it (L2-normalized, centred by
    the stream mean). Group means are taken per quarter of the stream so that drift and recurrence
    do not blur them; "oracle" assigns every record to the nearest such mean of its quarter, a
    ceiling no online method that does not know the labels should be expected to reach."""
    u = _unit(s.vectors)
    mu = u.mean(axis=0)
    uc = u - mu
    n = len(u)
    within, oracle = [], np.empty(n, dtype=np.int64)
    pair_within: dict[int, list[np.ndarray]] = {}
    between_raw, between_centred = [], []
    rng = np.random.default_rng(0)
    for q in range(segments):
        rows = np.arange(q * n // segments, (q + 1) * n // segments)
        groups = np.unique(s.labels[rows])
        means = np.stack([u[rows[s.labels[rows] == g]].mean(axis=0) for g in groups])
        mc = _unit(means - mu)
        sims = _unit(uc[rows]) @ mc.T
        oracle[rows] = groups[np.argmax(sims, axis=1)]
        own = np.searchsorted(groups, s.labels[rows])
        within.append(sims[np.arange(len(rows)), own])
        for g in groups:  # pairwise within a group: what a one-record centroid first sees
            m = rows[s.labels[rows] == g][:60]
            c = _unit(uc[m]) @ _unit(uc[m]).T
            pair_within.setdefault(int(g), []).append(c[np.triu_indices(len(m), 1)])
        a, b = rng.integers(0, len(rows), size=(2, 4000))
        diff = s.labels[rows[a]] != s.labels[rows[b]]
        between_raw.append(np.sum(u[rows[a]] * u[rows[b]], axis=1)[diff])
        off = ~np.eye(len(groups), dtype=bool)
        between_centred.append((mc @ mc.T)[off])
    within = np.concatenate(within)
    pairs = {g: np.concatenate(v) for g, v in pair_within.items()}
    pair_means = {g: float(v.mean()) for g, v in pairs.items() if len(v)}
    worst = min(pair_means, key=pair_means.get)
    return {
        "centred_cos_to_group_mean": {"mean": round(float(within.mean()), 3),
                                      "p10": round(float(np.percentile(within, 10)), 3),
                                      "p90": round(float(np.percentile(within, 90)), 3)},
        "centred_cos_within_group_pairs_mean": round(float(np.mean(list(pair_means.values()))), 3),
        "centred_cos_within_group_pairs_worst_group": {"group": worst, "mean": round(pair_means[worst], 3),
                                                       "share": round(float(np.mean(s.labels == worst)), 3)},
        "centred_cos_between_group_means_max": round(float(np.concatenate(between_centred).max()), 3),
        "raw_cos_between_groups_mean": round(float(np.concatenate(between_raw).mean()), 3),
        "oracle_ari": round(adjusted_rand_index(s.labels.tolist(), oracle.tolist()), 4),
    }


# -- the methods ----------------------------------------------------------------


def score(truth: np.ndarray, predicted: list, seconds: float, extra: dict | None = None) -> dict:
    t = truth.tolist()
    return {
        "ari": round(adjusted_rand_index(t, predicted), 4),
        "nmi": round(normalized_mutual_information(t, predicted), 4),
        "purity": round(purity(t, predicted), 4),
        "clusters": len(set(predicted)),
        "groups": len(set(t)),
        "us_per_record": round(seconds / len(t) * 1e6, 1),
        **(extra or {}),
    }


def run_memory(s: Stream, rows: np.ndarray, cfg: PatternConfig) -> dict:
    mem = SpaceMemory("bench", cfg)
    x, ts = s.vectors[rows], s.ts[rows]
    ids = [f"e{i}" for i in rows.tolist()]
    seen: list[str] = []
    t0 = time.perf_counter()
    for i in range(len(rows)):
        seen.append(mem.learn_one(ids[i], x[i], ts[i]).pattern_id)
    seconds = time.perf_counter() - t0
    # A record recognized as a pattern that was later absorbed belongs to the survivor; an evicted
    # pattern (resolve -> None) stays a cluster of its own.
    final = [(mem.resolve(p) or p) for p in seen]
    return score(s.labels[rows], final, seconds, {
        "ari_raw": round(adjusted_rand_index(s.labels[rows].tolist(), seen), 4),
        "live_patterns": len(mem), "threshold": mem.threshold})


SWEEP = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.3 .. 0.95


def run_memory_sweep(s: Stream, rows: np.ndarray, base: PatternConfig) -> dict:
    """The best fixed threshold in hindsight (an oracle: it picks by ARI against the labels)."""
    runs = {t: run_memory(s, rows, dataclasses.replace(base, match_threshold=t)) for t in SWEEP}
    best = max(SWEEP, key=lambda t: (runs[t]["ari"], -t))
    return {**runs[best], "match_threshold": best,
            "sweep": {str(t): {"ari": r["ari"], "clusters": r["clusters"]} for t, r in runs.items()}}


def run_offline(s: Stream, rows: np.ndarray) -> dict[str, dict]:
    """Offline clusterers on the same L2-normalized vectors (scikit-learn, a benchmark-only dependency):
    HDBSCAN, which is not told the number of groups (its noise points count as clusters of one), and
    Ward's agglomerative clustering told the true number."""
    try:
        from sklearn.cluster import HDBSCAN, AgglomerativeClustering
    except ImportError:
        return {}
    x = _unit(s.vectors[rows])
    k = len(np.unique(s.labels[rows]))
    out = {}
    t0 = time.perf_counter()
    lab = HDBSCAN(min_cluster_size=3).fit_predict(x)
    lab = [int(v) if v >= 0 else f"noise-{i}" for i, v in enumerate(lab.tolist())]
    out["offline_hdbscan"] = score(s.labels[rows], lab, time.perf_counter() - t0,
                                   {"params": "HDBSCAN(min_cluster_size=3), noise points are clusters of one"})
    t0 = time.perf_counter()
    lab = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x).tolist()
    out["offline_ward_true_k"] = score(s.labels[rows], lab, time.perf_counter() - t0,
                                       {"params": f"AgglomerativeClustering(n_clusters={k} (true), linkage=ward)"})
    return out


def dbstream_radius(unit_rows: np.ndarray, sample: int = 300, factor: float = 1.6) -> float:
    """River's DBSTREAM radius from the data's own scale, without labels: ``factor`` times the
    median nearest-neighbour distance among the first ``sample`` records. That distance is a bit
    under the typical distance between two members of one group; a leader only collects its group
    if the radius covers that distance with room to spare, hence a factor above 1 (1.6 was the
    best single factor over all six streams; 1.0 leaves most records outside every leader)."""
    a = unit_rows[:sample]
    d2 = np.maximum(0.0, 2.0 - 2.0 * a @ a.T)
    np.fill_diagonal(d2, np.inf)
    return float(factor * np.median(np.sqrt(d2.min(axis=1))))


def run_river(s: Stream, rows: np.ndarray, make: Callable, extra: dict) -> dict:
    # River gets the same L2-normalized vectors the memory works on: raw norms (+-10% on the
    # wav2vec2-like stream) would otherwise swamp Euclidean distances.
    unit = _unit(s.vectors[rows])
    model = make()
    labels: list = []
    learn = predict = 0.0
    for row in unit:
        x = dict(enumerate(row.tolist()))  # conversion is River's input format, not its work: untimed
        t0 = time.perf_counter()
        model.learn_one(x)
        t1 = time.perf_counter()
        labels.append(model.predict_one(x))
        t2 = time.perf_counter()
        learn += t1 - t0
        predict += t2 - t1
    n = len(rows)
    return score(s.labels[rows], labels, learn + predict,
                 {"learn_us_per_record": round(learn / n * 1e6, 1), **extra})


def river_methods(s: Stream, rows: np.ndarray, radius_factor: float, cleanup: int) -> dict[str, tuple[Callable, dict]]:
    from river import cluster, preprocessing

    r = dbstream_radius(_unit(s.vectors[rows]), factor=radius_factor)
    k = len(np.unique(s.labels))
    return {
        # River's default cleanup_interval=2 drops a one-record micro-cluster two records later,
        # before the next record of its group can arrive when there are more than two groups, so
        # leaders rarely survive; a longer interval lets them.
        "river_dbstream": (
            lambda: cluster.DBSTREAM(clustering_threshold=r, cleanup_interval=cleanup),
            {"params": f"clustering_threshold={r:.3f} ({radius_factor} x median NN distance), "
                       f"cleanup_interval={cleanup}, other defaults"},
        ),
        # KMeans is told the true number of groups, an advantage the memory does not get. Centres
        # start at the origin of the online-standardized space (sigma=0), so each new group first
        # claims a fresh centre instead of all records collapsing onto one random one.
        "river_kmeans": (
            lambda: preprocessing.StandardScaler() | cluster.KMeans(n_clusters=k, sigma=0.0, seed=0),
            {"params": f"StandardScaler | KMeans(n_clusters={k} (true), sigma=0, halflife=0.5 (default))"},
        ),
    }


# -- report -----------------------------------------------------------------------


GOALS = ("river", "best_fixed", "pinned", "hdbscan", "faster", "best_fixed_over_orders", "pinned_over_orders")
TIE_ARI = 0.005  # ARI differences this small are within run-to-run variation of the streams' details
PINNED_ROW = f"memory_pinned_{PINNED}"


def _outcome(a: float, b: float) -> str:
    return "tie" if abs(a - b) <= TIE_ARI else ("win" if a > b else "loss")


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else round(a / b, 3)


def print_stream(name: str, desc: str, geo: dict, res: dict, best: str, n: int, n_river: int) -> None:
    print(f"\n== {name}: {desc}")
    print(f"   {n} records ({n_river} for the same-records comparison); raw cos between groups "
          f"{geo['raw_cos_between_groups_mean']}, centred cos to group mean {geo['centred_cos_to_group_mean']['mean']} "
          f"(pairs within a group {geo['centred_cos_within_group_pairs_mean']}, worst group "
          f"{geo['centred_cos_within_group_pairs_worst_group']['mean']}), oracle ARI {geo['oracle_ari']}")
    print(f"   {'method':<36}{'ARI':>8}{'NMI':>8}{'purity':>8}{'clusters':>10}{'groups':>8}{'us/rec':>10}")
    for m, r in res.items():
        mark = " <- best River" if m == best else ""
        print(f"   {m:<36}{r['ari']:>8.3f}{r['nmi']:>8.3f}{r['purity']:>8.3f}{r['clusters']:>10}{r['groups']:>8}"
              f"{r['us_per_record']:>10.0f}{mark}")
    mem, riv = res["memory"], res[best]
    print(f"   memory / {best}: ARI x{_ratio(mem['ari'], riv['ari'])}, NMI x{_ratio(mem['nmi'], riv['nmi'])}, "
          f"time x{_ratio(mem['us_per_record'], riv['us_per_record'])}")


def run_orders(s: Stream, rows: np.ndarray, default_cfg: PatternConfig, pinned_cfg: PatternConfig,
               orders: int, own: tuple[dict, dict, dict]) -> dict:
    """The memory, pinned and the best fixed threshold over several orders of the same records.

    A recorded stream's order is one random draw of its occurrences, and a leader-style memory's
    ARI moves by a few hundredths with the order alone, while the oracle is the best of a whole
    sweep of such draws: one order partly measures luck. Order 0 is the stream's own, whose memory,
    pinned and sweep results the caller has already (``own``); the others are fixed permutations
    (seeds 1..orders-1), so reruns see the same orders.
    """
    runs = []
    for k in range(orders):
        if k == 0:
            mem, pin, best = own
        else:
            o = rows[np.random.default_rng(k).permutation(len(rows))]
            mem, pin = run_memory(s, o, default_cfg), run_memory(s, o, pinned_cfg)
            best = run_memory_sweep(s, o, default_cfg)
        runs.append({"memory": mem["ari"], "pinned": pin["ari"], "best_fixed": best["ari"],
                     "threshold": mem["threshold"], "best_threshold": best["match_threshold"]})
    mean = {key: round(float(np.mean([r[key] for r in runs])), 4) for key in ("memory", "pinned", "best_fixed")}
    return {
        "orders": orders, "mean": mean,
        "memory_over_best_fixed": _ratio(mean["memory"], mean["best_fixed"]),
        "orders_within_0.9x_best_fixed": sum(r["memory"] >= 0.9 * r["best_fixed"] for r in runs),
        "orders_within_0.02_of_pinned": sum(r["memory"] >= r["pinned"] - 0.02 for r in runs),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000, help="records per stream")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--river-records", type=int, default=None,
                    help="evenly spaced subsample both methods learn for the comparison (default: all records)")
    ap.add_argument("--streams", default=",".join(n for n in STREAMS if n not in REHEARSAL),
                    help="comma-separated subset of: " + ", ".join(STREAMS))
    ap.add_argument("--rehearsal", action="store_true",
                    help="run only the rehearsal of the held-out check (real_kids_*), saved as quality_rehearsal.json")
    ap.add_argument("--radius-factor", type=float, default=1.6, help="DBSTREAM radius / median NN distance")
    ap.add_argument("--cleanup-interval", type=int, default=50, help="DBSTREAM cleanup_interval")
    ap.add_argument("--audio-records", type=int, default=1600, help="records of the generated_audio stream")
    ap.add_argument("--no-recorded", action="store_true", help="leave out the recorded-sound streams")
    ap.add_argument("--orders", type=int, default=5,
                    help="orders of each recorded or real stream the memory, pinned and the sweep are also "
                         "scored on (means under `orders`; 1 leaves them out)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.dim < 2 * 12 + NUISANCE_RANK:
        ap.error(f"--dim must be >= {2 * 12 + NUISANCE_RANK}")

    default_cfg = PatternConfig()
    pinned_cfg = dataclasses.replace(default_cfg, match_threshold=PINNED)
    names = list(REHEARSAL) if args.rehearsal else [
        n for n in args.streams.split(",") if not (args.no_recorded and (n in RECORDED or n.startswith("real_")))]
    started = time.perf_counter()
    out = []
    for name in names:
        s = STREAMS[name](getattr(args, RECORDS_OF.get(name, "records")), args.dim)
        n = len(s.labels)
        step = max(1, math.ceil(n / (args.river_records or n)))
        rows = np.arange(0, n, step)
        geo = geometry(s)
        res = {"memory": run_memory(s, rows, default_cfg), PINNED_ROW: run_memory(s, rows, pinned_cfg),
               "memory_best_fixed": run_memory_sweep(s, rows, default_cfg)}
        for m, (make, extra) in river_methods(s, rows, args.radius_factor, args.cleanup_interval).items():
            res[m] = run_river(s, rows, make, extra)
        res.update(run_offline(s, rows))
        # Only where the order is itself a random draw: the generated streams' order is their
        # structure (drift, recurrence).
        own = (res["memory"], res[PINNED_ROW], res["memory_best_fixed"])
        by_order = (run_orders(s, rows, default_cfg, pinned_cfg, args.orders, own)
                    if args.orders > 1 and (name in RECORDED or name.startswith("real_")) else None)
        if len(rows) < n:
            res["memory_full_stream"] = run_memory(s, np.arange(n), default_cfg)
        # "Best River" is picked by ARI against the labels: a selection River could not make
        # online, so it only makes the comparison harder for the memory.
        best = max((m for m in res if m.startswith("river_")), key=lambda m: res[m]["ari"])
        print_stream(name, s.description, geo, res, best, n, len(rows))
        mem, riv, oracle, pinned = res["memory"], res[best], res["memory_best_fixed"], res[PINNED_ROW]
        hdbscan = res.get("offline_hdbscan")
        goals = {
            "river": mem["ari"] >= riv["ari"] - TIE_ARI,
            "best_fixed": mem["ari"] >= 0.9 * oracle["ari"],
            "pinned": mem["ari"] >= pinned["ari"] - 0.02,
            "hdbscan": None if hdbscan is None else mem["ari"] >= hdbscan["ari"] - 0.02,
            "faster": mem["us_per_record"] < riv["us_per_record"],
        }
        if by_order is not None:
            mean = by_order["mean"]
            goals["best_fixed_over_orders"] = mean["memory"] >= 0.9 * mean["best_fixed"]
            goals["pinned_over_orders"] = mean["memory"] >= mean["pinned"] - 0.02
        print(f"   memory: {mem['ari']:.3f} (threshold {mem['threshold']}); best fixed {oracle['ari']:.3f} at "
              f"{oracle['match_threshold']} (x{_ratio(mem['ari'], oracle['ari'])}); pinned {PINNED}: {pinned['ari']:.3f}"
              + ("" if hdbscan is None else f"; HDBSCAN {hdbscan['ari']:.3f}") + f"; goals {goals}")
        if by_order is not None:
            print(f"   over {by_order['orders']} orders: memory {by_order['mean']['memory']:.3f}, best fixed "
                  f"{by_order['mean']['best_fixed']:.3f} (x{by_order['memory_over_best_fixed']}), pinned "
                  f"{by_order['mean']['pinned']:.3f}; within 0.9x in {by_order['orders_within_0.9x_best_fixed']}")
        out.append({
            "stream": name, "description": s.description, "records": n, "compared_records": len(rows),
            "dim": s.vectors.shape[1], "geometry": geo, "results": res, "best_river": best,
            "memory_over_best_river": {"ari": _ratio(mem["ari"], riv["ari"]), "nmi": _ratio(mem["nmi"], riv["nmi"]),
                                       "us_per_record": _ratio(mem["us_per_record"], riv["us_per_record"])},
            "memory_over_best_fixed": _ratio(mem["ari"], oracle["ari"]),
            "goals_met": goals,
            **({} if by_order is None else {"over_orders": by_order}),
            "ari_outcome": _outcome(mem["ari"], riv["ari"]),
        })
    elapsed = time.perf_counter() - started

    def scored(goal: str) -> list[dict]:  # the over-orders goals apply to recorded and real streams only
        return [o for o in out if o["goals_met"].get(goal) is not None]

    def streams_meeting(goal: str) -> list[str]:
        return [o["stream"] for o in scored(goal) if o["goals_met"][goal]]

    def by_outcome(key: str) -> str:
        return "; ".join(f"{k}: {', '.join(o['stream'] for o in out if o[key] == k)}"
                         for k in ("win", "tie", "loss") if any(o[key] == k for o in out))

    print(f"\nARI vs the best River per stream (tie = within {TIE_ARI}): {by_outcome('ari_outcome')}")
    for goal in GOALS:
        met = streams_meeting(goal)
        print(f"   {goal}: {len(met)}/{len(scored(goal))}; not: "
              f"{', '.join(o['stream'] for o in scored(goal) if o['stream'] not in met)}")
    print(f"{elapsed:.0f}s in all.")
    if args.no_save:
        return
    save("quality_rehearsal" if args.rehearsal else "quality", {
        "goals": {
            "river": "the memory as it ships matches (within 0.005) or beats the best River clusterer's ARI",
            "best_fixed": "its ARI is at least 0.9x that of the best fixed threshold of a sweep (an oracle)",
            "pinned": f"its ARI is no more than 0.02 below the memory pinned at {PINNED}, the earlier default",
            "hdbscan": "its ARI is no more than 0.02 below offline HDBSCAN's (which sees the whole stream at once)",
            "faster": "it learns a record (learn_one, which also recognizes it) faster than River's learn_one + predict_one",
            "best_fixed_over_orders": f"recorded and real streams: its mean ARI over {args.orders} orders is at least "
                                      "0.9x the mean of each order's best fixed threshold",
            "pinned_over_orders": f"recorded and real streams: its mean ARI over {args.orders} orders is no more "
                                  f"than 0.02 below the mean of the memory pinned at {PINNED}",
        },
        "goals_met": {goal: {"streams": streams_meeting(goal), "of": len(scored(goal)),
                             "all": len(streams_meeting(goal)) == len(scored(goal))} for goal in GOALS},
        "ari_outcomes_vs_river": {o["stream"]: o["ari_outcome"] for o in out},
        "protocol": ("prequential: each record is learned once, in stream order, and labelled by the cluster it is "
                     "assigned right after learning; `ari` resolves memory labels of absorbed patterns to the "
                     "survivor at the end, `ari_raw` does not. The memory and River learn the same evenly spaced "
                     "subsample; memory_full_stream learns every record. Vectors are L2-normalized before River "
                     "and the offline clusterers see them."),
        "config": {
            "records": args.records, "dim": args.dim, "river_records": args.river_records,
            "memory_default": dataclasses.asdict(default_cfg), "memory_pinned": PINNED, "sweep": SWEEP,
            "river_dbstream": f"clustering_threshold = {args.radius_factor} x median nearest-neighbour distance of the "
                              f"first 300 records (label-free, per data scale), cleanup_interval={args.cleanup_interval}; "
                              "fading_factor, intersection_factor, minimum_weight at River's defaults. The factor and "
                              "interval were chosen once, over all six vector streams",
            "river_kmeans": "StandardScaler | KMeans(n_clusters=true number of groups, sigma=0, halflife=0.5 default); "
                            "halflife 0.5 beat 0.1 and 0.02 on 5 of 6 streams",
            "offline": "scikit-learn: HDBSCAN(min_cluster_size=3), noise points clusters of one; "
                       "AgglomerativeClustering(n_clusters=true, linkage=ward)",
            "nuisance_rank": NUISANCE_RANK, "nuisance_share": NUISANCE_SHARE,
        },
        "elapsed_s": round(elapsed, 1),
        "streams": out,
    })

if __name__ == "__main__":
    main()
