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
- capacity lost while loading, as a valid cut (``_loading_cut``): ``load + f c a <= sum_n C(n)
  u_n`` with ``f`` the loading share of the interval, ``c`` the least per-replica capacity and
  ``C(n)`` the capacity at round trip 0 (or the demand plus ``f c n``, whichever is smaller);
- objectives: mean TTFT weighted by each block's share of the horizon's demand; carbon, water,
  cost of the blocks' serving energy plus the loading energy ``a x loading_kwh`` at interval
  k's signals;
- interval cuts (``interval_cuts``, on by default): ``b_km . v_km >= B_km`` per block, with
  ``b_km . v_km`` the block's part of the horizon objective and ``B_km`` HiGHS's proven bound on
  the block solved alone;
- coupled interval cuts (``coupled_cuts``, off by default: ``coupled_time_limit_s``):
  ``sum_m b_km . v_km >= B_k`` per interval, ``B_k`` the proven bound on interval k's models
  together on the pools (``coupled_interval_bound``: a branch and bound over the pools' splits
  whose nodes are the blocks solved alone with replica caps). Valid for the same reason as the
  interval cuts: a feasible horizon point restricted to interval k meets every row of its
  blocks and its pool rows, so it is a point of the coupled interval problem (the lifecycle
  rows, dropped there, only remove points); ``sum_k B_k`` is also a bound.

Why the interval cuts are valid, and why they help. The horizon objective is linear in the
blocks' variables and the load counts: ``c . v = sum_km b_km . v_km + sum_ksm L_ksm a_ksm`` with
``b_km = (w / S) * (d_km / D, 1, 1, 1) @ block_km.objective_rows`` (``w`` the weights, ``S`` the
horizon's normalisation, ``d_km / D`` the block's share of the horizon's demand: the TTFT term
is the demand-weighted mean, each block's row its own mean; carbon, water and cost are sums)
and ``L >= 0`` the loading energy's price (``block_weights``; ``tests/test_horizon.py`` checks the
identity). Every row of block ``km`` alone is a row of the horizon model, so the horizon's
feasible set restricted to ``v_km`` lies in the block's own feasible set (the pools, lifecycle
and loading cut only remove points), on which ``b_km . v_km >= B_km``. So no feasible horizon
point violates a cut, and ``sum_km B_km`` (the loading energy dropped, ``a >= 0``) is itself a
bound. Each block alone closes in seconds where the stacked model's branch and bound, over 16
independent blocks at once, does not; with the cuts the horizon model's LP relaxation already
starts at that sum, and the solver spends its time on the coupling (pools, loading) above it.

Why it is a bound. Every horizon plan that ``evaluate_horizon`` finds feasible maps to a point of
this MILP (its routing and counts in each block, ``r`` its replicas, ``a`` its loads) whose
objectives are at most the plan's: each block only relaxes its interval problem (see
``milp.py``: lower convex envelopes, capacity per round-trip level, no "fewest replicas" rule),
the lifecycle rows are the plan's own constraints written linearly, and the capacity lost while
a replica loads enters only through a cut every such plan meets (see ``_loading_cut``).
Released replicas draw 0 W in both. So the solver's dual bound on any non-negative weighting is
at most the weighted objective of SLIT's plan and of every baseline's.

