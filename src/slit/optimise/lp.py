"""The LP reference: the linearised interval problem solved exactly with HiGHS.

Linearisation: every request served at site s costs that site's per-request energy and TTFT at
its reference operating point (all replicas awake at SLO capacity, ``reference_operating_point``),
and each site carries at most its SLO capacity for its nearest origin. Both are optimistic (a
partly loaded site keeps replicas awake for fewer requests; a far origin shrinks capacity), which
is what a reference bound should be. Sweeping the weights of the four objectives traces the LP's
Pareto front; its plans are then judged by the same surrogate model as SLIT's.
"""

from __future__ import annotations

import numpy as np
from pymoo.util.ref_dirs import get_reference_directions
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from slit.optimise.baselines import scaled_pair_costs
from slit.optimise.problem import IntervalProblem
from slit.optimise.routing import normalise_rows


def solve_lp(problem: IntervalProblem, weights: np.ndarray) -> np.ndarray:
    """Routing ``[O, S]`` minimising the weighted, scaled linear objectives subject to row sums
    of 1, residency/SLO pins and site capacity."""
    n_o, n_s = problem.n_origins, problem.n_sites
    scaled = scaled_pair_costs(problem)
    # Per-variable cost: flow of origin o = demand_o x share; costs are per unit flow.
    c = np.tensordot(np.asarray(weights, dtype=float), scaled, axes=1) * problem.demand_rps[:, None]
    allowed = problem.allowed.copy()
    allowed[~allowed.any(axis=1)] = True  # an origin pinned nowhere is judged by the SLO check
    idx = np.arange(n_o * n_s).reshape(n_o, n_s)
    rows_eq = np.repeat(np.arange(n_o), n_s)
    a_eq = coo_matrix((np.ones(n_o * n_s), (rows_eq, idx.ravel())), shape=(n_o, n_o * n_s))
    cols_ub = idx.T.ravel()  # site-major
    rows_ub = np.repeat(np.arange(n_s), n_o)
    vals_ub = np.tile(problem.demand_rps, n_s)
    a_ub = coo_matrix((vals_ub, (rows_ub, cols_ub)), shape=(n_s, n_o * n_s))
    bounds = np.where(allowed.ravel()[:, None], [0.0, 1.0], [0.0, 0.0])
    result = linprog(
        c.ravel(), A_ub=a_ub.tocsr(), b_ub=problem.max_load_rps(), A_eq=a_eq.tocsr(),
        b_eq=np.ones(n_o), bounds=bounds, method="highs",
    )
    if result.status == 2:  # infeasible: demand beyond total capacity; drop capacity rows
        result = linprog(c.ravel(), A_eq=a_eq.tocsr(), b_eq=np.ones(n_o), bounds=bounds,
                         method="highs")
    if not result.success:
        raise RuntimeError(f"HiGHS failed on the interval LP: {result.message}")
    return normalise_rows(problem, result.x.reshape(n_o, n_s))


def lp_front(problem: IntervalProblem, partitions: int = 4) -> np.ndarray:
    """LP plans ``[K, O, S]`` for every weight vector of pymoo's Das-Dennis reference
    directions with ``partitions`` partitions (duplicates removed)."""
    weights = get_reference_directions("das-dennis", 4, n_partitions=partitions)
    plans = [solve_lp(problem, w) for w in weights]
    return np.unique(np.round(np.array(plans), 9), axis=0)
