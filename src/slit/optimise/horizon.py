"""The horizon problem: several models on shared GPU pools, replicas committed over H intervals.

Decision for intervals ``k = 0..H-1`` (``s`` site, ``m`` model, ``o`` origin):

- ``replicas[k, s, m]`` (int): replicas of model ``m`` loaded at site ``s`` during interval ``k``
  (loading or serving). A replica counted in ``k`` but not in ``k - 1`` is loaded at the start of
  ``k``: its GPUs draw ``loading_power_w`` for ``load_time_s`` and serve nothing meanwhile.
- ``routing[k, m, o, s]``: share of origin ``o``'s requests for model ``m`` served at ``s``.

Each (interval, model) is an ``IntervalProblem`` (forecast demand and signals, the surrogate's
``SiteServingTable`` per site with ``installed`` = the most replicas of the model the site's pool
holds, standby 0 W: released GPUs belong to other tenants). The horizon problem adds what couples
them:

- pools: ``sum_m replicas[k, s, m] * gpus_per_replica[s, m] <= pool_gpus[s, gpu_type[s, m]]``;
- lifecycle: ``loads[k] = max(0, replicas[k] - replicas[k - 1])`` (``replicas[-1]`` the current
  state); a loaded replica stays up at least ``min_up_s``: ``replicas[k] >= sum of loads in the
  last ceil(min_up_s / interval_s) intervals`` plus the current replicas still younger than it;
- capacity lost while loading, pro rata: in ``k`` a site carries at most
  ``cap(n) * (1 - f * loads / n)`` with ``f = min(1, load_time_s / interval_s)`` and ``cap(n)``
  the load ``n`` replicas carry within the SLO for the worst round trip routed there
  (``milp.exact_capacity_rps``, the rule every per-interval plan is judged by);
- objectives summed over the horizon: mean TTFT weighted by each (interval, model)'s demand,
  carbon, water and cost of the serving energy (the tables' power for the load on ``n``
  replicas) plus the loading energy ``loads * loading_power_w * load_time_s`` (churn) at the
  interval's signals.

The TTFT term does not charge the queueing of requests that arrive while a replica loads (only
its lost capacity): an assumption of the planning model; the request-level simulation judges it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from slit.optimise.baselines import objective_scales
from slit.optimise.milp import exact_capacity_rps
from slit.optimise.preference import day_scales
from slit.optimise.problem import OBJECTIVES, IntervalProblem

KWH_PER_WS = 1.0 / 3.6e6
CAPACITY_TOLERANCE = 1e-9  # relative; a load this close to capacity meets it
DEFAULT_HORIZON = 8  # intervals: 2 h at 15 min


@dataclass(frozen=True)
class HorizonProblem:
    """Everything known (forecast) when planning the next ``H`` intervals."""

    model_names: tuple[str, ...]
    steps: tuple[tuple[IntervalProblem, ...], ...]  # [H][M]
    pool_gpus: np.ndarray  # [S, T] GPUs per site and GPU type
    gpu_type: np.ndarray  # [S, M] index into the pool's types of the GPU each model's replica uses
    gpus_per_replica: np.ndarray  # [S, M]
    initial_replicas: np.ndarray  # [S, M] loaded now
    initial_up_s: np.ndarray  # [S, M] how long they have been up (the youngest's age)
    load_time_s: np.ndarray  # [S, M] weights / load bandwidth + start-up
    loading_power_w: np.ndarray  # [S, M] per replica while loading
    min_up_s: float
    locked: np.ndarray = field(init=False)  # [H, S, M] current replicas that must stay up in k

    def __post_init__(self) -> None:
        h, m = len(self.steps), len(self.model_names)
        if h == 0 or any(len(row) != m for row in self.steps):
            raise ValueError("steps: one IntervalProblem per (interval, model)")
        s = self.steps[0][0].n_sites
        for name in ("gpu_type", "gpus_per_replica", "initial_replicas", "initial_up_s",
                     "load_time_s", "loading_power_w"):
            if np.shape(getattr(self, name)) != (s, m):
                raise ValueError(f"HorizonProblem.{name} must be [sites, models]")
        starts = np.arange(h)[:, None, None] * self.interval_s
        young = (self.initial_up_s[None] + starts) < self.min_up_s
        object.__setattr__(self, "locked", np.where(young, self.initial_replicas[None], 0))

    @property
    def interval_s(self) -> float:
        return float(self.steps[0][0].interval_s)

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def n_sites(self) -> int:
        return self.steps[0][0].n_sites

    @property
    def n_models(self) -> int:
        return len(self.model_names)

    @property
    def n_origins(self) -> int:
        return self.steps[0][0].n_origins

    @property
    def max_replicas(self) -> np.ndarray:
        """[S, M] most replicas of a model its site's pool holds (alone)."""
        return np.array([[t.installed for t in p.tables] for p in self.steps[0]]).T

    @property
    def up_intervals(self) -> int:
        """Intervals a replica loaded at the start of one stays up at least."""
        return max(1, math.ceil(self.min_up_s / self.interval_s - 1e-9))

    @property
    def loading_fraction(self) -> np.ndarray:
        """[S, M] share of an interval a replica loaded at its start spends loading."""
        return np.minimum(1.0, self.load_time_s / self.interval_s)

    def loading_kwh(self) -> np.ndarray:
        """[S, M] energy of loading one replica."""
        return self.loading_power_w * np.minimum(self.load_time_s, self.interval_s) * KWH_PER_WS

    def pool_use(self, replicas: np.ndarray) -> np.ndarray:
        """[..., S, T] GPUs a plan's replicas occupy per pool."""
        onehot = self.gpu_type[..., None] == np.arange(self.pool_gpus.shape[1])  # [S, M, T]
        gpus = self.gpus_per_replica[..., None] * onehot
        return np.einsum("...sm,smt->...st", np.asarray(replicas, dtype=float), gpus)

    def loads(self, replicas: np.ndarray) -> np.ndarray:
        """[H, S, M] replicas loaded at the start of each interval."""
        r = np.asarray(replicas)
        previous = np.concatenate([self.initial_replicas[None], r[:-1]])
        return np.maximum(0, r - previous)

    def must_stay(self, replicas: np.ndarray) -> np.ndarray:
        """[H, S, M] replicas that may not be released in each interval (min up-time)."""
        loads = self.loads(replicas)
        window = np.zeros_like(loads)
        u = self.up_intervals
        for k in range(self.n_steps):
            window[k] = loads[max(0, k - u + 1): k + 1].sum(axis=0)
        return window + self.locked

    def scales(self) -> np.ndarray:
        """[4] the fixed normalisation of the horizon's objectives: per-interval scales summed
        (carbon, water, cost), demand-weighted (TTFT, a mean)."""
        return horizon_scales([p for row in self.steps for p in row])

    def shifted(self, replicas: np.ndarray, routing: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """A plan of the previous horizon moved one interval on (its last interval repeated):
        the warm start of the next decision."""
        return shift_plan(replicas, routing)


def shift_plan(replicas: np.ndarray, routing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the committed interval and repeat the last one (the warm start of the next horizon)."""
    r = np.concatenate([replicas[1:], replicas[-1:]])
    x = np.concatenate([routing[1:], routing[-1:]])
    return r, x


def horizon_scales(problems: Sequence[IntervalProblem]) -> np.ndarray:
    """[4] one normalisation for the objectives of a set of interval problems (a horizon, or a
    day): each interval's ``objective_scales`` summed; TTFT, a mean, weighted by demand."""
    return day_scales(np.array([objective_scales(p) for p in problems]),
                      np.array([float(p.demand_rps.sum()) for p in problems]))


@dataclass(frozen=True, slots=True)
class HorizonEvaluation:
    """One horizon plan under the planning model."""

    objectives: np.ndarray  # [4] in OBJECTIVES order, over the horizon
    per_step: np.ndarray  # [H, 4] (TTFT: this interval's demand-weighted share of the mean)
    load_rps: np.ndarray  # [H, S, M]
    loads: np.ndarray  # [H, S, M] replicas loaded at each interval's start
    loading_kwh: float
    capacity_shortfall_rps: float  # worst load above what the loaded replicas carry
    pool_excess_gpus: float  # worst GPUs above a pool
    min_up_shortfall: int  # worst replicas released before their minimum up-time

    @property
    def feasible(self) -> bool:
        return (self.capacity_shortfall_rps <= 0 and self.pool_excess_gpus <= 0
                and self.min_up_shortfall <= 0)


def evaluate_horizon(problem: HorizonProblem, replicas: np.ndarray, routing: np.ndarray
                     ) -> HorizonEvaluation:
    """Evaluate ``replicas [H, S, M]`` and ``routing [H, M, O, S]`` under the planning model."""
    r = np.asarray(replicas, dtype=np.int64)
    x = np.asarray(routing, dtype=float)
    h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
    if r.shape != (h, n_s, n_m) or x.shape != (h, n_m, problem.n_origins, n_s):
        raise ValueError("replicas must be [H, S, M] and routing [H, M, O, S]")
    loads = problem.loads(r)
    frac = problem.loading_fraction
    total_demand = max(sum(float(p.demand_rps.sum()) for row in problem.steps for p in row),
                       1e-12)
    per_step = np.zeros((h, len(OBJECTIVES)))
    load_all = np.zeros((h, n_s, n_m))
    shortfall = 0.0
    loading_kwh_site = loads * problem.loading_kwh()[None]  # [H, S, M]
    for k in range(h):
        energy_kwh = loading_kwh_site[k].sum(axis=1)  # [S]
        for m in range(n_m):
            p = problem.steps[k][m]
            xm = x[k, m]
            load = p.demand_rps @ xm
            load_all[k, :, m] = load
            worst = p.worst_rtt_s(xm[None])[0]
            n = r[k, :, m]
            for s, table in enumerate(p.tables):
                ttft_mean, _, power = table.lookup(np.array([load[s]]), np.array([n[s]]))
                # Released replicas draw nothing here (their GPUs are other tenants').
                power_w = float(power[0]) - (table.installed - n[s]) * table.standby_w_per_replica
                energy_kwh[s] += power_w * p.interval_s * KWH_PER_WS
                per_step[k, 0] += float((p.demand_rps * xm[:, s]
                                         * (p.rtt_s[:, s] + ttft_mean[0])).sum()) / total_demand
                cap = exact_capacity_rps(p, s, int(n[s]), float(worst[s])) if n[s] > 0 else 0.0
                if n[s] > 0:
                    cap *= 1.0 - frac[s, m] * loads[k, s, m] / n[s]
                shortfall = max(shortfall, load[s] - cap * (1 + CAPACITY_TOLERANCE)
                                if load[s] > 0 else 0.0)
        p0 = problem.steps[k][0]
        per_step[k, 1] = energy_kwh @ p0.carbon_kg_per_kwh_it
        per_step[k, 2] = energy_kwh @ p0.water_l_per_kwh_it
        per_step[k, 3] = energy_kwh @ p0.cost_usd_per_kwh_it
    pool_excess = float((problem.pool_use(r) - problem.pool_gpus[None]).max())
    min_up = int((problem.must_stay(r) - r).max())
    return HorizonEvaluation(per_step.sum(axis=0), per_step, load_all, loads,
                             float(loading_kwh_site.sum()), float(shortfall), pool_excess,
                             min_up)


def horizon_score(problem: HorizonProblem, evaluation: HorizonEvaluation,
                  weights: Sequence[float] | np.ndarray) -> float:
    """The preference's weighted sum of the horizon's objectives, fixed normalisation; inf for
    an infeasible plan."""
    if not evaluation.feasible:
        return float("inf")
    return float((evaluation.objectives / problem.scales()) @ np.asarray(weights, dtype=float))


def released_tables(problem: IntervalProblem, max_replicas: Sequence[int]) -> IntervalProblem:
    """``problem`` with each site's table cut to ``max_replicas[s]`` (its pool's share) and 0 W
    for replicas not loaded (released GPUs belong to other tenants)."""
    tables = []
    caps = problem.slo_capacity_rps.copy()
    for s, (table, n_max) in enumerate(zip(problem.tables, max_replicas, strict=True)):
        n = max(1, min(int(n_max), table.installed))
        tables.append(replace(table, installed=n, ttft_mean_s=table.ttft_mean_s[:n],
                              ttft_tail_s=table.ttft_tail_s[:n],
                              power_w_per_replica=table.power_w_per_replica[:n],
                              standby_w_per_replica=0.0))
        caps[s, :, n:] = np.inf  # as IntervalProblem tabulates replicas a site does not have
    # The capacity table of a cut table is the prefix of the whole one (a running maximum over
    # counts), so it is sliced rather than tabulated again (the tabulation dominates the cost).
    out = copy.copy(problem)
    object.__setattr__(out, "tables", tuple(tables))
    object.__setattr__(out, "slo_capacity_rps", caps)
    return out


def fixed_placement(problem: HorizonProblem, routing: np.ndarray) -> np.ndarray:
    """The baselines' placement rule: in each interval the replicas the interval's routed load
    needs (the interval problem's sizing rule, ``awake_for_load``), loaded at the interval's start
    (so a replica woken for a peak pays its loading time in it), never releasing one before its
    minimum up-time, and within the pools (locked replicas first, then models in order).
    Returns ``replicas [H, S, M]``."""
    h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
    x = np.asarray(routing, dtype=float)
    need = np.zeros((h, n_s, n_m), dtype=np.int64)
    for k in range(h):
        for m in range(n_m):
            p = problem.steps[k][m]
            load = p.demand_rps @ x[k, m]
            need[k, :, m] = p.awake_for_load(load[None], p.worst_rtt_s(x[k, m][None]))[0]
    return place_within_limits(problem, need)


def place_within_limits(problem: HorizonProblem, target: np.ndarray) -> np.ndarray:
    """Replicas as close to ``target [H, S, M]`` as the lifecycle allows: interval by interval,
    the replicas that must stay up (min up-time), then the target's extra replicas while each
    pool has GPUs left (models in order)."""
    h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
    goal = np.asarray(target, dtype=np.int64)
    # A target that already keeps every replica its minimum up-time and fits the pools is its
    # own answer: each interval's replicas that must stay are then at most the target's
    # (``must_stay`` counts the interval's own loads too), and the target's extra replicas
    # fit what is left of each pool. Checked first, as the loop below costs a search's
    # placement ~20 % of its time (measured on busiest horizon 6).
    if (problem.must_stay(goal) <= goal).all() and \
            (problem.pool_use(goal) <= problem.pool_gpus[None]).all():
        return goal.copy()
    u = problem.up_intervals
    r = np.zeros((h, n_s, n_m), dtype=np.int64)
    loads = np.zeros_like(r)
    previous = problem.initial_replicas.astype(np.int64)
    for k in range(h):
        stay = problem.locked[k] + loads[max(0, k - u + 1): k].sum(axis=0)
        stay = np.minimum(stay, previous)
        r[k] = stay
        free = problem.pool_gpus.astype(float) - problem.pool_use(stay)
        for s in range(n_s):
            for m in range(n_m):
                extra = max(0, int(target[k, s, m]) - int(stay[s, m]))
                t, g = problem.gpu_type[s, m], problem.gpus_per_replica[s, m]
                fit = max(0, min(extra, int(free[s, t] // g)))
                r[k, s, m] += fit
                free[s, t] -= fit * g
        loads[k] = np.maximum(0, r[k] - previous)
        previous = r[k]
    return r
