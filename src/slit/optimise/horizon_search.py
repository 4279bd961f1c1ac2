"""SLIT over a look-ahead horizon: routing per (interval, model) and replicas per (site, model)
planned together, the first interval committed, re-planned at the next (receding horizon).

The search alternates two steps on the surrogate's tables (no simulation inside the loop):

1. **Placement for fixed routing, exactly per (site, model)**: a dynamic programme over the
   horizon with the replica count as state. Its stage cost is the preference's scaled cost of
   serving the routed load on ``n`` replicas (surrogate power and TTFT), its transition cost the
   loading energy of the replicas loaded, and a transition is allowed only if the replicas keep
   the load within capacity after the loading loss (so it pre-loads one interval ahead of a
   peak when loading late would miss the SLO, and keeps a replica through a short trough when
   reloading it costs more than idling). Pools couple models at a site: where the models' plans
   together exceed a pool, the model with the most replicas above its need is capped there and
   re-planned. Minimum up-time is then enforced (``place_within_limits``).
2. **Routing by coordinate descent**: each (interval, model) takes the best of its candidate
   routings (the per-interval SLIT search's or the preference's greedy plan, the neighbouring
   intervals' routings, the previous horizon's shifted plan) given the others, judged by the
   horizon objective with placement re-planned.

The warm start is the previous decision's horizon shifted by one interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from slit.optimise.baselines import weighted_greedy
from slit.optimise.horizon import (
    HorizonProblem,
    evaluate_horizon,
    horizon_score,
    place_within_limits,
    released_tables,
    shift_plan,
)
from slit.optimise.milp import exact_capacity_rps
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem
from slit.optimise.routing import normalise_rows

KWH_PER_WS = 1.0 / 3.6e6
INFEASIBLE = 1e9  # DP cost of a replica count that cannot carry the load
POOL_DERATES = (1.0, 0.8)  # pool splits tried: whole share, and headroom for loading


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


def _slot(problem: HorizonProblem, k: int, m: int, x: np.ndarray, weights: np.ndarray,
          scales: np.ndarray, total_demand: float) -> _Slot:
    p = problem.steps[k][m]
    load = p.demand_rps @ x
    worst = p.worst_rtt_s(x[None])[0]
    per_kwh = (weights[1] * p.carbon_kg_per_kwh_it / scales[1]
               + weights[2] * p.water_l_per_kwh_it / scales[2]
               + weights[3] * p.cost_usd_per_kwh_it / scales[3])
    caps, costs = [], []
    for s, table in enumerate(p.tables):
        n = np.arange(table.installed + 1)
        ttft_mean, _, power = table.lookup(np.full(len(n), load[s]), n)
        power = power - (table.installed - n) * table.standby_w_per_replica
        ttft_sum = float((p.demand_rps * x[:, s] * p.rtt_s[:, s]).sum()) + load[s] * ttft_mean
        costs.append(per_kwh[s] * power * p.interval_s * KWH_PER_WS
                     + weights[0] * ttft_sum / total_demand / scales[0])
        caps.append(_capacities(p, s, float(worst[s])))
    return _Slot(load, tuple(caps), tuple(costs))


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


def _dp_site(problem: HorizonProblem, s: int, m: int, stage: _StageCosts, cap_n: np.ndarray,
             load_cost: float) -> tuple[np.ndarray, float]:
    """Least-cost replica counts over the horizon for one (site, model), ``n[k] <= cap_n[k]``."""
    h = problem.n_steps
    n_max = len(stage.slots[0].cost[s]) - 1
    frac = float(problem.loading_fraction[s, m])
    n = np.arange(n_max + 1)
    start = int(min(problem.initial_replicas[s, m], n_max))
    value = np.full(n_max + 1, np.inf)
    value[start] = 0.0
    back = np.zeros((h, n_max + 1), dtype=np.int64)
    added = np.maximum(0, n[None, :] - n[:, None])  # [prev, next] replicas loaded
    loads = stage.load[:, s]
    for k in range(h):
        lo = int(problem.locked[k, s, m])
        cap = stage.slots[k].cap[s]
        eff = cap[None, :] * (1.0 - frac * added / np.maximum(n[None, :], 1))
        ok = (eff >= loads[k] * (1 - 1e-9)) | (loads[k] <= 0)
        ok &= (n[None, :] <= cap_n[k]) & (n[None, :] >= lo)
        trans = value[:, None] + load_cost * added + np.where(ok, 0.0, INFEASIBLE)
        back[k] = np.argmin(trans, axis=0)
        value = trans[back[k], n] + stage.slots[k].cost[s]
    out = np.zeros(h, dtype=np.int64)
    out[-1] = int(np.argmin(value))
    best = float(value[out[-1]])
    for k in range(h - 1, 0, -1):
        out[k - 1] = back[k, out[k]]
    return out, best


def place_for_routing(problem: HorizonProblem, routing: np.ndarray, weights: np.ndarray,
                      scales: np.ndarray, stages: list[_StageCosts] | None = None
                      ) -> np.ndarray:
    """The placement step: least-cost replicas ``[H, S, M]`` for fixed routing (see module)."""
    h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
    if stages is None:
        stages = [_stage_costs(problem, m, routing[:, m], weights, scales) for m in range(n_m)]
    per_kwh = np.array([[weights[1] * p.carbon_kg_per_kwh_it[s] / scales[1]
                         + weights[2] * p.water_l_per_kwh_it[s] / scales[2]
                         + weights[3] * p.cost_usd_per_kwh_it[s] / scales[3]
                         for s in range(n_s)] for p in (row[0] for row in problem.steps)])
    loading_kwh = problem.loading_kwh()
    cap_n = np.broadcast_to(problem.max_replicas[None], (h, n_s, n_m)).copy()
    r = np.zeros((h, n_s, n_m), dtype=np.int64)
    for s in range(n_s):
        for m in range(n_m):
            load_cost = float(per_kwh.mean(axis=0)[s] * loading_kwh[s, m])
            r[:, s, m], _ = _dp_site(problem, s, m, stages[m], cap_n[:, s, m], load_cost)
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
            load_cost = float(per_kwh.mean(axis=0)[s] * loading_kwh[s, mm])
            r[:, s, mm], _ = _dp_site(problem, s, mm, stages[mm], cap_n[:, s, mm], load_cost)
    return place_within_limits(problem, r)


def _need(stage: _StageCosts, k: int, s: int) -> int:
    cap, load = stage.slots[k].cap[s], stage.slots[k].load[s]
    if load <= 0:
        return 0
    return int(np.argmax(cap >= load)) if (cap >= load).any() else len(cap)


def _pool_shares(problem: HorizonProblem, k: int, derate: float) -> np.ndarray:
    """[S, M] replicas of each model a site's pool holds if split by the models' GPU demand
    in interval ``k`` (times ``derate``, keeping headroom for loading)."""
    gpus = problem.gpus_per_replica.astype(float)
    demand = np.array([float(p.demand_rps.sum()) for p in problem.steps[k]])
    weight = demand[None, :] * gpus  # [S, M]
    out = np.zeros(gpus.shape, dtype=np.int64)
    for s in range(problem.n_sites):
        for m in range(problem.n_models):
            t = problem.gpu_type[s, m]
            same = problem.gpu_type[s] == t
            share = weight[s, m] / max(weight[s, same].sum(), 1e-12)
            out[s, m] = int(problem.pool_gpus[s, t] * share * derate // gpus[s, m])
    return out


def _candidates(problem: HorizonProblem, preference: Preference) -> list[list[list[np.ndarray]]]:
    """Per (interval, model) routings: the preference's greedy on the model's whole pool, and
    on the pool split between the models (with and without headroom for loading)."""
    out: list[list[list[np.ndarray]]] = []
    for k in range(problem.n_steps):
        row = []
        shares = [_pool_shares(problem, k, d) for d in POOL_DERATES]
        for m in range(problem.n_models):
            p = problem.steps[k][m]
            cands = [weighted_greedy(p, preference)]
            for share in shares:
                cut = released_tables(p, np.maximum(share[:, m], 1))
                # A site whose pool share holds no replica of the model takes none of it.
                object.__setattr__(cut, "allowed", p.allowed & (share[:, m] > 0)[None, :])
                if cut.allowed.any(axis=1).all():
                    cands.append(weighted_greedy(cut, preference))
            row.append(_unique(cands))
        out.append(row)
    return out


def _unique(plans: list[np.ndarray]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for x in plans:
        if not any(np.array_equal(x, y) for y in out):
            out.append(x)
    return out


class _Scorer:
    """Placement and the planning objective for routings built from cached slots."""

    def __init__(self, problem: HorizonProblem, weights: np.ndarray) -> None:
        self.problem = problem
        self.weights = weights
        self.scales = problem.scales()
        self.total = _total_demand(problem)
        self.cache: dict[tuple[int, int, bytes], _Slot] = {}
        steps = problem.steps
        self.per_kwh = np.array([weights[1] * row[0].carbon_kg_per_kwh_it / self.scales[1]
                                 + weights[2] * row[0].water_l_per_kwh_it / self.scales[2]
                                 + weights[3] * row[0].cost_usd_per_kwh_it / self.scales[3]
                                 for row in steps])  # [H, S]

    def slot(self, k: int, m: int, x: np.ndarray) -> _Slot:
        key = (k, m, x.tobytes())
        if key not in self.cache:
            self.cache[key] = _slot(self.problem, k, m, x, self.weights, self.scales,
                                    self.total)
        return self.cache[key]

    def __call__(self, routing: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.problem
        stages = [_StageCosts([self.slot(k, m, routing[k, m]) for k in range(p.n_steps)])
                  for m in range(p.n_models)]
        r = place_for_routing(p, routing, self.weights, self.scales, stages)
        loads = p.loads(r)
        frac = p.loading_fraction
        value = float((loads * p.loading_kwh()[None] * self.per_kwh[:, :, None]).sum())
        short = 0.0
        for m, stage in enumerate(stages):
            for k, slot in enumerate(stage.slots):
                for s in range(p.n_sites):
                    n = int(r[k, s, m])
                    value += float(slot.cost[s][n])
                    if slot.load[s] > 0:
                        eff = slot.cap[s][n] * (1.0 - frac[s, m] * loads[k, s, m] / max(n, 1))
                        short = max(short, slot.load[s] - eff * (1 + 1e-9))
        return (value if short <= 0 else 1e6 * (1.0 + short)), r


def plan_horizon(problem: HorizonProblem, preference: Preference | None = None,
                 previous: tuple[np.ndarray, np.ndarray] | None = None,
                 first_routing: np.ndarray | None = None, sweeps: int = 1) -> HorizonDecision:
    """SLIT's horizon plan. ``previous``: the last decision's ``(replicas, routing)`` (shifted
    here: the warm start). ``first_routing`` [M, O, S]: routings for the committed interval
    from the per-interval search, added to its candidates."""
    started = time.perf_counter()
    preference = preference or Preference()
    weights = np.asarray(preference.effective_weights, dtype=float)
    h, n_m = problem.n_steps, problem.n_models
    candidates = _candidates(problem, preference)
    if first_routing is not None:
        for m in range(n_m):
            candidates[0][m].insert(0, np.asarray(first_routing[m], dtype=float))
    if previous is not None:
        _, shifted = shift_plan(*previous)
        for k in range(h - 1):
            for m in range(n_m):
                candidates[k][m].append(normalise_rows(problem.steps[k][m], shifted[k, m].copy()))
    score = _Scorer(problem, weights)
    starts = [np.stack([np.stack([candidates[k][m][i if i < len(candidates[k][m]) else 0]
                                  for m in range(n_m)]) for k in range(h)])
              for i in range(max(len(c) for row in candidates for c in row))]
    best_value, best_r, routing = np.inf, None, starts[0]
    for start in starts:
        value, r = score(start)
        if value < best_value:
            best_value, best_r, routing = value, r, start
    assert best_r is not None
    for _ in range(sweeps):
        improved = False
        for k in range(h):
            for m in range(n_m):
                for cand in candidates[k][m]:
                    if np.array_equal(cand, routing[k, m]):
                        continue
                    trial = routing.copy()
                    trial[k, m] = cand
                    value, r = score(trial)
                    if value < best_value - 1e-12:
                        best_value, best_r, routing, improved = value, r, trial, True
        if not improved:
            break
    ev = evaluate_horizon(problem, best_r, routing)
    return HorizonDecision(best_r, routing, ev.objectives, horizon_score(problem, ev, weights),
                           ev.feasible, time.perf_counter() - started)
