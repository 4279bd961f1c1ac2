"""The interval MILP: its bound is below every feasible plan, its plan is feasible."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimise_helpers import queue_table
from pymoo.util.ref_dirs import get_reference_directions

from slit.optimise.baselines import BASELINES, objective_scales
from slit.optimise.metaheuristic import SearchSettings, plan_interval
from slit.optimise.milp import IntervalMilp, milp_plan
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.routing import repair
from slit.optimise.site_table import SiteServingTable

TIME_LIMIT_S = 5.0
TOL = 1e-6


def small_problem(seed: int, n_origins: int, n_sites: int, load: float) -> IntervalProblem:
    """A random instance; ``load`` is demand relative to the fleet's total capacity."""
    rng = np.random.default_rng(seed)
    installed = rng.integers(1, 5, n_sites)
    tables = tuple(
        queue_table(int(n), float(rng.uniform(1.0, 3.0)), base_ttft_s=float(rng.uniform(0.1, 0.3)),
                    idle_w=float(rng.uniform(500, 1500)), busy_w=float(rng.uniform(2000, 4000)))
        for n in installed
    )
    demand = rng.uniform(0.2, 1.0, n_origins)
    demand *= load * 2.0 * installed.sum() / demand.sum()
    allowed = rng.random((n_origins, n_sites)) < 0.8
    allowed[np.arange(n_origins), rng.integers(0, n_sites, n_origins)] = True
    return IntervalProblem(
        origin_ids=tuple(f"o{i}" for i in range(n_origins)),
        site_ids=tuple(f"s{i}" for i in range(n_sites)),
        demand_rps=demand, rtt_s=rng.uniform(0.005, 0.4, (n_origins, n_sites)),
        allowed=allowed, tables=tables,
        carbon_kg_per_kwh_it=rng.uniform(0.02, 0.8, n_sites),
        water_l_per_kwh_it=rng.uniform(0.5, 5.0, n_sites),
        cost_usd_per_kwh_it=rng.uniform(0.02, 0.2, n_sites),
        interval_s=900.0, planning_slo_ttft_s=2.0,
    )


def tried_plans(problem: IntervalProblem, seed: int) -> np.ndarray:
    """Random plans, every baseline, and SLIT's front (short search)."""
    rng = np.random.default_rng(seed)
    alpha = np.where(problem.allowed, 0.5, 1e-9)
    random_plans = np.stack([np.stack([rng.dirichlet(a) for a in alpha]) for _ in range(30)])
    random_plans = np.where(problem.allowed, random_plans, 0.0)
    random_plans /= random_plans.sum(axis=2, keepdims=True)
    baselines = np.stack([policy(problem) for policy in BASELINES.values()])
    front = plan_interval(problem, settings=SearchSettings(population=16, generations=4,
                                                           local_rounds=2), seed=seed)
    return np.concatenate([random_plans, repair(problem, random_plans), baselines,
                           front.front_routing])


problems = st.builds(small_problem, st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 3),
                     st.floats(0.1, 0.9))
weights = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda w: sum(w) > 0.05)
# derandomize: CI runs exactly the instances checked here (HiGHS has crashed on rare inputs,
# see docs/scheduler.md), and a failure is reproducible.
hsettings = settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@hsettings
@given(problem=problems, w=weights)
def test_every_feasible_plan_is_inside_the_model(problem: IntervalProblem, w: list[float]) -> None:
    """The relaxation argument itself: a feasible plan's exact description satisfies every MILP
    row, and the MILP's objectives there are at most its true objectives."""
    model = IntervalMilp.build(problem)
    plans = tried_plans(problem, 0)
    ev = evaluate_plans(problem, plans)
    for plan, f, violation in zip(plans, ev.objectives, ev.slo_violation_s, strict=True):
        if violation > 0:
            continue
        v = model.describe(plan)
        a_v = model.constraints @ v
        scale = np.maximum(1.0, np.abs(model.lo.clip(-1e9, 1e9)))
        assert (a_v >= model.lo - TOL * scale).all()
        assert (a_v <= model.hi + TOL * np.maximum(1.0, np.abs(model.hi.clip(-1e9, 1e9)))).all()
        assert (model.objective_rows @ v <= f + TOL * np.maximum(1.0, np.abs(f))).all()


