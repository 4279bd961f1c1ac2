"""SLIT over a look-ahead horizon: replicas per (site, model) and routing per (interval, model)
planned together on the surrogate's tables; the first interval is committed and the horizon
re-planned at the next (receding horizon, ``horizon_policies.run_receding``).

The search is over how each site's GPU pool is split between the models: a genotype of one
weight per (site, model) in [0, 1] gives each model a replica limit per site (the pool's GPUs
shared in proportion to the weights, after the replicas that must stay up). A genotype is
decoded exactly, without simulation:

1. **Routing within the split**, per (interval, model): the preference's greedy (pairs in
   ascending scaled per-request cost, each site filled to the SLO capacity of the replicas its
   limit allows) on the model's share of each pool. In the first interval a site that must load
   replicas is filled only to its capacity after the loading loss (``1 - load_time / interval``),
   so the plan stays feasible when replicas cannot be loaded an interval ahead.
2. **Placement for that routing, exactly per (site, model)**: a dynamic programme over the
   horizon with the replica count as state (at most the limit). Its stage cost is the
   preference's scaled cost of serving the routed load on ``n`` replicas (surrogate power and
   TTFT), its transition cost the loading energy of the replicas loaded at that interval's
   signals, and a transition is allowed only if the replicas carry the load after the loading
   loss (so it pre-loads one interval ahead of a peak and keeps a replica through a short
   trough when reloading it costs more than idling). Minimum up-time is then enforced
   (``place_within_limits``).

A genetic algorithm (pymoo ``GA``, a fixed number of generations, seeded from ``seed``) searches
the genotypes, seeded with: the pools split equally and by the models' GPU demand, each site's
pool given whole to one model (cheapest sites to the model that gains most), and the previous
decision's replica limits (the warm start); a final pass tries, site by site, moving a replica's
GPUs from one model to another, and a last local search over the best plan's replica counts
moves a replica of a model to another site, trading the pool there between the models if it is
full (``_relocate``), and then a local search over the sites each model may use: a site
closed, two closed, a site's replicas moved whole to another (also with one more closed)
(``_resite``). The previous decision shifted by one interval is also
evaluated as it is (with its own placement and with the DP's), so the warm start never returns a
plan worse than the shifted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.problem import Problem
from pymoo.optimize import minimize
from pymoo.termination.max_gen import MaximumGenerationTermination

from slit.optimise.baselines import scaled_pair_costs
from slit.optimise.horizon import (
    HorizonEvaluation,
    HorizonProblem,
    evaluate_horizon,
    horizon_score,
    place_within_limits,
    shift_plan,
)
from slit.optimise.milp import exact_capacity_rps
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem
from slit.optimise.routing import normalise_rows

KWH_PER_WS = 1.0 / 3.6e6
INFEASIBLE = 1e9  # DP cost of a replica count that cannot carry the load
INFEASIBLE_PLAN = 1e6  # search value of a plan short of capacity (plus the shortfall)


@dataclass(frozen=True, slots=True)
class HorizonSearchSettings:
    """Search effort (work, not time: the same problem gives the same plan on any machine)."""

    population: int = 10
    generations: int = 3
    polish_rounds: int = 1  # passes of single-replica moves between models after the GA
    repolish: bool = True  # polish again from the best candidate's used replicas
    relocate: bool = True  # then trade/relocate replicas from the best plan's replica counts
    relocate_evaluations: int = 150  # at most this many new decodes in that local search
    resite: bool = True  # then re-choose each model's sites (close, swap) from the best plan
    resite_evaluations: int = 100  # at most this many new decodes in that search (~6.5 ms each)


@dataclass(frozen=True, slots=True)
class HorizonDecision:
    """SLIT's plan for a horizon; ``replicas[0]`` and ``routing[0]`` are committed."""

    replicas: np.ndarray  # [H, S, M]
    routing: np.ndarray  # [H, M, O, S]
    objectives: np.ndarray  # [4] planning model, over the horizon
    score: float  # preference's weighted sum, fixed normalisation (inf if infeasible)
    feasible: bool
    decision_s: float


def _capacities(p: IntervalProblem, s: int, worst_rtt_s: float) -> np.ndarray:
    """[N + 1] load ``n = 0..N`` replicas of site ``s`` carry within the SLO."""
    table = p.tables[s]
    k = int(p.target_index(np.array([worst_rtt_s]))[0])
    cap = np.zeros(table.installed + 1)
    cap[1:] = p.slo_capacity_rps[s, k, : table.installed]
    cap[-1] = exact_capacity_rps(p, s, table.installed, worst_rtt_s)
    return cap


@dataclass(frozen=True)
class _Slot:
    """One (interval, model) under one routing: per site the routed load, the capacity and the
    preference's scaled stage cost for ``n = 0..N`` replicas."""

    load: np.ndarray  # [S]
    cap: tuple[np.ndarray, ...]  # [S] -> [N + 1]
    cost: tuple[np.ndarray, ...]  # [S] -> [N + 1]
    keys: tuple[tuple[float, float], ...]  # [S] (load, worst round trip): what cap/cost depend on


