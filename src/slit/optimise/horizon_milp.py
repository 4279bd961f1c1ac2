"""The horizon problem as one MILP: a proven lower bound on every horizon plan.

One interval MILP (``milp.IntervalMilp``) per (interval k, model m), each on its interval
problem with released replicas at 0 W, stacked block-diagonally, coupled by lifecycle columns
per (k, site s, model m):

- ``r[k, s, m]`` integer in [0, N]: replicas loaded, tied to the block's count binaries:
  ``r = sum_n n u[s, n]``;
- ``a[k, s, m] >= 0``: replicas loaded at the start of k: ``a[k] >= r[k] - r[k - 1]``
  (``r[-1]`` the current state, a constant);

and rows:

- pools: ``sum_m gpus_per_replica[s, m] r[k, s, m] <= pool_gpus[s, t]`` per GPU type ``t``;
- minimum up-time: ``r[k] >= sum_{j = k - U + 1}^{k} a[j] + locked[k]`` with
  ``U = ceil(min_up_s / interval_s)`` and ``locked`` the current replicas still younger than it;
- objectives: mean TTFT weighted by each block's share of the horizon's demand; carbon, water,
  cost of the blocks' serving energy plus the loading energy ``a x loading_kwh`` at interval
  k's signals.

Why it is a bound. Every horizon plan that ``evaluate_horizon`` finds feasible maps to a point of
this MILP (its routing and counts in each block, ``r`` its replicas, ``a`` its loads) whose
objectives are at most the plan's: each block only relaxes its interval problem (see
``milp.py``: lower convex envelopes, capacity per round-trip level, no "fewest replicas" rule),
the lifecycle rows are the plan's own constraints written linearly, and the capacity lost while
a replica loads is left out (the MILP lets a loading replica serve: a larger feasible set).
Released replicas draw 0 W in both. So the solver's dual bound on any non-negative weighting is
at most the weighted objective of SLIT's plan and of every baseline's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import block_diag, coo_matrix, csr_matrix, hstack, vstack

from slit.optimise.horizon import HorizonProblem, released_tables
from slit.optimise.milp import HIGHS_PRESOLVE, IntervalMilp, proven_bound
from slit.optimise.problem import OBJECTIVES

DEFAULT_HORIZON_TIME_LIMIT_S = 60.0


@dataclass(frozen=True, slots=True)
class HorizonMilpResult:
    bound: float  # proven lower bound on the scaled weighted sum (-inf: none proven)
    value: float  # the incumbent's objective in the model (nan if none)
    replicas: np.ndarray | None  # [H, S, M] the incumbent's
    routing: np.ndarray | None  # [H, M, O, S] the incumbent's
    solve_s: float
    status: int
    size: dict[str, int]

    @property
    def gap(self) -> float:
        if not np.isfinite(self.value) or not np.isfinite(self.bound):
            return float("inf")
        return (self.value - self.bound) / max(abs(self.value), 1e-12)


class HorizonMilp:
    """The stacked MILP of a horizon problem, built once."""

    def __init__(self, problem: HorizonProblem) -> None:
        self.problem = problem
        h, n_s, n_m = problem.n_steps, problem.n_sites, problem.n_models
        self.blocks: list[list[IntervalMilp]] = [
            [IntervalMilp.build(released_tables(p, [t.installed for t in p.tables]))
             for p in row] for row in problem.steps]
        flat = [b for row in self.blocks for b in row]
        offsets = np.cumsum([0] + [b.layout.n_var for b in flat])
        self.offset = offsets[:-1].reshape(h, n_m)
        n_block = int(offsets[-1])
        n_max = problem.max_replicas  # [S, M]
        # r then a, each indexed [k, s, m]
        r0 = n_block
        a0 = r0 + h * n_s * n_m
        n_var = a0 + h * n_s * n_m

        def r_col(k: int, s: int, m: int) -> int:
            return r0 + (k * n_s + s) * n_m + m

        def a_col(k: int, s: int, m: int) -> int:
            return a0 + (k * n_s + s) * n_m + m

        self.r_col, self.a_col = r_col, a_col
        self.blocks_end = n_block
        rows_r: list[int] = []
        rows_c: list[int] = []
        rows_v: list[float] = []
        lo: list[float] = []
        hi: list[float] = []

        def add(cols: list[int], vals: list[float], low: float, high: float) -> None:
            row = len(lo)
            rows_r.extend([row] * len(cols))
            rows_c.extend(cols)
            rows_v.extend(vals)
            lo.append(low)
            hi.append(high)

        u = problem.up_intervals
        for k in range(h):
            for s in range(n_s):
                for m in range(n_m):
                    lay = self.blocks[k][m].layout
                    base = int(self.offset[k, m])
                    counts = np.arange(lay.counts[s] + 1)
                    ucols = [base + int(lay.u0[s]) + int(c) for c in counts]
                    add(ucols + [r_col(k, s, m)], [float(c) for c in counts] + [-1.0], 0.0, 0.0)
                    # a[k] - r[k] + r[k-1] >= 0
                    if k == 0:
                        add([a_col(k, s, m), r_col(k, s, m)], [1.0, -1.0],
                            -float(problem.initial_replicas[s, m]), np.inf)
                    else:
                        add([a_col(k, s, m), r_col(k, s, m), r_col(k - 1, s, m)],
                            [1.0, -1.0, 1.0], 0.0, np.inf)
                    window = list(range(max(0, k - u + 1), k + 1))
                    add([r_col(k, s, m)] + [a_col(j, s, m) for j in window],
                        [1.0] + [-1.0] * len(window), float(problem.locked[k, s, m]), np.inf)
                for t in range(problem.pool_gpus.shape[1]):
                    ms = [m for m in range(n_m) if problem.gpu_type[s, m] == t]
                    if ms:
                        add([r_col(k, s, m) for m in ms],
                            [float(problem.gpus_per_replica[s, m]) for m in ms],
                            -np.inf, float(problem.pool_gpus[s, t]))
        coupling = coo_matrix((rows_v, (rows_r, rows_c)), shape=(len(lo), n_var)).tocsr()
        stacked = block_diag([b.constraints for b in flat], format="csr")
        stacked = hstack([stacked, csr_matrix((stacked.shape[0], n_var - n_block))],
                         format="csr")
        self.constraints = vstack([stacked, coupling], format="csr")
        self.lo = np.concatenate([np.concatenate([b.lo for b in flat]), lo])
        self.hi = np.concatenate([np.concatenate([b.hi for b in flat]), hi])
        lb = np.concatenate([b.bounds.lb for b in flat] + [np.zeros(n_var - n_block)])
        ub = np.concatenate([b.bounds.ub for b in flat]
                            + [np.broadcast_to(n_max[None], (h, n_s, n_m)).ravel().astype(float),
                               np.full(h * n_s * n_m, np.inf)])
        self.bounds = Bounds(lb, ub)
        self.integrality = np.concatenate([b.integrality for b in flat]
                                          + [np.ones(h * n_s * n_m), np.zeros(h * n_s * n_m)])
        demand = np.array([[float(p.demand_rps.sum()) for p in row] for row in problem.steps])
        total = max(float(demand.sum()), 1e-12)
        objective = np.zeros((len(OBJECTIVES), n_var))
        for k in range(h):
            for m in range(n_m):
                base = int(self.offset[k, m])
                block = self.blocks[k][m].objective_rows
                objective[0, base: base + block.shape[1]] = block[0] * demand[k, m] / total
                objective[1:, base: base + block.shape[1]] = block[1:]
            p = problem.steps[k][0]
            per_kwh = np.stack([p.carbon_kg_per_kwh_it, p.water_l_per_kwh_it,
                                p.cost_usd_per_kwh_it])
            for s in range(n_s):
                for m in range(n_m):
                    objective[1:, a_col(k, s, m)] = per_kwh[:, s] * problem.loading_kwh()[s, m]
        self.objective_rows = objective
        self.n_var = n_var

    def decomposed_bound(self, c: np.ndarray, time_limit_s: float) -> float:
        """A weaker proven bound: the coupling rows (pools, lifecycle) dropped, the model
        separates into its blocks; the sum of their bounds bounds the whole. Valid only when
        the loading terms cost nothing negative (dropping them then only lowers the cost);
        -inf otherwise."""
        lifecycle = c[self.blocks_end:]
        if (lifecycle < 0).any():
            return -np.inf
        flat = [b for row in self.blocks for b in row]
        offsets = self.offset.ravel()
        per_block = time_limit_s / max(len(flat), 1)
        total = 0.0
        for block, base in zip(flat, offsets, strict=True):
            total += _block_bound(c[int(base): int(base) + block.layout.n_var], block, per_block)
        return total

    def lp_bound(self, c: np.ndarray) -> float:
        """The LP relaxation's optimum: a proven bound that keeps the pools and lifecycle."""
        res = milp(c, bounds=self.bounds,
                   constraints=[LinearConstraint(self.constraints, self.lo, self.hi)],
                   options={"disp": False, "presolve": HIGHS_PRESOLVE})
        if res.status == 2:
            return np.inf
        return float(res.fun) if res.status == 0 and res.fun is not None else -np.inf

    @property
    def size(self) -> dict[str, int]:
        return {"variables": self.n_var, "integers": int(self.integrality.sum()),
                "constraints": int(self.constraints.shape[0])}

    def solve_weighted(self, weights: np.ndarray, scales: np.ndarray | None = None,
                       time_limit_s: float = DEFAULT_HORIZON_TIME_LIMIT_S) -> HorizonMilpResult:
        """Bound on ``sum_i weights[i] f_i / scales[i]`` (default scales: the problem's fixed
        normalisation) over every feasible horizon plan."""
        p = self.problem
        scales = p.scales() if scales is None else np.asarray(scales)
        c = (np.asarray(weights, dtype=float) / scales) @ self.objective_rows
        started = time.perf_counter()
        # Bounds that need no incumbent first: the LP relaxation (keeps the coupling) and the
        # blocks on their own (half the time; integer but uncoupled); then the coupled model,
        # whose dual bound scipy does not report when HiGHS has found no incumbent.
        split = max(self.decomposed_bound(c, 0.5 * time_limit_s), self.lp_bound(c))
        res = milp(c, integrality=self.integrality, bounds=self.bounds,
                   constraints=[LinearConstraint(self.constraints, self.lo, self.hi)],
                   options={"time_limit": max(1.0, time_limit_s - (time.perf_counter()
                                                                   - started)),
                            "disp": False, "presolve": HIGHS_PRESOLVE})
        solve_s = time.perf_counter() - started
        bound = proven_bound(res)
        if res.status != 2:
            bound = max(bound, split)
        replicas = routing = None
        value = float("nan")
        if res.x is not None:
            value = float(res.fun)
            h, n_s, n_m, n_o = p.n_steps, p.n_sites, p.n_models, p.n_origins
            replicas = np.array([[[round(res.x[self.r_col(k, s, m)]) for m in range(n_m)]
                                  for s in range(n_s)] for k in range(h)], dtype=np.int64)
            routing = np.zeros((h, n_m, n_o, n_s))
            for k in range(h):
                for m in range(n_m):
                    base = int(self.offset[k, m])
                    routing[k, m] = res.x[base: base + n_o * n_s].reshape(n_o, n_s)
        return HorizonMilpResult(bound, value, replicas, routing, solve_s, int(res.status),
                                 self.size)


def _block_bound(c: np.ndarray, block: IntervalMilp, time_limit_s: float) -> float:
    res = milp(c, integrality=block.integrality, bounds=block.bounds,
               constraints=[LinearConstraint(block.constraints, block.lo, block.hi)],
               options={"time_limit": max(0.5, time_limit_s), "disp": False,
                        "presolve": HIGHS_PRESOLVE})
    return proven_bound(res)


def horizon_bound(problem: HorizonProblem, weights: np.ndarray,
                  time_limit_s: float = DEFAULT_HORIZON_TIME_LIMIT_S) -> HorizonMilpResult:
    """The proven lower bound on the preference's weighted sum (the problem's normalisation)."""
    return HorizonMilp(problem).solve_weighted(weights, time_limit_s=time_limit_s)