@hsettings
@given(problem=problems, w=weights)
def test_weighted_bound_below_every_feasible_plan(problem: IntervalProblem, w: list[float]
                                                  ) -> None:
    scales = objective_scales(problem)
    model = IntervalMilp.build(problem)
    result = model.solve_weighted(np.array(w), scales, TIME_LIMIT_S)
    plans = tried_plans(problem, 1)
    ev = evaluate_plans(problem, plans)
    scores = (ev.objectives / scales) @ np.array(w)
    feasible = ev.slo_violation_s <= 0
    if feasible.any():
        assert result.bound <= scores[feasible].min() + TOL * max(1.0, abs(result.bound))
        # A problem with a feasible plan has a MILP plan, and it is feasible too.
        assert result.routing is not None
        mine = evaluate_plans(problem, result.routing)
        assert mine.slo_violation_s[0] <= 0
        assert ((mine.objectives[0] / scales) @ np.array(w)
                >= result.bound - TOL * max(1.0, abs(result.bound)))
        np.testing.assert_allclose(result.routing.sum(axis=1), 1.0)
        assert (result.routing[~problem.allowed] == 0).all()


@hsettings
@given(problem=problems, minimise=st.integers(0, 3), constrained=st.integers(0, 3),
       slack=st.floats(1.0, 1.5))
def test_epsilon_bound_below_every_feasible_plan_within_the_caps(
    problem: IntervalProblem, minimise: int, constrained: int, slack: float
) -> None:
    plans = tried_plans(problem, 2)
    ev = evaluate_plans(problem, plans)
    feasible = ev.slo_violation_s <= 0
    if not feasible.any():
        return
    caps = np.full(4, np.inf)
    caps[constrained] = float(np.median(ev.objectives[feasible, constrained])) * slack
    within = feasible & (ev.objectives[:, constrained] <= caps[constrained])
    result = IntervalMilp.build(problem).solve_epsilon(minimise, caps, TIME_LIMIT_S)
    best = ev.objectives[within, minimise].min()
    assert result.bound <= best + TOL * max(1.0, abs(best))


def test_bound_is_tight_where_the_model_is_linear() -> None:
    """Two identical sites with power linear in load and one origin: the MILP's plan meets its
    own bound (no relaxation gap), and it is the plan that sleeps the dirtier site."""
    problem = small_problem(3, 1, 2, 0.2)
    tables = (queue_table(2, 2.0), queue_table(2, 2.0))
    problem = IntervalProblem(
        origin_ids=("a",), site_ids=("clean", "dirty"), demand_rps=np.array([1.0]),
        rtt_s=np.array([[0.01, 0.01]]), allowed=np.ones((1, 2), bool), tables=tables,
        carbon_kg_per_kwh_it=np.array([0.05, 0.5]), water_l_per_kwh_it=np.array([1.0, 1.0]),
        cost_usd_per_kwh_it=np.array([0.1, 0.1]), interval_s=900.0, planning_slo_ttft_s=2.0,
    )
    scales = objective_scales(problem)
    w = np.array([0.0, 1.0, 0.0, 0.0])
    result = IntervalMilp.build(problem).solve_weighted(w, scales, TIME_LIMIT_S)
    assert result.routing is not None
    np.testing.assert_allclose(result.routing, [[1.0, 0.0]], atol=1e-6)
    mine = evaluate_plans(problem, result.routing)
    score = (mine.objectives[0] / scales) @ w
    assert result.status == 0
    assert score == pytest.approx(result.bound, rel=1e-4)


def test_milp_policy_meets_the_slo_and_honours_the_cap() -> None:
    problem = small_problem(7, 4, 3, 0.5)
    plan = milp_plan(problem, Preference(), time_limit_s=TIME_LIMIT_S)
    assert evaluate_plans(problem, plan).slo_violation_s[0] <= 0
    fastest = min(evaluate_plans(problem, p).objectives[0, 0] for p in
                  [policy(problem) for policy in BASELINES.values()])
    cap = fastest * 1.05
    capped = milp_plan(problem, Preference(mode="cap", ttft_cap_s=cap, minimise="water_l"),
                       time_limit_s=TIME_LIMIT_S)
    ev = evaluate_plans(problem, capped)
    assert ev.slo_violation_s[0] <= 0
    assert ev.objectives[0, 0] <= cap * (1 + 1e-6)


def test_slit_gap_above_the_bound_is_within_the_target_on_a_fixed_instance() -> None:
    """Issue 11's grading on a small fixed instance: for each Das-Dennis weighting, SLIT's best
    front plan is at most 1 % (median) and 3 % (p90) above the MILP's proven bound, and never
    below it (which would mean the bound is wrong)."""
    problem = small_problem(7, 4, 3, 0.5)
    scales = objective_scales(problem)
    model = IntervalMilp.build(problem)
    decision = plan_interval(problem)
    feasible = decision.front_objectives[decision.front_violation_s <= 0] / scales
    gaps = []
    for w in get_reference_directions("das-dennis", 4, n_partitions=3):
        bound = model.solve_weighted(w, scales, TIME_LIMIT_S).bound
        gaps.append(((feasible @ w).min() - bound) / bound)
    assert min(gaps) >= -TOL
    assert np.median(gaps) <= 0.01
    assert np.percentile(gaps, 90) <= 0.03