Solved with HiGHS through ``highspy`` (its own API): unlike scipy's wrapper it reports the dual
bound when no incumbent has been found, runs HiGHS's presolve (which crashes scipy's build on
some interval models), and takes a MIP start (a plan, e.g. SLIT's, as the first incumbent). The
bound is the largest of that dual bound, the LP relaxation's optimum and the blocks' bounds
summed.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import block_diag, coo_matrix, csr_matrix, hstack, vstack

from slit.optimise.horizon import HorizonProblem, released_tables
from slit.optimise.milp import (
    HIGHS_PRESOLVE,
    IntervalMilp,
    highs_lp,
    silent_highs,
    site_capacity_rps,
)
from slit.optimise.problem import OBJECTIVES

DEFAULT_HORIZON_TIME_LIMIT_S = 60.0
# Each (interval, model) block solved alone for its cut. Measured on the default scenario's
# busiest horizon (2026-11-26, load ~6 on 2 cores): with HiGHS's presolve a 70B block (944
# binaries) closes within 6-10 s, while an 8B block (3,298 binaries) spent ~9 s in presolve before
# its root and proved nothing in 10 s; without presolve the 8B block's root bound (0.7 % below
# its optimum) came at 2.4 s, but the 70B blocks then stopped 12 % below theirs. So presolve
# only for blocks up to this many binaries (either way the bound is proven; only speed differs).
DEFAULT_INTERVAL_TIME_LIMIT_S = 6.0
PRESOLVE_MAX_BINARIES = 2000
DEFAULT_COUPLED_TIME_LIMIT_S = 60.0
# HiGHS proves bounds within its feasibility/optimality tolerances (1e-7); a cut's right-hand
# side is lowered by this much (relative, plus as much absolute) so it cannot cut off a plan
# that meets the block's bound only within them.
CUT_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class HorizonMilpResult:
    bound: float  # proven lower bound on the scaled weighted sum (-inf: none proven)
    value: float  # the incumbent's objective in the model (nan if none)
    replicas: np.ndarray | None  # [H, S, M] the incumbent's
    routing: np.ndarray | None  # [H, M, O, S] the incumbent's
    solve_s: float
    status: int
    size: dict[str, int]
    interval_bound: float = -np.inf  # sum of the blocks' bounds alone (-inf: not computed)
    interval_s: float = 0.0  # seconds solving the blocks alone (part of solve_s)
    coupled_bound: float = -np.inf  # sum over intervals of the coupled interval bounds

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
                    # Capacity lost while loading (a valid cut, see _loading_cut).
                    cut = _loading_cut(problem, k, s, m)
                    if cut is not None:
                        cap_n, loss = cut
                        lcols = [base + int(lay.l0[s]) + i for i in range(lay.counts[s])]
                        add(lcols + ucols + [a_col(k, s, m)],
                            [1.0] * len(lcols) + [-float(c) for c in cap_n] + [loss],
                            -np.inf, 0.0)
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

    def block_weights(self, c_weights: np.ndarray) -> np.ndarray:
        """[H, M, 4] the weights on block (k, m)'s own ``objective_rows`` whose sum over the
        blocks is the horizon objective ``c_weights @ self.objective_rows`` without the loading
        energy: TTFT scaled by the block's share of the horizon's demand (the block's row is
        its own demand-weighted mean), carbon, water and cost as they are (sums)."""
        p = self.problem
        demand = np.array([[float(q.demand_rps.sum()) for q in row] for row in p.steps])
        share = demand / max(float(demand.sum()), 1e-12)
        out = np.broadcast_to(np.asarray(c_weights, dtype=float),
                              (p.n_steps, p.n_models, len(OBJECTIVES))).copy()
        out[..., 0] *= share
        return out

    def interval_bounds(self, c_weights: np.ndarray,
                        time_limit_s: float = DEFAULT_INTERVAL_TIME_LIMIT_S) -> IntervalBounds:
        """Each block solved alone (HiGHS, ``time_limit_s`` each): ``bound[k, m]``, a proven
        lower bound on block (k, m)'s part of the horizon objective at every feasible horizon
        point (the block's rows are a subset of the horizon model's, so the block alone has a
        larger feasible set; -inf if none proven, inf if the block is infeasible)."""
        p = self.problem
        per_block = self.block_weights(c_weights)
        bounds = np.full((p.n_steps, p.n_models), -np.inf)
        started = time.perf_counter()
        for k in range(p.n_steps):
            for m in range(p.n_models):
                block = self.blocks[k][m]
                c = per_block[k, m] @ block.objective_rows
                # Scaled to a largest cost of 1 (HiGHS flags these costs, ~1e-5, as
                # excessively small); a positive factor, so the bound scales back exactly.
                factor = float(np.abs(c).max())
                if factor <= 0:
                    bounds[k, m] = 0.0
                    continue
                solved = _highs_solve(c / factor, block.constraints, block.lo, block.hi,
                                      block.bounds.lb, block.bounds.ub, block.integrality,
                                      time_limit_s, None, 1,
                                      presolve=block.size["binaries"] <= PRESOLVE_MAX_BINARIES)
                bounds[k, m] = solved.bound * factor
        return IntervalBounds(bounds, time.perf_counter() - started)

    def coupled_interval_bound(self, k: int, c_weights: np.ndarray,
                               block_time_limit_s: float = DEFAULT_INTERVAL_TIME_LIMIT_S,
                               time_limit_s: float = DEFAULT_COUPLED_TIME_LIMIT_S
                               ) -> CoupledBound:
        """A proven lower bound on interval ``k``'s part of the horizon objective with every
        model on the shared pools (``sum_m b_km . v_km``, lifecycle and loading energy dropped):
        a best-first branch and bound over the pools' splits whose nodes are the blocks solved
        alone with per-site replica caps.

        A node is a cap ``C[s, m]`` on the replicas of each (site, model); its bound is the sum
        over models of block (k, m)'s proven bound with ``u[s, n] = 0`` for ``n > C[s, m]``.
        Where the blocks' own solutions together exceed a pool (site ``s``, GPU type ``t``),
        the node is split on the replicas ``j`` of the first model there (children: ``C[s, m1]
        = j`` for ``j = 0..C[s, m1]``, each other model capped at what the rest of the pool
        holds). Why valid: every pool-feasible point of the node has ``r[s, m1] = j`` for some
        ``j`` and then every other model within what is left, so the children cover the node's
        feasible points; a child's feasible set lies in its parent's, so it inherits the
        parent's bound for a model whose parent solution meets its caps (no solve) and a solved
        child's bound is at least its parent's. The coupled optimum is therefore at least the
        least bound over the nodes not yet split (pool-feasible leaves included), which is what
        is returned; nodes whose bound is above a pool-feasible leaf's value are dropped (that
        value is a feasible point of the coupled problem, so it is at least the optimum).
        A node whose block is infeasible under its caps holds no feasible point (bound inf)."""
        p = self.problem
        per_block = self.block_weights(c_weights)
        n_s, n_m = p.n_sites, p.n_models
        started = time.perf_counter()
        cache: dict[tuple[int, bytes], tuple[float, float, np.ndarray | None]] = {}

        def solve(m: int, caps: np.ndarray) -> tuple[float, float, np.ndarray | None]:
            key = (m, caps.tobytes())
            if key not in cache:
                block = self.blocks[k][m]
                lay = block.layout
                c = per_block[k, m] @ block.objective_rows
                factor = float(np.abs(c).max())
                if factor <= 0:
                    cache[key] = (0.0, 0.0, np.zeros(n_s, dtype=np.int64))
                    return cache[key]
                ub = block.bounds.ub.copy()
                for s in range(n_s):
                    ub[int(lay.u0[s]) + int(caps[s]) + 1: int(lay.u0[s]) + lay.counts[s] + 1] = 0
                left = time_limit_s - (time.perf_counter() - started)
                solved = _highs_solve(c / factor, block.constraints, block.lo, block.hi,
                                      block.bounds.lb, ub, block.integrality,
                                      max(1.0, min(block_time_limit_s, left)), None, 1,
                                      presolve=block.size["binaries"] <= PRESOLVE_MAX_BINARIES)
                counts = None
                if solved.x is not None:
                    counts = np.array([int(np.argmax(solved.x[int(lay.u0[s]):
                                                              int(lay.u0[s]) + lay.counts[s] + 1]))
                                       for s in range(n_s)], dtype=np.int64)
                cache[key] = (solved.bound * factor, solved.value * factor
                              if solved.x is not None else np.inf, counts)
            return cache[key]

        def evaluate(caps: np.ndarray, parent: list[tuple[float, float, np.ndarray | None]]
                     | None) -> list[tuple[float, float, np.ndarray | None]]:
            out = []
            for m in range(n_m):
                inherited = None if parent is None else parent[m]
                if inherited is not None and inherited[2] is not None \
                        and bool((inherited[2] <= caps[:, m]).all()):
                    out.append(inherited)
                else:
                    solved = solve(m, caps[:, m])
                    if inherited is not None:  # a child's set lies in its parent's
                        solved = (max(solved[0], inherited[0]), solved[1], solved[2])
                    out.append(solved)
            return out

        def conflict(parts: list[tuple[float, float, np.ndarray | None]]
                     ) -> tuple[int, int] | None:
            if any(part[2] is None for part in parts):
                return None
            r = np.stack([part[2] for part in parts], axis=1)  # type: ignore[misc]
            over = np.argwhere(p.pool_use(r) > p.pool_gpus + 1e-9)
            return None if len(over) == 0 else (int(over[0][0]), int(over[0][1]))

        root_caps = p.max_replicas.astype(np.int64).copy()
        root = evaluate(root_caps, None)
        counter = 0
        heap: list[tuple[float, int, np.ndarray, list[tuple[float, float, np.ndarray | None]]]]
        heap = [(sum(part[0] for part in root), counter, root_caps, root)]
        leaves: list[float] = []  # bounds of pool-feasible leaves and unsplittable nodes
        best_value, best_counts = np.inf, None
        nodes = 1
        closed = True
        while heap:
            bound, _, caps, parts = heap[0]
            if bound >= best_value:  # also a node with no feasible point (inf)
                heapq.heappop(heap)
                continue
            if time.perf_counter() - started >= time_limit_s:
                closed = False
                break
            heapq.heappop(heap)
            where = conflict(parts)
            if where is None:
                leaves.append(bound)
                value = sum(part[1] for part in parts)
                if all(part[2] is not None for part in parts) and value < best_value:
                    best_value = value
                    best_counts = np.stack([part[2] for part in parts], axis=1)  # type: ignore
                continue
            s, t = where
            ms = [m for m in range(n_m) if p.gpu_type[s, m] == t]
            # Split on the model with the fewest replicas allowed there: fewest children.
            first = min(ms, key=lambda m: (int(caps[s, m]), m))
            rest = [m for m in ms if m != first]
            children = []
            for j in range(int(caps[s, first]) + 1):
                child = caps.copy()
                child[s, first] = j
                free = float(p.pool_gpus[s, t]) - j * float(p.gpus_per_replica[s, first])
                if free < 0:
                    break
                for m in rest:
                    child[s, m] = min(int(caps[s, m]), int(free // p.gpus_per_replica[s, m]))
                children.append(child)
            evaluated = []
            for child in children:
                if time.perf_counter() - started >= time_limit_s:
                    break
                evaluated.append((child, evaluate(child, parts)))
            if len(evaluated) < len(children):  # out of time: the node stays open
                closed = False
                heapq.heappush(heap, (bound, counter, caps, parts))
                break
            for child, child_parts in evaluated:
                counter += 1
                nodes += 1
                heapq.heappush(heap, (sum(part[0] for part in child_parts), counter, child,
                                      child_parts))
        open_bounds = [item[0] for item in heap if item[0] < best_value]
        lower = min(open_bounds + leaves + [best_value])
        return CoupledBound(float(lower), float(best_value), best_counts, nodes,
                            closed and not open_bounds, time.perf_counter() - started,
                            np.array([part[0] for part in root]))

    def interval_cuts(self, c_weights: np.ndarray, bounds: np.ndarray
                      ) -> tuple[csr_matrix, np.ndarray]:
        """Rows ``b_km . v_km >= bound[k, m]`` (``b_km`` the block's part of the objective,
        ``block_weights``), each bound lowered by ``CUT_SLACK`` (HiGHS's tolerances), for the
        blocks with a finite bound. Valid: every feasible horizon point restricted to block
        (k, m) is a feasible point of the block alone, whose objective is at least the block's
        proven bound. So adding them removes no feasible horizon plan, and the LP relaxation
        of the horizon model with them is at least the sum of the bounds plus the loading
        energy the relaxation still charges."""
        p = self.problem
        per_block = self.block_weights(c_weights)
        rows, rhs = [], []
        for k in range(p.n_steps):
            for m in range(p.n_models):
                if not np.isfinite(bounds[k, m]):
                    continue
                row = np.zeros(self.n_var)
                base = int(self.offset[k, m])
                block = self.blocks[k][m]
                row[base: base + block.layout.n_var] = per_block[k, m] @ block.objective_rows
                rows.append(row)
                rhs.append(_cut_rhs(float(bounds[k, m])))
        if not rows:
            return csr_matrix((0, self.n_var)), np.zeros(0)
        return csr_matrix(np.array(rows)), np.array(rhs)

    def coupled_cuts(self, c_weights: np.ndarray, rhs: np.ndarray
                     ) -> tuple[csr_matrix, np.ndarray]:
        """Rows ``sum_m b_km . v_km >= rhs[k]`` (an interval's models together), for the
        intervals with a finite ``rhs`` (``coupled_interval_bound``'s bound, already lowered by
        ``_cut_rhs``). Valid: a feasible horizon point restricted to interval k's blocks and
        replicas meets every row of the blocks and interval k's pool rows (the lifecycle rows
        only remove points), so it is a point of the coupled interval problem, whose objective
        is at least its proven bound."""
        p = self.problem
        per_block = self.block_weights(c_weights)
        rows, out = [], []
        for k in range(p.n_steps):
            if not np.isfinite(rhs[k]):
                continue
            row = np.zeros(self.n_var)
            for m in range(p.n_models):
                base = int(self.offset[k, m])
                block = self.blocks[k][m]
                row[base: base + block.layout.n_var] = per_block[k, m] @ block.objective_rows
            rows.append(row)
            out.append(float(rhs[k]))
        if not rows:
            return csr_matrix((0, self.n_var)), np.zeros(0)
        return csr_matrix(np.array(rows)), np.array(out)

    def lp_bound(self, c: np.ndarray, cuts: tuple[csr_matrix, np.ndarray] | None = None
                 ) -> float:
        """The LP relaxation's optimum: a proven bound that keeps the pools and lifecycle (and
        the interval cuts, if given)."""
        a, lo, hi = self._with_cuts(cuts)
        res = milp(c, bounds=self.bounds, constraints=[LinearConstraint(a, lo, hi)],
                   options={"disp": False, "presolve": HIGHS_PRESOLVE})
        if res.status == 2:
            return np.inf
        return float(res.fun) if res.status == 0 and res.fun is not None else -np.inf

    @property
    def size(self) -> dict[str, int]:
        return {"variables": self.n_var, "integers": int(self.integrality.sum()),
                "constraints": int(self.constraints.shape[0])}

    def start_values(self, replicas: np.ndarray, routing: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """A MIP start from a horizon plan: its integer columns (replicas, each block's count
        and routed-level binaries) as ``(indices, values)``; HiGHS completes the rest."""
        p = self.problem
        idx: list[int] = []
        val: list[float] = []
        for k in range(p.n_steps):
            for m in range(p.n_models):
                lay = self.blocks[k][m].layout
                base = int(self.offset[k, m])
                levels = lay.levels_routed(np.asarray(routing[k, m]))
                idx.extend(base + int(lay.w0[0]) + np.arange(len(levels)))
                val.extend(levels.tolist())
                for s in range(p.n_sites):
                    n = int(min(replicas[k, s, m], lay.counts[s]))
                    idx.extend(base + int(lay.u0[s]) + np.arange(lay.counts[s] + 1))
                    val.extend((np.arange(lay.counts[s] + 1) == n).astype(float).tolist())
                    idx.append(self.r_col(k, s, m))
                    val.append(float(n))
        return np.array(idx, dtype=np.int32), np.array(val)

    def _with_cuts(self, cuts: tuple[csr_matrix, np.ndarray] | None
                   ) -> tuple[csr_matrix, np.ndarray, np.ndarray]:
        if cuts is None or cuts[0].shape[0] == 0:
            return self.constraints, self.lo, self.hi
        a = vstack([self.constraints, cuts[0]], format="csr")
        return (a, np.concatenate([self.lo, cuts[1]]),
                np.concatenate([self.hi, np.full(len(cuts[1]), np.inf)]))

    def solve_weighted(self, weights: np.ndarray, scales: np.ndarray | None = None,
                       time_limit_s: float = DEFAULT_HORIZON_TIME_LIMIT_S,
                       start: tuple[np.ndarray, np.ndarray] | None = None,
                       threads: int = 1,
                       interval_time_limit_s: float | None = DEFAULT_INTERVAL_TIME_LIMIT_S,
                       coupled_time_limit_s: float | None = None
                       ) -> HorizonMilpResult:
        """Bound on ``sum_i weights[i] f_i / scales[i]`` (default scales: the problem's fixed
        normalisation) over every feasible horizon plan. ``start``: a plan ``(replicas,
        routing)`` given to HiGHS as its first incumbent (prunes the search; the bound does not
        depend on it being any good). ``interval_time_limit_s``: first solve every block alone
        with that limit and add its bound as a cut (``interval_cuts``); None: no cuts. The
        blocks' solves are not counted in ``time_limit_s`` (``interval_s`` reports them).
        ``coupled_time_limit_s`` (with ``interval_time_limit_s``): each interval's models
        solved together on the pools instead (``coupled_interval_bound``, that long per
        interval, its blocks ``interval_time_limit_s`` each), each interval's bound a cut
        (``coupled_cuts``) besides the blocks' own, and their sum one more bound."""
        p = self.problem
        scales = p.scales() if scales is None else np.asarray(scales)
        c_weights = np.asarray(weights, dtype=float) / scales
        c = c_weights @ self.objective_rows
        started = time.perf_counter()
        cuts = None
        interval_bound, interval_s, coupled_bound = -np.inf, 0.0, -np.inf
        if interval_time_limit_s is not None:
            coupled = None
            if coupled_time_limit_s is not None:
                coupled = [self.coupled_interval_bound(k, c_weights, interval_time_limit_s,
                                                       coupled_time_limit_s)
                           for k in range(p.n_steps)]
                alone = IntervalBounds(np.stack([cb.block_bounds for cb in coupled]),
                                       sum(cb.solve_s for cb in coupled))
            else:
                alone = self.interval_bounds(c_weights, interval_time_limit_s)
            interval_s = alone.solve_s
            if np.any(alone.bound == np.inf) or (
                    coupled is not None and any(cb.bound == np.inf for cb in coupled)):
                return HorizonMilpResult(np.inf, float("nan"), None, None,
                                         time.perf_counter() - started, 2, self.size,
                                         interval_bound=np.inf, interval_s=interval_s,
                                         coupled_bound=np.inf)
            interval_bound = float(sum(_cut_rhs(float(b)) for b in alone.bound.ravel()))
            cuts = self.interval_cuts(c_weights, alone.bound)
            if coupled is not None:
                rhs = np.array([_cut_rhs(cb.bound, p.n_models) for cb in coupled])
                coupled_bound = float(rhs.sum())
                extra = self.coupled_cuts(c_weights, rhs)
                cuts = (vstack([cuts[0], extra[0]], format="csr"),
                        np.concatenate([cuts[1], extra[1]]))
        clock = time.perf_counter()
        # The LP relaxation first (it keeps the coupling and needs no incumbent), then the
        # coupled model through HiGHS's own API, which reports its dual bound whether or not
        # it has found an incumbent (scipy's wrapper does not).
        # The LP relaxation without the cuts (the LP with them took minutes on the stacked
        # model) is kept as one more proven bound: on the busiest horizons 9-11 the model
        # without cuts (its LP or HiGHS's dual bound, 40 s) proved 0.1-1.4 % more than the
        # blocks' 6 s bounds summed, and the solve with the cuts added nothing to that sum.
        lp = self.lp_bound(c)
        if lp == np.inf:
            return HorizonMilpResult(np.inf, float("nan"), None, None,
                                     time.perf_counter() - started, 2, self.size,
                                     interval_bound=interval_bound, interval_s=interval_s,
                                     coupled_bound=coupled_bound)
        a, lo, hi = self._with_cuts(cuts)
        solved = _highs_solve(c, a, lo, hi, self.bounds.lb,
                              self.bounds.ub, self.integrality,
                              max(1.0, time_limit_s - (time.perf_counter() - clock)),
                              None if start is None else self.start_values(*start), threads)
        solve_s = time.perf_counter() - started
        # Every term is a proven lower bound on the same objective (the interval bounds' sum
        # leaves out the loading energy, which is >= 0): the largest is the bound.
        bound = (np.inf if solved.status == 2
                 else max(solved.bound, lp, interval_bound, coupled_bound))
        replicas = routing = None
        if solved.x is not None:
            h, n_s, n_m, n_o = p.n_steps, p.n_sites, p.n_models, p.n_origins
            replicas = np.array([[[round(solved.x[self.r_col(k, s, m)]) for m in range(n_m)]
                                  for s in range(n_s)] for k in range(h)], dtype=np.int64)
            routing = np.zeros((h, n_m, n_o, n_s))
            for k in range(h):
                for m in range(n_m):
                    base = int(self.offset[k, m])
                    routing[k, m] = solved.x[base: base + n_o * n_s].reshape(n_o, n_s)
        return HorizonMilpResult(bound, solved.value, replicas, routing, solve_s,
                                 solved.status, self.size, interval_bound=interval_bound,
                                 interval_s=interval_s, coupled_bound=coupled_bound)


@dataclass(frozen=True, slots=True)
class CoupledBound:
    """``HorizonMilp.coupled_interval_bound``'s result for one interval."""

    bound: float  # proven lower bound on the interval's part, all models on the pools
    value: float  # best pool-feasible point found (the model's objective; inf: none)
    counts: np.ndarray | None  # [S, M] its replicas
    nodes: int
    closed: bool  # every node split or pruned (bound = value up to the blocks' own gaps)
    solve_s: float
    block_bounds: np.ndarray  # [M] each block's bound alone (the root: no caps)


@dataclass(frozen=True, slots=True)
class IntervalBounds:
    bound: np.ndarray  # [H, M] proven bound on each block's part of the objective
    solve_s: float


def _cut_rhs(bound: float, terms: int = 1) -> float:
    """A proven bound lowered by HiGHS's tolerances (``CUT_SLACK`` relative plus absolute, per
    block solve it sums: ``terms``), so a cut never removes a plan that meets the bound only
    within them."""
    if not np.isfinite(bound):
        return bound
    return bound - CUT_SLACK * (abs(bound) + float(terms))


@dataclass(frozen=True, slots=True)
class _Solved:
    bound: float  # HiGHS's dual bound (-inf when it proved none)
    value: float  # incumbent objective (nan if none)
    x: np.ndarray | None
    status: int  # as scipy.optimize.milp: 0 optimal, 1 limit reached, 2 infeasible, 4 other


def _highs_solve(c: np.ndarray, a: csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray,
                 col_lo: np.ndarray, col_hi: np.ndarray, integrality: np.ndarray,
                 time_limit_s: float, start: tuple[np.ndarray, np.ndarray] | None,
                 threads: int, presolve: bool = True) -> _Solved:
    """One MILP through ``highspy`` (HiGHS's own API, with its presolve unless ``presolve`` is
    False: the scipy build's presolve crash does not occur in highspy's newer HiGHS)."""
    import highspy

    lp = highs_lp(c, a, row_lo, row_hi, col_lo, col_hi, integrality)
    solver = silent_highs()
    solver.setOptionValue("time_limit", float(time_limit_s))
    solver.setOptionValue("threads", int(threads))
    solver.setOptionValue("random_seed", 0)
    if not presolve:
        solver.setOptionValue("presolve", "off")
    solver.passModel(lp)
    if start is not None:
        solver.setSolution(len(start[0]), start[0], start[1])
    solver.run()
    status = solver.getModelStatus()
    info = solver.getInfo()
    ms = highspy.HighsModelStatus
    if status == ms.kInfeasible:
        return _Solved(np.inf, float("nan"), None, 2)
    has_x = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.array(solver.getSolution().col_value) if has_x else None
    value = float(info.objective_function_value) if has_x else float("nan")
    bound = float(info.mip_dual_bound)
    if not np.isfinite(bound):
        bound = -np.inf
    if status == ms.kOptimal and has_x:
        bound = min(bound, value) if np.isfinite(bound) else value
        return _Solved(bound, value, x, 0)
    return _Solved(bound, value, x, 1 if status in (ms.kTimeLimit, ms.kIterationLimit,
                                                     ms.kSolutionLimit, ms.kInterrupt)
                   else 4)


def _loading_cut(problem: HorizonProblem, k: int, s: int, m: int
                 ) -> tuple[np.ndarray, float] | None:
    """``load + f c a <= sum_n C(n) u_n`` for (interval k, site s, model m): ``a`` replicas
    loaded at k's start serve nothing for the share ``f`` of it, so with ``n`` replicas a plan
    carries at most ``cap(n) (1 - f a / n)`` (``evaluate_horizon``'s rule), ``cap`` at its worst
    round trip, at most ``cap0`` (round trip 0). With ``c = min_n cap0(n) / n``, ``load + f c a
    <= cap0(n)``; with ``D`` the demand that may go there and ``a <= n``, also ``<= D + f c n``:
    ``C(n)`` is the smaller. Returns ``(C [N + 1], f c)``, or None when nothing is lost."""
    p = problem.steps[k][m]
    frac = float(problem.loading_fraction[s, m])
    if frac <= 0:
        return None
    demand = float(p.demand_rps.sum())
    cap0 = site_capacity_rps(p, s, 0.0, np.inf)
    n = np.arange(len(cap0))
    per = cap0[1:] / n[1:]
    per_replica = float(per[np.isfinite(per)].min()) if np.isfinite(per).any() else 0.0
    if per_replica <= 0:
        return None
    loss = frac * per_replica
    return np.minimum(cap0, demand + loss * n), loss


def horizon_bound(problem: HorizonProblem, weights: np.ndarray,
                  time_limit_s: float = DEFAULT_HORIZON_TIME_LIMIT_S) -> HorizonMilpResult:
    """The proven lower bound on the preference's weighted sum (the problem's normalisation)."""
    return HorizonMilp(problem).solve_weighted(weights, time_limit_s=time_limit_s)
