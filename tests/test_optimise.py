"""The interval problem, routing repair, baselines, LP reference and SLIT's search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimise_helpers import queue_table, random_problem

from slit.optimise.baselines import (
    BASELINES,
    capacity_proportional,
    cheapest_energy,
    latency_first,
    lowest_carbon,
    lowest_water,
)
from slit.optimise.lp import solve_lp, weight_lattice
from slit.optimise.metaheuristic import SearchSettings, plan_interval
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.quality import hypervolume_ratio
from slit.optimise.routing import repair


def two_site_problem(demand: tuple[float, float]) -> IntervalProblem:
    """Site 0 is clean, dry and cheap; site 1 dirty, thirsty and dear; both equally near."""
    return IntervalProblem(
        origin_ids=("a", "b"), site_ids=("clean", "dirty"),
        demand_rps=np.array(demand, float),
        rtt_s=np.full((2, 2), 0.01), allowed=np.ones((2, 2), bool),
        tables=(queue_table(4, 2.0), queue_table(4, 2.0)),
        carbon_kg_per_kwh_it=np.array([0.05, 0.5]), water_l_per_kwh_it=np.array([0.5, 3.0]),
        cost_usd_per_kwh_it=np.array([0.05, 0.15]), interval_s=900.0, slo_ttft_s=2.0,
    )


def test_slit_sends_everything_to_the_clean_site_when_it_has_room():
    problem = two_site_problem((3.0, 2.0))
    decision = plan_interval(problem, settings=SearchSettings(generations=20))
    np.testing.assert_allclose(decision.routing[:, 0], 1.0, atol=1e-6)
    assert decision.slo_violation_s <= 0


def test_slit_fills_the_clean_site_to_capacity_then_spills():
    problem = two_site_problem((4.0, 3.0))
    capacity = problem.max_load_rps()[0]
    assert capacity < 7.0  # the clean site cannot take everything
    decision = plan_interval(problem, settings=SearchSettings(generations=30))
    clean_load = float(problem.demand_rps @ decision.routing[:, 0])
    assert clean_load == pytest.approx(capacity, rel=0.02)
    assert decision.slo_violation_s <= 0


def test_same_seed_same_plan_bit_for_bit():
    problem = random_problem(seed=3)
    first = plan_interval(problem, settings=SearchSettings(generations=10, seed=7))
    second = plan_interval(problem, settings=SearchSettings(generations=10, seed=7))
    assert np.array_equal(first.routing, second.routing)
    assert np.array_equal(first.front_objectives, second.front_objectives)


def test_slit_front_is_not_dominated_by_any_baseline_under_its_preference():
    problem = random_problem(seed=1)
    decision = plan_interval(problem)
    scales = np.ones(4)
    best = Preference().choose(decision.front_objectives, decision.front_violation_s, scales)
    chosen = decision.front_objectives[best]
    for policy in BASELINES.values():
        ev = evaluate_plans(problem, policy(problem))
        dominates = np.all(ev.objectives[0] <= chosen) and np.any(ev.objectives[0] < chosen)
        assert not (dominates and ev.slo_violation_s[0] <= 0)


def test_hypervolume_reaches_the_lp_reference_on_a_random_problem():
    problem = random_problem(seed=0)
    decision = plan_interval(problem)
    ratio, lp = hypervolume_ratio(problem, decision.front_objectives)
    assert len(lp) >= 2
    assert ratio >= 0.95


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.05, 3.0))
def test_repair_makes_valid_routing(seed, scale):
    problem = random_problem(seed=seed % 50)
    problem = replace(problem, demand_rps=problem.demand_rps * scale)
    rng = np.random.default_rng(seed)
    allowed = rng.random(problem.allowed.shape) < 0.7
    allowed[np.arange(problem.n_origins), rng.integers(0, problem.n_sites, problem.n_origins)] = 1
    problem = replace(problem, allowed=allowed)
    x = repair(problem, rng.random((5, problem.n_origins, problem.n_sites)) ** 3)
    assert np.all(x >= 0)
    np.testing.assert_allclose(x.sum(axis=2), 1.0, atol=1e-9)
    assert np.all(x[:, ~allowed] == 0)
    load = np.einsum("o,pos->ps", problem.demand_rps, x)
    capacity = problem.max_load_rps(np.zeros(problem.n_sites))
    if problem.demand_rps.sum() < 0.5 * problem.max_load_rps().sum():
        assert np.all(load <= capacity[None] * (1 + 1e-6) + 1e-9)


def test_awake_replicas_follow_load():
    problem = random_problem(seed=2)
    loads = np.linspace(0.0, problem.max_load_rps()[0], 6)
    x = np.zeros((6, problem.n_sites))
    x[:, 0] = loads
    awake = problem.awake_for_load(x, np.zeros((6, problem.n_sites)))[:, 0]
    assert awake[0] == 0  # no load: asleep
    assert np.all(np.diff(awake) >= 0)
    assert awake[-1] <= problem.tables[0].installed


def test_latency_first_uses_the_nearest_site_when_it_has_room():
    problem = replace(random_problem(seed=4), demand_rps=np.full(15, 0.05))
    x = latency_first(problem)
    np.testing.assert_array_equal(x.argmax(axis=1), problem.rtt_s.argmin(axis=1))
    np.testing.assert_allclose(x.max(axis=1), 1.0)


@pytest.mark.parametrize(
    ("policy", "coefficient"),
    [(lowest_carbon, "carbon_kg_per_kwh_it"), (lowest_water, "water_l_per_kwh_it"),
     (cheapest_energy, "cost_usd_per_kwh_it")],
)
def test_greedy_baselines_fill_their_best_site_first(policy, coefficient):
    problem = random_problem(seed=5)
    # Same hardware everywhere, so per-request footprint ranks as the per-kWh coefficient.
    problem = replace(problem, tables=tuple(queue_table(6, 2.0) for _ in range(15)))
    x = policy(problem)
    load = problem.demand_rps @ x
    best = int(np.argmin(getattr(problem, coefficient)))
    assert load[best] == pytest.approx(problem.max_load_rps(problem.worst_rtt_s(x[None])[0])[best],
                                       rel=1e-6)


def test_capacity_proportional_shares_follow_capacity():
    problem = random_problem(seed=6)
    x = capacity_proportional(problem)
    capacity = problem.max_load_rps()
    np.testing.assert_allclose(x[0], capacity / capacity.sum())
    np.testing.assert_allclose(x, np.broadcast_to(x[0], x.shape))


def test_residency_pins_are_respected_by_every_policy():
    problem = random_problem(seed=7)
    allowed = problem.allowed.copy()
    allowed[0] = False
    allowed[0, [3, 9]] = True  # origin 0 may only be served at sites 3 and 9
    problem = replace(problem, allowed=allowed)
    plans = [policy(problem) for policy in BASELINES.values()]
    plans.append(plan_interval(problem, settings=SearchSettings(generations=5)).routing)
    plans.append(solve_lp(problem, np.full(4, 0.25)))
    for x in plans:
        assert x[0, ~allowed[0]].sum() == 0
        assert x[0].sum() == pytest.approx(1.0)


def test_weight_lattice_sums_to_one():
    lattice = weight_lattice(4)
    assert len(lattice) == 35
    np.testing.assert_allclose(lattice.sum(axis=1), 1.0)


def test_lp_with_all_weight_on_carbon_matches_lowest_carbon_load():
    problem = replace(random_problem(seed=8), tables=tuple(queue_table(6, 2.0) for _ in range(15)))
    x = solve_lp(problem, np.array([0.0, 1.0, 0.0, 0.0]))
    greedy = lowest_carbon(problem)
    lp_carbon = evaluate_plans(problem, x).objectives[0, 1]
    greedy_carbon = evaluate_plans(problem, greedy).objectives[0, 1]
    assert lp_carbon <= greedy_carbon * 1.05