def test_milp_policy_is_deterministic() -> None:
    """Stopped by node limit and relative gap, not the clock: the same problem, the same plan."""
    problem = small_problem(11, 5, 4, 0.6)
    first = milp_plan(problem, Preference())
    np.testing.assert_array_equal(first, milp_plan(problem, Preference()))


def concave_table(installed: int, capacity_rps: float, idle_w: float = 1000.0,
                  busy_w: float = 3000.0) -> SiteServingTable:
    """``queue_table`` with power concave in load (rising fastest at low load, as measured GPU
    power does): the shape on which a convex envelope of power undershoots between its ends."""
    base = queue_table(installed, capacity_rps, idle_w=idle_w, busy_w=busy_w)
    rho = np.minimum(base.load_rps_per_replica / capacity_rps, 1.0)
    power = idle_w + (busy_w - idle_w) * np.sqrt(rho)
    return replace(base, power_w_per_replica=np.tile(power, (installed, 1)))


def test_bound_is_the_optimum_when_power_is_concave() -> None:
    """One origin, a clean and a dirty site, more demand than the clean one carries: the best
    plan fills the clean site to what the SLO allows and loads the dirty one partly, where
    power is concave. The bound must be that plan's carbon (found by brute force over the
    split), not below it: the exact piecewise-linear power makes it so (a convex envelope of
    power, the earlier model, was 16 % below here)."""
    tables = (concave_table(1, 2.0), concave_table(1, 2.0))
    problem = IntervalProblem(
        origin_ids=("a",), site_ids=("clean", "dirty"), demand_rps=np.array([2.0]),
        rtt_s=np.array([[0.02, 0.05]]), allowed=np.ones((1, 2), bool), tables=tables,
        carbon_kg_per_kwh_it=np.array([0.05, 0.5]), water_l_per_kwh_it=np.array([1.0, 1.0]),
        cost_usd_per_kwh_it=np.array([0.1, 0.1]), interval_s=900.0, planning_slo_ttft_s=2.0,
    )
    share = np.linspace(0.0, 1.0, 20_001)
    plans = np.stack([np.stack([share, 1.0 - share], axis=1)[:, None, :]])[0]
    ev = evaluate_plans(problem, plans)
    best = ev.objectives[ev.slo_violation_s <= 0, 1].min()
    result = IntervalMilp.build(problem).solve_epsilon(1, np.full(4, np.inf), TIME_LIMIT_S)
    assert result.status == 0
    assert result.bound <= best * (1 + 1e-9)
    assert result.bound >= best * (1 - 1e-4)
    mine = evaluate_plans(problem, result.routing)
    assert mine.slo_violation_s[0] <= 0
    assert mine.objectives[0, 1] == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("w", [(0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.1, 0.3, 0.3, 0.3)])
def test_the_milp_plan_is_feasible_and_at_its_incumbent(seed: int, w: tuple[float, ...]
                                                        ) -> None:
    """The model is exact where ``evaluate_plans`` is piecewise linear (power, the SLO check
    for the longest routed round trip, the sizing rule), so the MILP's plan meets the SLO and
    its true objective is its incumbent's value in the model, to the TTFT tangents' error.
    (The earlier model's plans were 5-9 % above it here, 2-6 % on the default day, and some
    of its incumbents missed the SLO: capacity taken at a level's shortest round trip.)"""
    base = small_problem(seed, 4, 3, 0.3)
    problem = replace(base, tables=tuple(concave_table(t.installed, 1.0 + 0.5 * i)
                                         for i, t in enumerate(base.tables)))
    assert (evaluate_plans(problem, np.stack([policy(problem) for policy in BASELINES.values()]))
            .slo_violation_s <= 0).any()  # the instance has feasible plans
    scales = objective_scales(problem)
    # Solved to optimality (well within the limit: < 1 s CPU) so the value is the optimum's.
    result = IntervalMilp.build(problem).solve_weighted(np.array(w), scales, 30.0)
    assert result.status == 0 and result.routing is not None
    mine = evaluate_plans(problem, result.routing)
    assert mine.slo_violation_s[0] <= 0
    score = float((mine.objectives[0] / scales) @ np.array(w))
    assert result.bound <= score * (1 + 1e-9)
    assert score == pytest.approx(result.value, rel=1e-3)


def test_highs_prints_no_banner_on_standard_output() -> None:
    """HiGHS writes its banner to fd 1 when its first instance is built; ``silent_highs`` keeps
    it out of the command's output (checked in a fresh process: the banner comes once per
    process)."""
    import subprocess
    import sys

    code = ("from slit.optimise.milp import silent_highs\n"
            "silent_highs(); silent_highs(); print('only this')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "only this\n"
