"""pymoo operators for routing matrices: the problem wrapper, repair, crossover and mutation.

Encoding: the routing matrix flattened (origins x sites), values in [0, 1]. Variation works on
whole origin rows (a row is one origin's routing decision). Every candidate is repaired
(allowed pairs, rows summing to 1, site capacity) before evaluation, and the SLO is a constraint
(worst pair tail TTFT minus the planning SLO <= 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from slit.optimise.local_search import fast_evaluate
from slit.optimise.problem import IntervalProblem
from slit.optimise.routing import repair


class RoutingProblem(Problem):
    """The interval problem as pymoo sees it: 4 objectives, one SLO constraint."""

    def __init__(self, problem: IntervalProblem) -> None:
        self.interval = problem
        n_var = problem.n_origins * problem.n_sites
        super().__init__(n_var=n_var, n_obj=4, n_ieq_constr=1, xl=0.0, xu=1.0)

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        plans = x.reshape(-1, self.interval.n_origins, self.interval.n_sites)
        # The same model as evaluate_plans, one table gather for all sites (faster per plan).
        objectives, violation, _, _ = fast_evaluate(self.interval, plans)
        out["F"] = objectives
        out["G"] = violation[:, None]


class RoutingRepair(Repair):
    """``slit.optimise.routing.repair`` on every candidate pymoo creates."""

    def _do(self, problem: RoutingProblem, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        p = problem.interval
        plans = repair(p, X.reshape(-1, p.n_origins, p.n_sites))
        return plans.reshape(len(X), -1)


class RowCrossover(Crossover):
    """Children take each origin's whole row from one parent or the other."""

    def __init__(self, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)

    def _do(self, problem: RoutingProblem, X: np.ndarray, *args: Any,
            random_state: np.random.Generator, **kwargs: Any) -> np.ndarray:
        p = problem.interval
        _, n_matings, _ = X.shape
        a = X[0].reshape(n_matings, p.n_origins, p.n_sites)
        b = X[1].reshape(n_matings, p.n_origins, p.n_sites)
        take_a = random_state.random((n_matings, p.n_origins, 1)) < 0.5
        first = np.where(take_a, a, b)
        second = np.where(take_a, b, a)
        return np.stack([first, second]).reshape(2, n_matings, -1)


class ShiftMutation(Mutation):
    """Move a random part of a few origins' share from one site to another allowed site."""

    def _do(self, problem: RoutingProblem, X: np.ndarray, *args: Any,
            random_state: np.random.Generator, **kwargs: Any) -> np.ndarray:
        p = problem.interval
        plans = X.reshape(len(X), p.n_origins, p.n_sites).copy()
        allowed = p.allowed
        for i in range(len(plans)):
            n_rows = random_state.integers(1, min(3, p.n_origins) + 1)
            for o in random_state.choice(p.n_origins, size=n_rows, replace=False):
                sites = np.flatnonzero(allowed[o])
                if len(sites) < 2:
                    continue
                row = plans[i, o]
                holders = sites[row[sites] > 0]
                source = random_state.choice(holders if len(holders) else sites)
                target = random_state.choice(sites[sites != source])
                moved = row[source] * random_state.uniform(0.2, 1.0)
                row[source] -= moved
                row[target] += moved
        return plans.reshape(len(X), -1)
