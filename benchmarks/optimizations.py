"""Optimization recommendations in a simulated world, beside greedy and epsilon-greedy baselines.

The world (seeded): P patterns, M models, C = 8 configs (dicts of three parameters). Every
(pattern, model) has a hidden best config and a true value per config, ``mu = P(success) *
E[quality | success] * S / (S + E[latency])`` (the quantity effectiveness estimates, S = 10 s).
Patterns come in related pairs (similarity 0.72..0.79) whose best configs agree with probability
``--related-share``; the models facing one pattern share its best config with probability
``--model-share`` and share its value profile up to noise, so transfer helps without being exact.

Outcomes are drawn from a tape per (pattern, model, config): the k-th time any policy runs a config
there it gets the same noisy outcome (common random numbers), and every policy sees the (pattern,
model) pairs in the same order. Policies:

- ``ours+transfer``: ``ModelPatternMemory.suggest`` (default: optimistic posterior score, UCB-style)
  with transfer priors from the other models and related patterns; published recommendation =
  ``recommend``.
- ``ours``: the same without transfer; published recommendation = the memory's own
  (``predict_one``).
- ``greedy``: run each config once, then the best plug-in estimate ``mean(y) * S / (S + mean
  latency)``; its recommendation is that argmax.
- ``eps-greedy``: the same, but a uniformly random config with probability 0.1.

Reported: (1) how often the published recommendation is the hidden best after N interactions of a
(pattern, model), (2) cumulative regret, (3) for a NEW model arriving after the others have learned,
how many interactions until its recommendation is the hidden best and stays so (with transfer,
without it, and the baselines), and (4) what the ``fms.optimizations`` topic carries: the
interactions ``ours+transfer`` ran (main run, then the newcomer) replayed through the worker's
``OptimizationStore`` (dict tables), records per interaction and microseconds per interaction with
re-announcement at the defaults and with it off (``reannounce_tolerance = 1``,
``reannounce_support_factor = 0``: a recommendation announced once per change), and how far the last
record of each key is from what the memory holds for it at the end.

    python benchmarks/optimizations.py [--seeds 8] [--patterns 16] [--models 4] [--horizon 150] [--new-horizon 150]
                                       [--topic-seeds 8]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from common import save  # noqa: E402  (sets sys.path)
from streams.core.optimizations import (
    ModelPatternMemory,
    OptimizationConfig,
    config_key,
    effectiveness,
    recommend,
    transfer_priors,
)
from streams.state.optimizations import OptimizationStore
from streams.state.patterns import Prefixed

CONFIGS = [
    {"temperature": t, "top_p": p, "batch": b} for t in (0.2, 0.7) for p in (0.8, 0.95) for b in (1, 8)
]
KEYS = [config_key(c) for c in CONFIGS]
INDEX = {k: i for i, k in enumerate(KEYS)}
C = len(CONFIGS)
SCALE_MS = 10_000.0
T0 = 1_700_000_000.0
STEP_S = 60.0
CHECKPOINTS = (3, 5, 10, 20, 50, 100, 150)


@dataclass
class World:
    mu: np.ndarray  # [P, M+1, C] true value
    best: np.ndarray  # [P, M+1] argmax mu
    related: list[list[tuple[int, float]]]
    succ: np.ndarray  # [P, M+1, C, H] tapes
    qual: np.ndarray
    lat: np.ndarray

    def outcome(self, p: int, m: int, c: int, k: int) -> dict:
        return {"success": bool(self.succ[p, m, c, k]), "quality": float(self.qual[p, m, c, k]),
                "latency_ms": float(self.lat[p, m, c, k])}


def make_world(seed: int, P: int, M: int, H: int, model_share: float, related_share: float) -> World:
    rng = np.random.default_rng(seed)
    MM = M + 1  # the last model arrives late (transfer test)
    related: list[list[tuple[int, float]]] = [[] for _ in range(P)]
    pattern_best = rng.integers(C, size=P)
    profile = rng.uniform(0.25, 0.65, size=(P, C))
    for a in range(0, P - 1, 2):
        b = a + 1
        sim = float(rng.uniform(0.72, 0.79))
        related[a].append((b, sim))
        related[b].append((a, sim))
        if rng.random() < related_share:
            pattern_best[b] = pattern_best[a]
            profile[b] = np.clip(profile[a] + rng.normal(0, 0.05, C), 0.2, 0.7)
    lat_base = rng.uniform(200.0, 1500.0, size=C)  # a config's latency is mostly the config's
    mu = np.empty((P, MM, C))
    best = np.empty((P, MM), dtype=np.int64)
    psucc = np.empty((P, MM, C))
    qmean = np.empty((P, MM, C))
    lmean = np.empty((P, MM, C))
    for p in range(P):
        for m in range(MM):
            b = int(pattern_best[p]) if rng.random() < model_share else int(rng.integers(C))
            lam_target = np.clip(profile[p] + rng.normal(0, 0.04, C), 0.15, 0.7)
            top = rng.uniform(0.70, 0.85)
            lam_target[b] = top
            lam_target = np.minimum(lam_target, np.where(np.arange(C) == b, top, top - 0.08))
            lm = lat_base * rng.uniform(0.8, 1.25, size=C)
            lam = SCALE_MS / (SCALE_MS + lm)
            q = rng.uniform(0.8, 1.0, size=C)
            ps = lam_target / (lam * q)
            over = ps > 0.98
            ps[over] = 0.98
            q[over] = lam_target[over] / (lam[over] * 0.98)
            psucc[p, m], qmean[p, m], lmean[p, m] = ps, q, lm
            mu[p, m] = ps * q * lam
            best[p, m] = int(np.argmax(mu[p, m]))
    shape = (P, MM, C, H)
    succ = rng.random(shape) < psucc[..., None]
    half = np.minimum(0.1, np.minimum(qmean, 1.0 - qmean))[..., None]
    qual = qmean[..., None] + rng.uniform(-1.0, 1.0, shape) * half  # unbiased, within [0, 1]
    sigma = 0.3
    lat = lmean[..., None] * np.exp(rng.normal(0.0, sigma, shape) - sigma * sigma / 2)  # mean lmean
    return World(mu, best, related, succ, np.clip(qual, 0.0, 1.0), lat)


# -- policies -----------------------------------------------------------------


class Ours:
    def __init__(self, name: str, P: int, MM: int, related, transfer: bool, cfg: OptimizationConfig):
        self.name, self.transfer, self.cfg, self.related = name, transfer, cfg, related
        self.mems = {(p, m): ModelPatternMemory("bench", f"p{p}", f"m{m}", cfg) for p in range(P) for m in range(MM)}
        self.by_pattern = {p: [self.mems[(p, m)] for m in range(MM)] for p in range(P)}
        self.active_models = set()

    def _cands(self, p: int):
        mems = list(self.by_pattern[p])
        for r, _ in self.related[p]:
            mems.extend(self.by_pattern[r])
        return [mm for mm in mems if int(mm.model_id[1:]) in self.active_models]

    def _rel(self, p: int):
        return [(f"p{r}", s) for r, s in self.related[p]]

    def act(self, p: int, m: int) -> int:
        self.active_models.add(m)
        mem = self.mems[(p, m)]
        priors = transfer_priors(f"m{m}", f"p{p}", self._cands(p), self._rel(p), self.cfg) if self.transfer else ()
        cfg = mem.suggest(options=CONFIGS, priors=priors)
        return INDEX[config_key(cfg)]

    def learn(self, p: int, m: int, c: int, outcome: dict, ts: float) -> None:
        self.mems[(p, m)].learn_one(CONFIGS[c], outcome, ts)
        if self.tape is not None:
            self.tape.append((p, m, c, outcome, ts))

    tape: list | None = None  # set to a list to record the interactions run (for the topic figures)

    def recommendation(self, p: int, m: int) -> int | None:
        self.active_models.add(m)
        if self.transfer:
            r = recommend(f"m{m}", f"p{p}", self._cands(p), self._rel(p), self.cfg)
        else:
            r = self.mems[(p, m)].predict_one()
        return None if r is None else INDEX[r.config_key]


class Greedy:
    def __init__(self, name: str, P: int, MM: int, eps: float, seed: int):
        self.name, self.eps = name, eps
        self.rng = np.random.default_rng([seed, 7])
        self.n = np.zeros((P, MM, C))
        self.y = np.zeros((P, MM, C))
        self.ls = np.zeros((P, MM, C))
        self.ln = np.zeros((P, MM, C))

    def _est(self, p: int, m: int) -> np.ndarray:
        n, ln = self.n[p, m], self.ln[p, m]
        with np.errstate(invalid="ignore", divide="ignore"):
            lat = np.where(ln > 0, self.ls[p, m] / np.maximum(ln, 1), 0.0)
            est = np.where(n > 0, self.y[p, m] / np.maximum(n, 1), -1.0) * (SCALE_MS / (SCALE_MS + lat))
        return np.where(n > 0, est, -1.0)

    def act(self, p: int, m: int) -> int:
        if self.eps > 0.0 and self.rng.random() < self.eps:
            return int(self.rng.integers(C))
        untried = np.flatnonzero(self.n[p, m] == 0)
        if untried.size:
            return int(untried[0])
        return int(np.argmax(self._est(p, m)))

    def learn(self, p: int, m: int, c: int, o: dict, ts: float) -> None:
        self.n[p, m, c] += 1
        self.y[p, m, c] += o["quality"] if o["success"] else 0.0
        self.ls[p, m, c] += o["latency_ms"]
        self.ln[p, m, c] += 1

    def recommendation(self, p: int, m: int) -> int | None:
        if not self.n[p, m].any():
            return None
        return int(np.argmax(self._est(p, m)))


def policies(seed: int, P: int, MM: int, related, cfg: OptimizationConfig) -> list:
    return [
        Ours("ours+transfer", P, MM, related, True, cfg),
        Ours("ours", P, MM, related, False, cfg),
        Greedy("greedy", P, MM, 0.0, seed),
        Greedy("eps-greedy(0.1)", P, MM, 0.1, seed),
    ]


# -- the topic ------------------------------------------------------------------


def topic_run(tape: list, related, cfg: OptimizationConfig) -> dict:
    """The interactions of ``tape`` through the worker's optimization store: records per
    interaction, time per interaction, and the last record per key against the memory at the end."""
    table: dict = {}
    store = OptimizationStore(Prefixed(table, "o/"), Prefixed(table, "oi/"), cfg)
    rel = {p: [(f"p{r}", s) for r, s in related[p]] for p in range(len(related))}
    related_of = lambda pid: rel.get(int(pid[1:]))  # noqa: E731
    last: dict = {}
    records = 0
    t0 = time.perf_counter()
    for p, m, c, outcome, ts in tape:
        events = store.learn("bench", f"p{p}", f"m{m}", CONFIGS[c], outcome, ts, rel[p], related_of)
        records += len(events)
        for e in events:
            last[(e.pattern_id, e.model_id)] = e
    seconds = time.perf_counter() - t0
    sims = {(f"p{p}", f"p{r}"): s for p in range(len(related)) for r, s in related[p]}
    gaps = []
    for (pid, mid), e in last.items():
        if e.event != "recommended":
            continue
        pub = store.load("bench", pid, mid)[1]
        source, _ = store.load("bench", pub.source_pattern_id, pub.source_model_id)
        live = effectiveness(source.get(pub.config_key), cfg)
        if (pub.source_pattern_id, pub.source_model_id) != (pid, mid):
            live *= cfg.transfer_discount * (1.0 if pub.source_pattern_id == pid else sims[(pid, pub.source_pattern_id)])
        gaps.append(abs(live - e.effectiveness))
    return {"interactions": len(tape), "records": records, "seconds": seconds, "gaps": gaps}


# -- runs ---------------------------------------------------------------------


def main_run(world: World, agent, order: np.ndarray, checkpoints) -> dict:
    P, MM = world.best.shape
    pulls = np.zeros((P, MM, C), dtype=np.int64)
    count = np.zeros((P, MM), dtype=np.int64)
    pair_regret = np.zeros((P, MM))
    hits = {n: [] for n in checkpoints}
    regret_at = {n: [] for n in checkpoints}
    total = 0.0
    for step, (p, m) in enumerate(order):
        p, m = int(p), int(m)
        c = agent.act(p, m)
        k = pulls[p, m, c]
        pulls[p, m, c] += 1
        agent.learn(p, m, c, world.outcome(p, m, c, k), T0 + step * STEP_S)
        r = world.mu[p, m, world.best[p, m]] - world.mu[p, m, c]
        total += r
        pair_regret[p, m] += r
        count[p, m] += 1
        n = int(count[p, m])
        if n in hits:
            hits[n].append(agent.recommendation(p, m) == int(world.best[p, m]))
            regret_at[n].append(pair_regret[p, m])
    return {"regret": total, "steps": len(order), "hits": hits, "regret_at": regret_at}


def newcomer_run(world: World, agent, m_new: int, horizon: int, t_start: float) -> dict:
    """A new model meets every pattern, one after another; interactions until its recommendation
    is the hidden best for good (censored at horizon + 1)."""
    P = world.best.shape[0]
    needed, regret = [], 0.0
    for p in range(P):
        pulls = np.zeros(C, dtype=np.int64)
        best = int(world.best[p, m_new])
        ok = [agent.recommendation(p, m_new) == best]
        for t in range(horizon):
            c = agent.act(p, m_new)
            k = pulls[c]
            pulls[c] += 1
            agent.learn(p, m_new, c, world.outcome(p, m_new, c, k), t_start + (p * horizon + t) * STEP_S)
            regret += world.mu[p, m_new, best] - world.mu[p, m_new, c]
            ok.append(agent.recommendation(p, m_new) == best)
        t_ok = horizon + 1
        for t in range(horizon, -1, -1):
            if not ok[t]:
                break
            t_ok = t
        needed.append(t_ok)
    return {"needed": needed, "regret": regret}


def run(args) -> dict:
    cfg = OptimizationConfig()
    H = args.horizon
    checkpoints = tuple(n for n in CHECKPOINTS if n <= H)
    agg: dict[str, dict] = {}
    topic_cfgs = {"reannounce": cfg,
                  "announce_once": OptimizationConfig(reannounce_tolerance=1.0, reannounce_support_factor=0.0)}
    topic: dict[str, dict] = {}
    t_start = time.perf_counter()
    for seed in range(args.seeds):
        world = make_world(seed, args.patterns, args.models, max(H, args.new_horizon) + 1,
                           args.model_share, args.related_share)
        rng = np.random.default_rng([seed, 1])
        order = np.array([(p, m) for p in range(args.patterns) for m in range(args.models) for _ in range(H)])
        order = order[rng.permutation(len(order))]
        for agent in policies(seed, args.patterns, args.models + 1, world.related, cfg):
            if agent.name == "ours+transfer" and seed < args.topic_seeds:
                agent.tape = []
            t0 = time.perf_counter()
            res = main_run(world, agent, order, checkpoints)
            main_s = time.perf_counter() - t0
            # the newcomer: with transfer for ours+transfer, its own evidence only for the others
            new = newcomer_run(world, agent, args.models, args.new_horizon, T0 + len(order) * STEP_S)
            a = agg.setdefault(agent.name, {"regret": [], "steps": 0, "hits": {n: [] for n in checkpoints},
                                            "regret_at": {n: [] for n in checkpoints}, "needed": [],
                                            "new_regret": [], "seconds": 0.0, "step_us": []})
            a["regret"].append(res["regret"])
            a["steps"] += res["steps"]
            for n in checkpoints:
                a["hits"][n].extend(res["hits"][n])
                a["regret_at"][n].extend(res["regret_at"][n])
            a["needed"].extend(new["needed"])
            a["new_regret"].append(new["regret"])
            a["seconds"] += main_s
            a["step_us"].append(main_s / res["steps"] * 1e6)
            if getattr(agent, "tape", None):
                for name, topic_cfg in topic_cfgs.items():
                    r = topic_run(agent.tape, world.related, topic_cfg)
                    t = topic.setdefault(name, {"interactions": 0, "records": 0, "seconds": 0.0, "gaps": []})
                    for k in ("interactions", "records", "seconds", "gaps"):
                        t[k] += r[k]
    wall = time.perf_counter() - t_start

    out = {}
    for name, a in agg.items():
        needed = np.array(a["needed"], dtype=float)
        out[name] = {
            "best_rate_after_n": {str(n): round(float(np.mean(a["hits"][n])), 4) for n in checkpoints},
            "pair_regret_after_n": {str(n): round(float(np.mean(a["regret_at"][n])), 4) for n in checkpoints},
            "cumulative_regret": round(float(np.sum(a["regret"])), 3),
            "regret_per_interaction": round(float(np.sum(a["regret"]) / a["steps"]), 5),
            "newcomer_interactions_mean": round(float(needed.mean()), 2),
            "newcomer_interactions_median": float(np.median(needed)),
            "newcomer_reached_rate": round(float(np.mean(needed <= args.new_horizon)), 4),
            "newcomer_regret": round(float(np.sum(a["new_regret"])), 3),
            "us_per_interaction": round(float(np.mean(a["step_us"])), 1),
        }
    ours, base = out["ours+transfer"], out["ours"]
    greedy, eps = out["greedy"]["cumulative_regret"], out["eps-greedy(0.1)"]["cumulative_regret"]
    goals = {
        "regret_below_greedy": ours["cumulative_regret"] < greedy,
        "regret_below_eps_greedy": ours["cumulative_regret"] < eps,
        "regret_below_greedy_without_transfer": base["cumulative_regret"] < greedy,
        "regret_below_eps_greedy_without_transfer": base["cumulative_regret"] < eps,
        "newcomer_ratio_transfer_vs_none": round(
            ours["newcomer_interactions_mean"] / base["newcomer_interactions_mean"], 3),
        "newcomer_median_ratio_transfer_vs_none": round(
            ours["newcomer_interactions_median"] / base["newcomer_interactions_median"], 3),
    }
    goals["newcomer_under_half"] = goals["newcomer_ratio_transfer_vs_none"] < 0.5
    topic_out = {}
    for name, t in topic.items():
        gaps = np.array(t["gaps"]) if t["gaps"] else np.zeros(1)
        topic_out[name] = {
            "interactions": t["interactions"],
            "records": t["records"],
            "records_per_interaction": round(t["records"] / max(1, t["interactions"]), 4),
            "us_per_interaction": round(t["seconds"] / max(1, t["interactions"]) * 1e6, 1),
            "last_record_gap_max": round(float(gaps.max()), 4),
            "last_record_gap_mean": round(float(gaps.mean()), 4),
            "last_records_beyond_tolerance": int(np.sum(gaps > cfg.reannounce_tolerance)),
            "keys": len(t["gaps"]),
        }
    if topic_out:
        goals["topic_last_records_within_tolerance"] = topic_out["reannounce"]["last_records_beyond_tolerance"] == 0
    return {"params": vars(args), "config": cfg.__dict__, "results": out, "topic": topic_out, "goals": goals,
            "wall_s": round(wall, 1)}


def print_table(doc: dict) -> None:
    res = doc["results"]
    ns = list(next(iter(res.values()))["best_rate_after_n"])
    print("\n(1) published recommendation == hidden best, after N interactions per (pattern, model)")
    print(f"{'policy':18}" + "".join(f"{'N=' + n:>8}" for n in ns))
    for name, r in res.items():
        print(f"{name:18}" + "".join(f"{r['best_rate_after_n'][n]:8.3f}" for n in ns))
    print("\n(2) regret: cumulative over all interactions, and mean per (pattern, model) after N")
    print(f"{'policy':18}{'total':>10}{'per step':>10}" + "".join(f"{'N=' + n:>8}" for n in ns))
    for name, r in res.items():
        print(f"{name:18}{r['cumulative_regret']:10.1f}{r['regret_per_interaction']:10.4f}"
              + "".join(f"{r['pair_regret_after_n'][n]:8.2f}" for n in ns))
    print("\n(3) new model: interactions until its recommendation is the hidden best for good")
    print(f"{'policy':18}{'mean':>8}{'median':>8}{'reached':>9}{'regret':>9}{'us/step':>9}")
    for name, r in res.items():
        print(f"{name:18}{r['newcomer_interactions_mean']:8.1f}{r['newcomer_interactions_median']:8.1f}"
              f"{r['newcomer_reached_rate']:9.3f}{r['newcomer_regret']:9.1f}{r['us_per_interaction']:9.1f}")
    if doc.get("topic"):
        print("\n(4) fms.optimizations for the interactions ours+transfer ran, through the worker's store")
        print(f"{'':18}{'records':>9}{'per inter.':>12}{'us/inter.':>11}{'last-record gap max':>21}"
              f"{'mean':>8}{'> tol':>7}{'keys':>7}")
        for name, t in doc["topic"].items():
            print(f"{name:18}{t['records']:9d}{t['records_per_interaction']:12.4f}{t['us_per_interaction']:11.1f}"
                  f"{t['last_record_gap_max']:21.4f}{t['last_record_gap_mean']:8.4f}"
                  f"{t['last_records_beyond_tolerance']:7d}{t['keys']:7d}")
    print("\ngoals:", doc["goals"], f"wall {doc['wall_s']}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--patterns", type=int, default=16)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--horizon", type=int, default=150, help="interactions per (pattern, model)")
    ap.add_argument("--new-horizon", type=int, default=150, help="interactions of the new model per pattern")
    ap.add_argument("--model-share", type=float, default=0.85)
    ap.add_argument("--related-share", type=float, default=0.6)
    ap.add_argument("--topic-seeds", type=int, default=8,
                    help="seeds whose ours+transfer interactions also go through the store for (4); 0: none")
    args = ap.parse_args()
    doc = run(args)
    print_table(doc)
    save("optimizations", doc)


if __name__ == "__main__":
    main()