def _slot(problem: HorizonProblem, k: int, m: int, x: np.ndarray, weights: np.ndarray,
          scales: np.ndarray, total_demand: float,
          site_cache: dict[tuple[int, int, int, float, float], tuple[np.ndarray, np.ndarray]]
          | None = None) -> _Slot:
    """``site_cache``: per (k, m, site, load, worst round trip) the site's capacity and stage
    cost without the round-trip term, which depend on the routing only through those two (a
    search revisits the same site loads under many routings)."""
    p = problem.steps[k][m]
    load = p.demand_rps @ x
    worst = p.worst_rtt_s(x[None])[0]
    rtt_sum = (p.demand_rps[:, None] * x * p.rtt_s).sum(axis=0)
    cache = {} if site_cache is None else site_cache
    caps, costs, keys = [], [], []
    for s in range(p.n_sites):
        keys.append((float(load[s]), float(worst[s])))
        key = (k, m, s, float(load[s]), float(worst[s]))
        if key not in cache:
            cache[key] = _site_terms(p, s, float(load[s]), float(worst[s]), weights, scales,
                                     total_demand)
        cap, cost = cache[key]
        caps.append(cap)
        costs.append(cost + weights[0] * float(rtt_sum[s]) / total_demand / scales[0])
    return _Slot(load, tuple(caps), tuple(costs), tuple(keys))


