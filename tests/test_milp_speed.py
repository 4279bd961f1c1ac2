"""The milp policy's shortcut (an integral LP relaxation is the MILP's optimum) never gives a
worse plan than the branch and bound it skips, and leaves the other solves untouched."""

from __future__ import annotations

import numpy as np
import pytest
from test_milp import small_problem

import slit.optimise.milp as milp
from slit.optimise.baselines import objective_scales
from slit.optimise.milp import IntervalMilp, milp_plan
from slit.optimise.preference import Preference
from slit.optimise.problem import evaluate_plans

# (seed, origins, sites, load): on the first two the relaxation is integral (the shortcut
# answers), on the last two it is not (the MIP runs as before).
INSTANCES = [(0, 3, 2, 0.2), (4, 2, 1, 0.3), (2, 3, 2, 0.2), (1, 4, 3, 0.5)]


def _score(problem, plan: np.ndarray, weights: np.ndarray) -> float:
    ev = evaluate_plans(problem, plan)
    assert ev.slo_violation_s[0] <= 0
    return float((ev.objectives[0] / objective_scales(problem)) @ weights)


@pytest.mark.parametrize("instance", INSTANCES)
def test_shortcut_plan_is_at_least_as_good_as_the_branch_and_bound(
        instance: tuple[int, int, int, float], monkeypatch: pytest.MonkeyPatch) -> None:
    problem = small_problem(*instance)
    preference = Preference()
    weights = np.asarray(preference.weights, dtype=float)
    taken: list[bool] = []
    shortcut = IntervalMilp._integral_relaxation

    def spy(self: IntervalMilp, *args: object) -> object:
        out = shortcut(self, *args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(IntervalMilp, "_integral_relaxation", spy)
    fast = milp_plan(problem, preference)
    monkeypatch.setattr(IntervalMilp, "_integral_relaxation", lambda self, *args: None)
    full = milp_plan(problem, preference)
    assert taken == [instance in INSTANCES[:2]]
    if taken[0]:
        # Proven optimal: never above the branch and bound's plan (to the polish's margins).
        assert _score(problem, fast, weights) <= _score(problem, full, weights) * (1 + 1e-9)
    else:
        np.testing.assert_array_equal(fast, full)


def test_shortcut_bound_is_the_proven_optimum() -> None:
    """Where the relaxation is integral, its value is the MILP's optimum: HiGHS's branch and
    bound solved to optimality finds the same value."""
    problem = small_problem(*INSTANCES[0])
    model = IntervalMilp.build(problem)
    weights = np.asarray(Preference().weights, dtype=float)
    fast = model.solve_weighted(weights, objective_scales(problem))
    assert fast.status == 0 and fast.bound == fast.value
    c = (weights / objective_scales(problem)) @ model.objective_rows
    exact = milp._highs(c, model.constraints, model.lo, model.hi, model.bounds.lb,
                        model.bounds.ub, model.integrality, 30.0, None, 1e-9, None)
    assert exact.status == 0
    assert fast.value == pytest.approx(exact.value, rel=1e-7, abs=1e-9)