def _site_terms(p: IntervalProblem, s: int, load: float, worst_rtt_s: float,
                weights: np.ndarray, scales: np.ndarray, total_demand: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """[N + 1] capacity and scaled stage cost (serving energy and queueing TTFT) of ``n``
    replicas of site ``s`` carrying ``load``."""
    table = p.tables[s]
    per_kwh = (weights[1] * p.carbon_kg_per_kwh_it[s] / scales[1]
               + weights[2] * p.water_l_per_kwh_it[s] / scales[2]
               + weights[3] * p.cost_usd_per_kwh_it[s] / scales[3])
    n = np.arange(table.installed + 1)
    ttft_mean, _, power = table.lookup(np.full(len(n), load), n)
    power = power - (table.installed - n) * table.standby_w_per_replica
    cost = (per_kwh * power * p.interval_s * KWH_PER_WS
            + weights[0] * load * ttft_mean / total_demand / scales[0])
    return _capacities(p, s, worst_rtt_s), cost


@dataclass
class _StageCosts:
    """The slots of one model over the horizon, viewed per (interval, site)."""

    slots: list[_Slot]

    @property
    def load(self) -> np.ndarray:
        return np.stack([slot.load for slot in self.slots])

    @property
    def cap(self) -> list[tuple[np.ndarray, ...]]:
        return [slot.cap for slot in self.slots]

    @property
    def cost(self) -> list[tuple[np.ndarray, ...]]:
        return [slot.cost for slot in self.slots]


def _stage_costs(problem: HorizonProblem, m: int, routing_m: np.ndarray, weights: np.ndarray,
                 scales: np.ndarray) -> _StageCosts:
    total = _total_demand(problem)
    return _StageCosts([_slot(problem, k, m, routing_m[k], weights, scales, total)
                        for k in range(problem.n_steps)])


def _total_demand(problem: HorizonProblem) -> float:
    return max(sum(float(p.demand_rps.sum()) for row in problem.steps for p in row), 1e-12)


def _per_kwh(problem: HorizonProblem, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[H, S] the preference's scaled cost of one kWh at each interval's signals."""
    return np.array([weights[1] * row[0].carbon_kg_per_kwh_it / scales[1]
                     + weights[2] * row[0].water_l_per_kwh_it / scales[2]
                     + weights[3] * row[0].cost_usd_per_kwh_it / scales[3]
                     for row in problem.steps])


def _dp_site(problem: HorizonProblem, s: int, m: int, stage: _StageCosts, cap_n: np.ndarray,
             load_cost: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-cost replica counts over the horizon for one (site, model), ``n[k] <= cap_n[k]``;
    ``load_cost[k]`` the cost of loading one replica at the start of ``k``."""
    h = problem.n_steps
    n_max = len(stage.slots[0].cost[s]) - 1
    frac = float(problem.loading_fraction[s, m])
    n = np.arange(n_max + 1)
    start = int(min(problem.initial_replicas[s, m], n_max))
    value = np.full(n_max + 1, np.inf)
    value[start] = 0.0
    back = np.zeros((h, n_max + 1), dtype=np.int64)
    added = np.maximum(0, n[None, :] - n[:, None])  # [prev, next] replicas loaded
    keep = 1.0 - frac * added / np.maximum(n[None, :], 1)
    for k in range(h):
        load = stage.slots[k].load[s]
        lo = int(problem.locked[k, s, m])
        cap = stage.slots[k].cap[s]
        ok = (cap[None, :] * keep >= load * (1 - 1e-9)) | (load <= 0)
        ok &= (n[None, :] <= cap_n[k]) & (n[None, :] >= lo)
        trans = value[:, None] + float(load_cost[k]) * added + np.where(ok, 0.0, INFEASIBLE)
        back[k] = np.argmin(trans, axis=0)
        value = trans[back[k], n] + stage.slots[k].cost[s]
    out = np.zeros(h, dtype=np.int64)
    out[-1] = int(np.argmin(value))
    best = float(value[out[-1]])
    for k in range(h - 1, 0, -1):
        out[k - 1] = back[k, out[k]]
    return out, best


def place_for_routing(problem: HorizonProblem, routing: np.ndarray, weights: np.ndarray,
                      scales: np.ndarray, stages: list[_StageCosts] | None = None,
                      caps: np.ndarray | None = None,
                      dp_cache: dict[tuple[object, ...], np.ndarray] | None = None
                      ) -> np.ndarray:
    """The placement step: least-cost replicas ``[H, S, M]`` for fixed routing (see module),
    at most ``caps [S, M]`` per (site, model) (default: what each pool holds of the model).
    Where the models' plans together exceed a pool (only without ``caps`` within the pools),
    the model with the most replicas above its need is capped there and re-planned."""
    h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
    if stages is None:
        stages = [_stage_costs(problem, m, routing[:, m], weights, scales) for m in range(n_m)]
    per_kwh = _per_kwh(problem, weights, scales)
    loading_kwh = problem.loading_kwh()
    limit = problem.max_replicas if caps is None else np.minimum(caps, problem.max_replicas)
    cap_n = np.broadcast_to(limit[None], (h, n_s, n_m)).copy()
    r = np.zeros((h, n_s, n_m), dtype=np.int64)

    def plan(s: int, m: int) -> np.ndarray:
        key = (s, m, tuple(slot.keys[s] for slot in stages[m].slots), cap_n[:, s, m].tobytes())
        if dp_cache is None or key not in dp_cache:
            counts, _ = _dp_site(problem, s, m, stages[m], cap_n[:, s, m],
                                 per_kwh[:, s] * loading_kwh[s, m])
            if dp_cache is None:
                return counts
            dp_cache[key] = counts
        return dp_cache[key]

    for s in range(n_s):
        for m in range(n_m):
            r[:, s, m] = plan(s, m)
        for _ in range(2 * h):  # pools: cap the model with most slack, re-plan it
            use = np.zeros((h, problem.pool_gpus.shape[1]))
            for mm in range(n_m):
                use[:, problem.gpu_type[s, mm]] += r[:, s, mm] * problem.gpus_per_replica[s, mm]
            over = np.argwhere(use > problem.pool_gpus[s][None])
            if len(over) == 0:
                break
            k, t = int(over[0][0]), int(over[0][1])
            slack = [r[k, s, mm] - _need(stages[mm], k, s) if problem.gpu_type[s, mm] == t
                     and r[k, s, mm] > 0 else -np.inf for mm in range(n_m)]
            mm = int(np.argmax(slack))
            cap_n[k, s, mm] = max(0, r[k, s, mm] - 1)
            r[:, s, mm] = plan(s, mm)
    return place_within_limits(problem, r)


def _need(stage: _StageCosts, k: int, s: int) -> int:
    cap, load = stage.slots[k].cap[s], stage.slots[k].load[s]
    if load <= 0:
        return 0
    return int(np.argmax(cap >= load)) if (cap >= load).any() else len(cap)


class _Scorer:
    """Placement and the planning objective for routings built from cached slots."""

    def __init__(self, problem: HorizonProblem, weights: np.ndarray) -> None:
        self.problem = problem
        self.weights = weights
        self.scales = problem.scales()
        self.total = _total_demand(problem)
        self.cache: dict[tuple[int, int, bytes], _Slot] = {}
        self.site_cache: dict[tuple[int, int, int, float, float],
                              tuple[np.ndarray, np.ndarray]] = {}
        self.dp_cache: dict[tuple[object, ...], np.ndarray] = {}
        self.per_kwh = _per_kwh(problem, weights, self.scales)  # [H, S]

    def slot(self, k: int, m: int, x: np.ndarray) -> _Slot:
        key = (k, m, x.tobytes())
        if key not in self.cache:
            self.cache[key] = _slot(self.problem, k, m, x, self.weights, self.scales,
                                    self.total, self.site_cache)
        return self.cache[key]

    def value(self, routing: np.ndarray, r: np.ndarray) -> float:
        """The planning objective of ``(r, routing)`` (scaled weighted sum), or a penalty above
        every feasible plan's when a site is short of capacity."""
        p = self.problem
        loads = p.loads(r)
        frac = p.loading_fraction
        value = float((loads * p.loading_kwh()[None] * self.per_kwh[:, :, None]).sum())
        short = 0.0
        for m in range(p.n_models):
            for k in range(p.n_steps):
                slot = self.slot(k, m, routing[k, m])
                for s in range(p.n_sites):
                    n = int(r[k, s, m])
                    value += float(slot.cost[s][n])
                    if slot.load[s] > 0:
                        eff = slot.cap[s][n] * (1.0 - frac[s, m] * loads[k, s, m] / max(n, 1))
                        short = max(short, slot.load[s] - eff * (1 + 1e-9))
        return value if short <= 0 else INFEASIBLE_PLAN * (1.0 + short)

    def __call__(self, routing: np.ndarray, caps: np.ndarray | None = None
                 ) -> tuple[float, np.ndarray]:
        p = self.problem
        stages = [_StageCosts([self.slot(k, m, routing[k, m]) for k in range(p.n_steps)])
                  for m in range(p.n_models)]
        r = place_for_routing(p, routing, self.weights, self.scales, stages, caps,
                              self.dp_cache)
        return self.value(routing, r), r


class _Router:
    """The preference's greedy fill (``routing.greedy_fill``'s rule) restricted to a replica
    limit per site, with a capacity factor per site; pair orders precomputed per (interval,
    model)."""

    def __init__(self, problem: HorizonProblem, weights: np.ndarray) -> None:
        self.problem = problem
        self.orders: list[list[tuple[list[tuple[int, int]], np.ndarray]]] = []
        for row in problem.steps:
            per_model = []
            for p in row:
                score = np.tensordot(weights, scaled_pair_costs(p), axes=1)
                order = np.argsort(np.where(p.allowed, score, np.inf), axis=None,
                                   kind="stable")[: int(p.allowed.sum())]
                pairs = [divmod(int(f), p.n_sites) for f in order]
                per_model.append((pairs, p.target_index(p.rtt_s)))
            self.orders.append(per_model)
        self.full: dict[tuple[int, int, int, float], float] = {}
        self.routes: dict[tuple[int, int, bytes, bytes], np.ndarray] = {}

    def full_capacity(self, k: int, m: int, s: int, worst_rtt_s: float) -> float:
        key = (k, m, s, worst_rtt_s)
        if key not in self.full:
            p = self.problem.steps[k][m]
            self.full[key] = exact_capacity_rps(p, s, p.tables[s].installed, worst_rtt_s)
        return self.full[key]

    def route(self, k: int, m: int, limit: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """[O, S] shares for (interval ``k``, model ``m``) with at most ``limit[s]`` replicas
        at each site, each filled to ``factor[s]`` x its SLO capacity."""
        key = (k, m, np.asarray(limit, dtype=np.int64).tobytes(),
               np.asarray(factor, dtype=float).tobytes())
        if key not in self.routes:
            self.routes[key] = self._route(k, m, limit, factor)
        return self.routes[key]

    def _route(self, k: int, m: int, limit: np.ndarray, factor: np.ndarray) -> np.ndarray:
        p = self.problem.steps[k][m]
        pairs, level_of = self.orders[k][m]
        n_o, n_s = p.n_origins, p.n_sites
        remaining = [float(d) for d in p.demand_rps]
        load = [0.0] * n_s
        level = [len(p.slo_capacity_rps[0])] * n_s  # the budget level of the worst round trip
        lim = [int(v) for v in limit]
        full = [lim[s] >= p.tables[s].installed for s in range(n_s)]
        worst = [0.0] * n_s
        flow = np.zeros((n_o, n_s))
        for o, s in pairs:
            if remaining[o] <= 0 or lim[s] <= 0:
                continue
            lv = min(level[s], int(level_of[o, s]))
            rtt = max(worst[s], float(p.rtt_s[o, s]))
            if full[s]:  # every replica of the site: the judge's own rule, past the table
                cap = self.full_capacity(k, m, s, rtt)
            else:
                cap = float(p.slo_capacity_rps[s, lv, lim[s] - 1])
            take = min(remaining[o], cap * float(factor[s]) - load[s])
            if take <= 0:
                continue
            flow[o, s] += take
            load[s] += take
            remaining[o] -= take
            level[s] = lv
            worst[s] = rtt
        for o in range(n_o):
            if remaining[o] > 1e-12:  # every site within the split full: spill where most room
                sites = [s for s in range(n_s) if p.allowed[o, s] and lim[s] > 0] or \
                    [s for s in range(n_s) if p.allowed[o, s]] or list(range(n_s))
                s = max(sites, key=lambda s: float(p.slo_capacity_rps[s, 0, max(lim[s], 1) - 1])
                        / max(load[s], 1e-9))
                flow[o, s] += remaining[o]
                load[s] += remaining[o]
        demand = p.demand_rps[:, None]
        shares = np.where(demand > 0, flow / np.where(demand > 0, demand, 1.0), 0.0)
        for o in map(int, np.flatnonzero(p.demand_rps <= 0)):
            # No demand: send the row where it widens no site's worst round trip if it can.
            used = [s for s in range(n_s) if load[s] > 0 and p.allowed[o, s]]
            if used:
                shares[o, min(used, key=lambda s: p.rtt_s[o, s])] = 1.0
        return normalise_rows(p, shares)


def pool_limits(problem: HorizonProblem, genes: np.ndarray) -> np.ndarray:
    """[S, M] replica limits of a genotype (one weight per (site, model), flattened): each
    pool's GPUs left after the replicas that must stay up, shared in proportion to the
    weights; GPUs left over by rounding go to the heaviest models that still fit."""
    g = np.clip(np.asarray(genes, dtype=float).reshape(problem.n_sites, problem.n_models),
                0.0, None)
    lock = problem.locked.max(axis=0)
    gpus = problem.gpus_per_replica
    caps = lock.astype(np.int64).copy()
    for s in range(problem.n_sites):
        for t in range(problem.pool_gpus.shape[1]):
            ms = [m for m in range(problem.n_models) if problem.gpu_type[s, m] == t]
            if not ms:
                continue
            free = float(problem.pool_gpus[s, t]) - sum(float(lock[s, m] * gpus[s, m])
                                                        for m in ms)
            total = sum(g[s, m] for m in ms)
            if total <= 0 or free <= 0:
                continue
            for m in ms:
                caps[s, m] += int(free * g[s, m] / total // gpus[s, m])
            left = float(problem.pool_gpus[s, t]) - sum(float(caps[s, m] * gpus[s, m])
                                                        for m in ms)
            for m in sorted(ms, key=lambda m: -g[s, m]):
                add = int(left // gpus[s, m])
                if g[s, m] > 0 and add > 0:
                    caps[s, m] += add
                    left -= add * gpus[s, m]
    return np.minimum(caps, np.maximum(problem.max_replicas, lock))


def genes_for_limits(problem: HorizonProblem, limits: np.ndarray) -> np.ndarray:
    """A genotype whose ``pool_limits`` are (about) ``limits [S, M]``: each model's share of
    its pool's GPUs."""
    use = limits * problem.gpus_per_replica
    pool = np.array([[problem.pool_gpus[s, problem.gpu_type[s, m]]
                      for m in range(problem.n_models)] for s in range(problem.n_sites)])
    return np.clip(use / np.maximum(pool, 1), 0.0, 1.0).ravel()


class _Decoder:
    """Genotype -> (planning value, replicas, routing), memoised on the replica limits."""

    def __init__(self, problem: HorizonProblem, weights: np.ndarray) -> None:
        self.problem = problem
        self.scorer = _Scorer(problem, weights)
        self.router = _Router(problem, weights)
        self.memo: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}

    def limits(self, limits: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        key = limits.tobytes()
        if key not in self.memo:
            p = self.problem
            # [S, M] share of the limit's replicas the first interval loads (cannot pre-load)
            must_load = np.maximum(0, limits - p.initial_replicas) / np.maximum(limits, 1)
            x = np.zeros((p.n_steps, p.n_models, p.n_origins, p.n_sites))
            for k in range(p.n_steps):
                for m in range(p.n_models):
                    factor = (1.0 - p.loading_fraction[:, m] * must_load[:, m] if k == 0
                              else np.ones(p.n_sites))
                    x[k, m] = self.router.route(k, m, limits[:, m], factor)
            value, r = self.scorer(x, limits)
            self.memo[key] = (value, r, x)
        return self.memo[key]

    def __call__(self, genes: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return self.limits(pool_limits(self.problem, genes))


class _SplitProblem(Problem):
    def __init__(self, decoder: _Decoder) -> None:
        p = decoder.problem
        super().__init__(n_var=p.n_sites * p.n_models, n_obj=1, xl=0.0, xu=1.0)
        self.decoder = decoder

    def _evaluate(self, x: np.ndarray, out: dict[str, np.ndarray], *args: object,
                  **kwargs: object) -> None:
        out["F"] = np.array([[self.decoder(g)[0]] for g in x])


def _seed_genes(problem: HorizonProblem, weights: np.ndarray,
                previous_limits: np.ndarray | None) -> list[np.ndarray]:
    """First genotypes: equal split, split by GPU demand, whole pools to one model (the cheaper
    half of the sites to each model in turn), and the previous decision's limits."""
    n_s, n_m = problem.n_sites, problem.n_models
    demand = np.array([sum(float(row[m].demand_rps.sum()) for row in problem.steps)
                       for m in range(n_m)])
    by_demand = demand[None, :] * problem.gpus_per_replica
    seeds = [np.ones(n_s * n_m), (by_demand / by_demand.max(axis=1, keepdims=True)).ravel()]
    cost = np.tensordot(weights[1:], np.stack([
        problem.steps[0][0].carbon_kg_per_kwh_it / problem.scales()[1],
        problem.steps[0][0].water_l_per_kwh_it / problem.scales()[2],
        problem.steps[0][0].cost_usd_per_kwh_it / problem.scales()[3]]), axes=1)
    cheap = np.argsort(cost, kind="stable")
    for m in range(n_m):
        whole = np.full((n_s, n_m), 0.1)
        whole[cheap[: n_s // 2], :] = 0.0
        whole[cheap[: n_s // 2], m] = 1.0
        seeds.append(whole.ravel())
    if previous_limits is not None:
        seeds.append(genes_for_limits(problem, previous_limits))
    return seeds


def _moves(problem: HorizonProblem, limits: np.ndarray, s: int) -> list[np.ndarray]:
    """Neighbours of ``limits`` at site ``s``: a model drops a replica; a model takes one more
    replica from the GPUs of another (which drops as many as that needs); a model takes the
    whole pool."""
    p = problem
    lock = p.locked.max(axis=0)
    out = []

    def fits(trial: np.ndarray) -> bool:
        return bool((p.pool_use(trial[None])[0][s] <= p.pool_gpus[s]).all())

    for m in range(p.n_models):
        if limits[s, m] > lock[s, m]:
            trial = limits.copy()
            trial[s, m] -= 1
            out.append(trial)
        if limits[s, m] >= p.max_replicas[s, m]:
            continue
        for other in range(p.n_models):
            if other == m or p.gpu_type[s, other] != p.gpu_type[s, m]:
                continue
            trial = limits.copy()
            trial[s, m] += 1
            while not fits(trial) and trial[s, other] > lock[s, other]:
                trial[s, other] -= 1
            if fits(trial) and trial[s, other] < limits[s, other]:
                out.append(trial)
            whole = limits.copy()
            whole[s, other] = lock[s, other]
            whole[s, m] = lock[s, m]
            while whole[s, m] < p.max_replicas[s, m]:
                whole[s, m] += 1
                if not fits(whole):
                    whole[s, m] -= 1
                    break
            if not np.array_equal(whole, limits) and not any(np.array_equal(whole, t)
                                                             for t in out):
                out.append(whole)
    return out


def _polish(decoder: _Decoder, limits: np.ndarray, value: float, rounds: int
            ) -> tuple[np.ndarray, float]:
    """Site by site, the best of ``_moves`` if it improves; ``rounds`` passes."""
    p = decoder.problem
    for _ in range(rounds):
        improved = False
        for s in range(p.n_sites):
            for trial in _moves(p, limits, s):
                v = decoder.limits(trial)[0]
                if v < value - 1e-12:
                    limits, value, improved = trial, v, True
        if not improved:
            break
    return limits, value


def _relocations(problem: HorizonProblem, limits: np.ndarray) -> list[np.ndarray]:
    """Neighbours of ``limits`` that move one replica of a model from a site where it has
    one to another site, the GPUs it needs there taken from the other models' replicas
    (a pool traded between the models) if the pool is full; a model's replicas can only
    leave a site down to those that must stay up."""
    p = problem
    lock = p.locked.max(axis=0)
    out = []
    for m in range(p.n_models):
        sources = [s for s in range(p.n_sites) if limits[s, m] > lock[s, m]]
        for src in sources:
            for dst in range(p.n_sites):
                if dst == src or limits[dst, m] >= p.max_replicas[dst, m]:
                    continue
                trial = limits.copy()
                trial[src, m] -= 1
                trial[dst, m] += 1
                if _trade_pool(p, trial, dst, m, lock):  # GPUs at dst freed by the trade
                    out.append(trial)
    return out


def _relocate(decoder: _Decoder, limits: np.ndarray, value: float, budget: int
              ) -> tuple[np.ndarray, float]:
    """Local search over a plan's replica counts (its split): a model's replica moved to
    another site, or a pool traded between the models at one site (``_moves`` and
    ``_relocations``), each scored by the decoder (routing within the split, the placement
    DP with loading energy, minimum up-time); first improvement, restarted from each accepted
    neighbour, at most ``budget`` decodes not memoised already (work, not time)."""
    p = decoder.problem
    spent = 0
    improved = True
    while improved and spent < budget:
        improved = False
        # Relocations first: the site moves were polished already from these counts.
        trials = _relocations(p, limits)
        trials += [t for s in range(p.n_sites) for t in _moves(p, limits, s)]
        for trial in trials:
            if spent >= budget:
                break
            spent += trial.tobytes() not in decoder.memo
            v = decoder.limits(trial)[0]
            if v < value - 1e-12:
                limits, value, improved = trial, v, True
                break
    return limits, value


def _trade_pool(problem: HorizonProblem, trial: np.ndarray, s: int, m: int,
                lock: np.ndarray) -> bool:
    """Make room for model ``m``'s replicas in ``trial`` at site ``s``: the other model with
    the most replicas above its lock gives one up at a time until the pool fits (in place).
    False if it cannot fit."""
    p = problem
    t = p.gpu_type[s, m]
    while p.pool_use(trial[None])[0][s, t] > p.pool_gpus[s, t]:
        others = [o for o in range(p.n_models) if o != m and p.gpu_type[s, o] == t
                  and trial[s, o] > lock[s, o]]
        if not others:
            return False
        o = max(others, key=lambda o: trial[s, o] - lock[s, o])
        trial[s, o] -= 1
    return bool((p.pool_use(trial[None])[0] <= p.pool_gpus).all())


def _site_sets(problem: HorizonProblem, limits: np.ndarray) -> list[np.ndarray]:
    """Neighbours of ``limits`` that change the set of sites a model may use: close one or two
    of its sites (its limit there down to the replicas that must stay up); move all of a
    site's replicas to another site (a swap, the pool traded there as in ``_relocations``);
    and a swap that also closes one more of its sites. Why whole sites: the greedy within a
    split routes each origin by per-request cost and ignores that a replica carrying a small
    load costs its idle power, so it keeps a far origin's few requests on a site of its own
    as long as the split allows it; closing that site, or moving it, is what removes the
    replica (measured on busiest horizons 4, 6, 7, where no single-replica move helps)."""
    p = problem
    lock = p.locked.max(axis=0)
    out: list[np.ndarray] = []
    seen: set[bytes] = {limits.tobytes()}

    def add(trial: np.ndarray) -> None:
        if trial.tobytes() not in seen:
            seen.add(trial.tobytes())
            out.append(trial)

    for m in range(p.n_models):
        sites = [s for s in range(p.n_sites) if limits[s, m] > lock[s, m]]
        for a, b in [(a, None) for a in sites] + [(a, b) for i, a in enumerate(sites)
                                                  for b in sites[i + 1:]]:
            trial = limits.copy()
            trial[a, m] = lock[a, m]
            if b is not None:
                trial[b, m] = lock[b, m]
            add(trial)
        for src in sites:
            moved = int(limits[src, m] - lock[src, m])
            for also in [None] + [o for o in sites if o != src]:
                for dst in range(p.n_sites):
                    if dst in (src, also) or limits[dst, m] >= p.max_replicas[dst, m]:
                        continue
                    trial = limits.copy()
                    trial[src, m] = lock[src, m]
                    if also is not None:
                        trial[also, m] = lock[also, m]
                    trial[dst, m] = min(int(p.max_replicas[dst, m]), int(trial[dst, m]) + moved)
                    if _trade_pool(p, trial, dst, m, lock):
                        add(trial)
    return out


def _resite(decoder: _Decoder, limits: np.ndarray, value: float, budget: int
            ) -> tuple[np.ndarray, float]:
    """Local search over the sites each model may use (``_site_sets``), each neighbour decoded
    (routing within the split, placement DP, minimum up-time); the best neighbour of a scan
    accepted if it improves and the scan repeated from it, at most ``budget`` decodes not
    memoised already (work, not time)."""
    spent = 0
    while spent < budget:
        best_limits, best_value = limits, value
        for trial in _site_sets(decoder.problem, limits):
            if spent >= budget:
                break
            spent += trial.tobytes() not in decoder.memo
            v = decoder.limits(trial)[0]
            if v < best_value - 1e-12:
                best_limits, best_value = trial, v
        if best_value >= value - 1e-12:
            break
        limits, value = best_limits, best_value
    return limits, value


def _spread(problem: HorizonProblem, scorer: _Scorer, routing: np.ndarray, first: np.ndarray
            ) -> np.ndarray | None:
    """``routing`` with ``first [M, O, S]`` (the committed interval's routings) in every
    (interval, model) where the load it routes to each site fits what the site's whole pool
    of the model carries; None if that changes no interval after the first."""
    out = routing.copy()
    out[0] = first
    changed = False
    for k in range(1, problem.n_steps):
        for m in range(problem.n_models):
            x = normalise_rows(problem.steps[k][m], first[m])
            slot = scorer.slot(k, m, x)
            n_max = problem.max_replicas[:, m]
            if all(slot.load[s] <= slot.cap[s][min(int(n_max[s]), len(slot.cap[s]) - 1)]
                   for s in range(problem.n_sites)):
                out[k, m] = x
                changed = True
    return out if changed else None


def _used(problem: HorizonProblem, replicas: np.ndarray) -> np.ndarray:
    """[S, M] the replicas a plan uses at most over its horizon (and those that must stay
    up), as a split."""
    return np.maximum(np.asarray(replicas).max(axis=0),
                      problem.locked.max(axis=0)).astype(np.int64)


def _candidates(decoder: _Decoder, limits: np.ndarray, first: np.ndarray | None, free: bool
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The plans a split gives: the decoder's, and with ``first`` (the per-interval search's
    routings for the committed interval [M, O, S]) that routing in its first interval placed
    within the split; with ``free`` also placed freely within the pools and spread to every
    later interval whose forecast it fits (``_spread``)."""
    _, r, routing = decoder.limits(limits)
    plans = [(r, routing)]
    if first is None:
        return plans
    trial = routing.copy()
    trial[0] = first
    plans.append((decoder.scorer(trial, limits)[1], trial))
    if free:
        # The per-interval search's routings spread sites the greedy within a split
        # consolidates (measured on the default scenario's busiest horizons: the greedy sends a
        # model's load to the cheapest site on many replicas, where one replica each at two
        # sites nearer the origins costs less TTFT), so they are also placed freely within the
        # pools, in the first interval and in every interval whose forecast they fit.
        plans.append((decoder.scorer(trial)[1], trial))
        spread = _spread(decoder.problem, decoder.scorer, routing, first)
        if spread is not None:
            plans.append((decoder.scorer(spread)[1], spread))
    return plans


_Scored = tuple[float, float, HorizonEvaluation, np.ndarray, np.ndarray]


def _scored(problem: HorizonProblem, plans: list[tuple[np.ndarray, np.ndarray]],
            weights: np.ndarray) -> list[_Scored]:
    """Each plan judged by the planning model: (score, capacity shortfall, evaluation,
    replicas, routing)."""
    out = []
    for r, x in plans:
        ev = evaluate_horizon(problem, r, x)
        out.append((horizon_score(problem, ev, weights), ev.capacity_shortfall_rps, ev, r, x))
    return out


def plan_horizon(problem: HorizonProblem, preference: Preference | None = None,
                 previous: tuple[np.ndarray, np.ndarray] | None = None,
                 first_routing: np.ndarray | None = None, seed: int = 0,
                 settings: HorizonSearchSettings | None = None) -> HorizonDecision:
    """SLIT's horizon plan. ``previous``: the last decision's ``(replicas, routing)`` (shifted
    here: the warm start). ``first_routing`` [M, O, S]: routings for the committed interval
    from the per-interval search, tried in place of the plan's first interval. ``seed``: the
    genetic algorithm's (from the scenario's seed in a run)."""
    started = time.perf_counter()
    preference = preference or Preference()
    settings = settings or HorizonSearchSettings()
    weights = np.asarray(preference.effective_weights, dtype=float)
    decoder = _Decoder(problem, weights)
    shifted: tuple[np.ndarray, np.ndarray] | None = None
    previous_limits = None
    if previous is not None:
        r_prev, x_prev = shift_plan(*previous)
        # A previous horizon of another length (e.g. clipped at the end of the day): cut it
        # or repeat its last interval to this one's.
        pick = np.minimum(np.arange(problem.n_steps), len(r_prev) - 1)
        r_prev, x_prev = r_prev[pick], x_prev[pick]
        x_prev = np.stack([np.stack([normalise_rows(problem.steps[k][m], x_prev[k, m])
                                     for m in range(problem.n_models)])
                           for k in range(problem.n_steps)])
        shifted = (np.asarray(r_prev, dtype=np.int64), x_prev)
        previous_limits = np.maximum(shifted[0].max(axis=0), problem.locked.max(axis=0))
    seeds = _seed_genes(problem, weights, previous_limits)
    rng = np.random.default_rng(seed)
    n_var = problem.n_sites * problem.n_models
    pop = max(settings.population, len(seeds))
    sampling = np.vstack(seeds + [rng.random(n_var) for _ in range(pop - len(seeds))])
    result = minimize(_SplitProblem(decoder),
                      GA(pop_size=pop, sampling=sampling, eliminate_duplicates=True),
                      MaximumGenerationTermination(settings.generations),
                      seed=int(rng.integers(2**31 - 1)), verbose=False)
    best_limits = pool_limits(problem, np.asarray(result.X, dtype=float))
    best_value = decoder.limits(best_limits)[0]
    best_limits, best_value = _polish(decoder, best_limits, best_value, settings.polish_rounds)
    first = None if first_routing is None else np.asarray(first_routing, dtype=float)
    plans = _candidates(decoder, best_limits, first, free=True)
    if shifted is not None:
        plans.append(shifted)
        plans.append((decoder.scorer(shifted[1])[1], shifted[1]))
    scored = _scored(problem, plans, weights)
    # The best feasible plan; if none is, the one least short of capacity.
    score, _, ev, r, x = min(scored, key=lambda c: (c[0], c[1]))
    # Polish again from the replicas the best candidate uses as the split. Why: the GA's split
    # leaves a model limits at sites it does not use, where the single-site moves find no
    # improving step; from the used replicas (on busiest horizon 0: the per-interval search's
    # first interval, the 8B model on one site) the same moves open another site to a model
    # and the greedy within the split then spreads it (measured: 0.5018 -> 0.4538 there; the
    # first plan's candidates stay in the choice, so this never returns a worse plan).
    used = _used(problem, r)
    if settings.repolish and np.isfinite(score) and not np.array_equal(used, best_limits):
        limits2, _ = _polish(decoder, used, decoder.limits(used)[0], settings.polish_rounds)
        scored += _scored(problem, _candidates(decoder, limits2, first, free=False), weights)
        score, _, ev, r, x = min(scored, key=lambda c: (c[0], c[1]))
    # Then local searches over the best plan's replica counts, each from the best plan so far:
    # moves across sites (a replica relocated, the pools traded between the models where it
    # lands), then the sites each model may use (a site closed, or its replicas moved to another
    # site). Each only adds candidates, so the plan is never worse than without it.
    searches = ((settings.relocate, _relocate, settings.relocate_evaluations),
                (settings.resite, _resite, settings.resite_evaluations))
    for enabled, search, budget in searches:
        if not (enabled and np.isfinite(score)):
            continue
        used = _used(problem, r)
        limits, _ = search(decoder, used, decoder.limits(used)[0], budget)
        if not np.array_equal(limits, used):
            scored += _scored(problem, _candidates(decoder, limits, first, free=False),
                              weights)
            score, _, ev, r, x = min(scored, key=lambda c: (c[0], c[1]))
    return HorizonDecision(r, x, ev.objectives, score, ev.feasible,
                           time.perf_counter() - started)
