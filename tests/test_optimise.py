"""The interval problem, routing repair, baselines, LP reference and SLIT's search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
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
    min_energy,
    weighted_greedy,
)
from slit.optimise.local_search import full_fleet_capacity_rps
from slit.optimise.metaheuristic import SearchSettings, plan_interval
from slit.optimise.milp import POLICY_REL_GAP, milp_plan
from slit.optimise.policies import (
    POLICIES,
    PlanContext,
    PreferenceRule,
    interval_seeds,
)
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.routing import repair


def two_site_problem(demand: tuple[float, float]) -> IntervalProblem:
    """Site 0 is clean, dry and cheap; site 1 dirty, thirsty and dear; both equally near."""
    return IntervalProblem(
        origin_ids=("a", "b"), site_ids=("clean", "dirty"),
        demand_rps=np.array(demand, float),
        rtt_s=np.full((2, 2), 0.01), allowed=np.ones((2, 2), bool),
        tables=(queue_table(4, 2.0), queue_table(4, 2.0)),
        carbon_kg_per_kwh_it=np.array([0.05, 0.5]), water_l_per_kwh_it=np.array([0.5, 3.0]),
        cost_usd_per_kwh_it=np.array([0.05, 0.15]), interval_s=900.0, planning_slo_ttft_s=2.0,
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
    # Past the sizing table the whole fleet stays awake and only its interpolated tail counts,
    # so the clean site takes load up to where that tail meets the SLO (not just the table's
    # grid-rounded capacity).
    full = full_fleet_capacity_rps(problem, 0, 0.01)
    assert full >= capacity
    assert clean_load == pytest.approx(full, rel=0.02)
    assert decision.slo_violation_s <= 0


def test_same_seed_same_plan_bit_for_bit():
    problem = random_problem(seed=3)
    seed = interval_seeds(7, 3)[2]
    first = plan_interval(problem, settings=SearchSettings(generations=10), seed=seed)
    second = plan_interval(problem, settings=SearchSettings(generations=10), seed=seed)
    assert np.array_equal(first.routing, second.routing)
    assert np.array_equal(first.front_objectives, second.front_objectives)


def test_different_seeds_give_different_search_traces():
    problem = random_problem(seed=3)
    fronts = [plan_interval(problem, settings=SearchSettings(generations=10), seed=s)
              .front_objectives for s in interval_seeds(0, 2) + interval_seeds(1, 1)]
    assert not np.array_equal(fronts[0], fronts[1])  # two intervals of one scenario
    assert not np.array_equal(fronts[0], fronts[2])  # interval 0 of two scenario seeds


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
    plans.append(milp_plan(problem, Preference(weights=(0.25, 0.25, 0.25, 0.25))))
    for x in plans:
        assert x[0, ~allowed[0]].sum() == 0
        assert x[0].sum() == pytest.approx(1.0)


def test_milp_with_all_weight_on_carbon_is_no_dirtier_than_lowest_carbon():
    problem = replace(random_problem(seed=8), tables=tuple(queue_table(6, 2.0) for _ in range(15)))
    x = milp_plan(problem, Preference(weights=(0.0, 1.0, 0.0, 0.0)))
    milp_carbon = evaluate_plans(problem, x).objectives[0, 1]
    greedy_carbon = evaluate_plans(problem, lowest_carbon(problem)).objectives[0, 1]
    # The policy stops within POLICY_REL_GAP of its bound, which is below the greedy's carbon.
    assert milp_carbon <= greedy_carbon * (1 + POLICY_REL_GAP)


def test_weighted_greedy_follows_the_preference_weights():
    problem = replace(random_problem(seed=9), tables=tuple(queue_table(6, 2.0) for _ in range(15)))
    one_hot = np.eye(4)[1:]  # all weight on carbon, on water, on cost
    objectives = np.stack([
        evaluate_plans(problem, weighted_greedy(problem, Preference(weights=tuple(w))))
        .objectives[0, 1:] for w in one_hot])
    # The plan weighing only objective j is the best of the three on objective j.
    for j in range(3):
        assert objectives[j, j] == objectives[:, j].min()
        assert objectives[j, j] < objectives[:, j].max()


def test_weighted_greedy_ignores_weights_only_outside_weights_mode():
    problem = random_problem(seed=9)
    knee = weighted_greedy(problem, Preference(mode="knee", weights=(0.0, 1.0, 0.0, 0.0)))
    balanced = weighted_greedy(problem, Preference())
    np.testing.assert_array_equal(knee, balanced)
    assert not np.array_equal(balanced, weighted_greedy(problem, Preference(
        weights=(0.0, 1.0, 0.0, 0.0))))


def test_min_energy_fills_the_most_efficient_site_and_spends_least_energy():
    problem = random_problem(seed=10)
    # Same hardware everywhere except site 4, which draws half the power for the same work.
    tables = [queue_table(6, 2.0) for _ in range(15)]
    tables[4] = queue_table(6, 2.0, idle_w=500.0, busy_w=1500.0)
    problem = replace(problem, tables=tuple(tables))
    x = min_energy(problem)
    load = problem.demand_rps @ x
    capacity = problem.max_load_rps(problem.worst_rtt_s(x[None])[0])
    assert load[4] == pytest.approx(capacity[4], rel=1e-6)
    energy = evaluate_plans(problem, x).energy_kwh.sum()
    for name, rule in BASELINES.items():
        if name != "min_energy":
            assert energy <= evaluate_plans(problem, rule(problem)).energy_kwh.sum(), name


def test_every_registered_policy_plans_valid_routing():
    problem = random_problem(seed=11)
    context = PlanContext(Preference(), SearchSettings(generations=3), interval_seeds(0, 1)[0])
    assert {"slit", "weighted_greedy", "min_energy", "milp"} <= set(POLICIES)
    for name, policy in POLICIES.items():
        decided = policy.plan(problem, context)
        np.testing.assert_allclose(decided.routing.sum(axis=1), 1.0, atol=1e-9)
        assert np.all(decided.routing[~problem.allowed] == 0)
        assert (decided.search is not None) == (name == "slit")


def test_a_preference_rule_registers_in_one_line():
    seen = []

    def all_to_first_allowed(problem, preference):
        seen.append(preference)
        x = np.zeros(problem.allowed.shape)
        x[np.arange(problem.n_origins), problem.allowed.argmax(axis=1)] = 1.0
        return x

    problem = random_problem(seed=12)
    preference = Preference(weights=(0.4, 0.2, 0.2, 0.2))
    context = PlanContext(preference, SearchSettings(), interval_seeds(0, 1)[0])
    decided = PreferenceRule(all_to_first_allowed).plan(problem, context)
    assert seen == [preference]
    assert decided.routing[:, 0].sum() == problem.n_origins


# --- the serving surrogate ------------------------------------------------------------------

def _default_spec():
    from slit.experiment.scenario import default_scenario
    from slit.optimise.surrogate import SurrogateSpec

    sc = default_scenario()
    # Every served model's replicas and token profile (the default serves two models).
    return SurrogateSpec(
        replicas=tuple(sorted({r for s in sc.sites for r in s.replica_for.values()}, key=str)),
        code_shares=tuple(sorted({m.code_share for m in sc.models})), seed=sc.seed,
        n_awake=tuple(sorted({1, 2, 3, 4, 6, 8, 12, 16}
                             | {n for s in sc.sites for n in s.reserved.values()})))


def test_surrogate_meets_its_documented_held_out_accuracy():
    # docs/scheduler.md: held-out design cells, operating range (utilisation <= 0.9).
    from slit.optimise.surrogate import train_surrogate

    _, accuracy = train_surrogate(_default_spec(), use_cache=False)
    within = accuracy.mape_operating_pct
    assert accuracy.n_test_runs > 0 and accuracy.n_train_runs > 3 * accuracy.n_test_runs
    assert within["ttft_p95_s"] <= 9.0  # documented 8.0 %, target 15 %
    assert within["ttft_p99_s"] <= 10.0  # documented 9.1 %
    assert within["ttft_mean_s"] <= 8.0  # documented 7.3 %
    # Decode power now rises with the batch (docs/serving.md): measured 1.2 %, target 5 %.
    assert within["power_w_per_replica"] <= 2.0


def test_surrogate_is_a_scikit_learn_estimator():
    from sklearn.base import clone

    from slit.optimise.surrogate_model import FEATURES, TARGETS, ServingSurrogate

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((60, len(FEATURES))), columns=list(FEATURES))
    y = 1.0 + rng.random((60, len(TARGETS)))
    model = ServingSurrogate(n_rounds=20, seed=3)
    assert clone(model).get_params() == model.get_params()
    assert model.fit(x, y) is model
    predicted = model.predict(x)
    assert predicted.shape == (60, len(TARGETS))
    assert np.isfinite(predicted).all()


def test_surrogate_cache_key_follows_code_and_token_data(monkeypatch, data_dir):
    from slit.optimise import surrogate_cache

    spec = _default_spec()
    key = surrogate_cache.samples_key(spec)
    assert surrogate_cache.samples_key(replace(spec)) == key
    assert surrogate_cache.samples_key(replace(spec, token_source=str(data_dir))) != key
    monkeypatch.setattr(surrogate_cache, "code_fingerprint", lambda: "edited simulator")
    assert surrogate_cache.samples_key(spec) != key


def _random_move_cases(rng_seed: int, weightings: tuple[list[float], ...]):
    """(problem, scaled weights, random plan) on three random 8 x 6 instances with a looser SLO
    and (for two) lighter demand than random_problem's, so that random plans are feasible on two
    instances and not on the third: the cases the move-score tests compare with evaluate_plans.
    Random plans: a greedy or repaired plan loads sites to exactly a capacity step, where the
    last bit of the summed load decides the awake count (in either evaluation)."""
    from slit.optimise.baselines import objective_scales
    from slit.optimise.routing import normalise_rows

    rng = np.random.default_rng(rng_seed)
    for seed, lighter in ((0, 0.3), (1, 0.3), (2, 1.0)):
        problem = random_problem(8, 6, seed=seed)
        problem = replace(problem, planning_slo_ttft_s=4.0,
                          demand_rps=lighter * problem.demand_rps)
        scales = objective_scales(problem)
        for weights in weightings:
            plan = normalise_rows(problem, rng.dirichlet(np.full(6, 0.3), 8))
            yield problem, np.asarray(weights) / scales, plan


def _fast_scores_match(problem: IntervalProblem, plans: np.ndarray, w: np.ndarray,
                       fast: np.ndarray) -> np.ndarray:
    """Assert the move scores ``fast`` equal evaluate_plans' weighted sums of ``plans`` (inf
    where the SLO is missed); returns the counts of (infeasible, feasible) moves seen."""
    ev = evaluate_plans(problem, plans)
    full = np.where(ev.slo_violation_s <= 0, ev.objectives @ w, np.inf)
    assert np.array_equal(np.isfinite(fast), np.isfinite(full))
    finite = np.isfinite(full)
    np.testing.assert_allclose(fast[finite], full[finite], rtol=1e-12, atol=1e-12)
    return np.bincount(finite.astype(int), minlength=2)


def test_site_by_site_move_scores_equal_whole_plan_evaluation():
    # The local search ranks moves by these scores; if they drifted from evaluate_plans, it
    # would descend on a different problem from the one SLIT is judged on.
    from slit.optimise.local_search import (
        FINE_STEPS,
        fast_evaluate,
        move_list,
        single_move_scores,
        spare_rps,
    )

    seen = np.zeros(2, dtype=int)  # moves judged infeasible, feasible
    for problem, w, plan in _random_move_cases(0, ([0.1, 0.3, 0.3, 0.3], [1.0, 0, 0, 0],
                                                   [0, 0, 0, 1.0])):
        o, src, dst, amount = move_list(problem, plan, problem.allowed,
                                        spare_rps(problem, plan), FINE_STEPS)
        fast = single_move_scores(problem, plan, w, o, src, dst, amount)
        plans = np.repeat(plan[None], len(o), axis=0)
        index = np.arange(len(o))
        plans[index, o, src] = np.maximum(plans[index, o, src] - amount, 0.0)
        plans[index, o, dst] += amount
        ev = evaluate_plans(problem, plans)
        objectives, violation, awake, _ = fast_evaluate(problem, plans)
        np.testing.assert_allclose(objectives, ev.objectives, rtol=1e-12)
        np.testing.assert_allclose(violation, ev.slo_violation_s, rtol=1e-12, atol=1e-12)
        assert np.array_equal(awake, ev.awake)
        seen += _fast_scores_match(problem, plans, w, fast)
    assert (seen > 100).all()


def test_column_move_scores_match_evaluate_plans():
    """A whole site's column moved to another site, scored from the two sites it changes, is
    scored as evaluate_plans scores the plan it makes (feasible and infeasible ones)."""
    from slit.optimise.local_search import column_move_scores, column_moves

    seen = np.zeros(2, dtype=int)
    for problem, w, plan in _random_move_cases(1, ([0.1, 0.3, 0.3, 0.3], [1.0, 0, 0, 0],
                                                   [0, 0, 1.0, 0])):
        src, dst = column_moves(problem, plan)
        assert len(src) == problem.n_sites * (problem.n_sites - 1)  # all allowed here
        fast = column_move_scores(problem, plan, w, src, dst)
        plans = np.repeat(plan[None], len(src), axis=0)
        index = np.arange(len(src))
        plans[index, :, dst] += plans[index, :, src]
        plans[index, :, src] = 0.0
        seen += _fast_scores_match(problem, plans, w, fast)
    assert (seen > 20).all()


def test_swap_move_scores_match_evaluate_plans():
    """Two origins exchanging sites, scored from the two sites they change, are scored as
    evaluate_plans scores the plan the swap makes (feasible and infeasible ones), and
    apply_swap makes that plan."""
    from slit.optimise.local_search import apply_swap, swap_move_scores, swap_moves

    seen = np.zeros(2, dtype=int)
    for problem, w, plan in _random_move_cases(2, ([0.1, 0.3, 0.3, 0.3], [1.0, 0, 0, 0],
                                                   [0, 0, 1.0, 0])):
        swaps = swap_moves(problem, plan)
        assert len(swaps.o1) > 100
        # Each swap moves flow both ways between two different sites and origins.
        assert (swaps.a != swaps.b).all() and (swaps.o1 != swaps.o2).all()
        fast = swap_move_scores(problem, plan, w, swaps)
        plans = np.repeat(plan[None], len(swaps.o1), axis=0)
        for j in range(len(swaps.o1)):
            apply_swap(plans[j], j, swaps=swaps)
        np.testing.assert_allclose(plans.sum(axis=2), 1.0, rtol=1e-12)
        seen += _fast_scores_match(problem, plans, w, fast)
    assert (seen > 100).all()


def test_a_round_scores_every_block_of_moves_in_one_call_as_each_alone():
    # The local search scores single, column and swap moves in one table gather; each block's
    # slice of it must be that block's scores scored alone (offsets or the plan's own terms
    # mixed up between blocks would show here), bit for bit.
    from slit.optimise.local_search import (
        FINE_STEPS,
        _column_columns,
        _score_moves,
        _single_columns,
        _swap_columns,
        column_move_scores,
        column_moves,
        move_list,
        single_move_scores,
        spare_rps,
        swap_move_scores,
        swap_moves,
    )

    for problem, w, plan in _random_move_cases(3, ([0.1, 0.3, 0.3, 0.3], [1.0, 0, 0, 0])):
        o, src, dst, amount = move_list(problem, plan, problem.allowed,
                                        spare_rps(problem, plan), FINE_STEPS)
        c_src, c_dst = column_moves(problem, plan)
        swaps = swap_moves(problem, plan)
        together = _score_moves(problem, plan, w, [
            _single_columns(problem, plan, o, src, dst, amount),
            _column_columns(problem, plan, c_src, c_dst), _swap_columns(problem, plan, swaps)])
        alone = [single_move_scores(problem, plan, w, o, src, dst, amount),
                 column_move_scores(problem, plan, w, c_src, c_dst),
                 swap_move_scores(problem, plan, w, swaps)]
        assert [len(a) for a in alone] == [len(t) for t in together]
        assert all(len(a) > 0 for a in alone)
        for t, a in zip(together, alone, strict=True):
            assert np.array_equal(t, a)


def crossed_problem() -> IntervalProblem:
    """Two origins, each near one single-replica site and far from the other. A site carries
    one origin's demand even with the far one's round trip eating into its SLO budget, but not
    a quarter more: from the crossed plan (each origin at its far site) every single-origin
    move or whole-column move overloads a site; only the two origins changing places at once
    reaches the uncrossed plan, which is far better in mean TTFT."""
    rtt = np.array([[0.01, 0.4], [0.4, 0.01]])
    return IntervalProblem(
        origin_ids=("a", "b"), site_ids=("near_a", "near_b"),
        demand_rps=np.array([1.15, 1.15]), rtt_s=rtt, allowed=np.ones((2, 2), bool),
        tables=(queue_table(1, 2.0), queue_table(1, 2.0)),
        carbon_kg_per_kwh_it=np.array([0.3, 0.3]), water_l_per_kwh_it=np.array([1.0, 1.0]),
        cost_usd_per_kwh_it=np.array([0.1, 0.1]), interval_s=900.0, planning_slo_ttft_s=2.0,
    )


def test_local_search_swaps_two_origins_that_no_single_move_can_untangle():
    from slit.optimise.local_search import local_search

    problem = crossed_problem()
    crossed = np.array([[0.0, 1.0], [1.0, 0.0]])
    uncrossed = np.eye(2)
    ev = evaluate_plans(problem, np.stack([crossed, uncrossed]))
    assert (ev.slo_violation_s <= 0).all()
    # A quarter of either origin on top of the other site's load misses the SLO.
    quarter = crossed + np.array([[0.25, -0.25], [0.0, 0.0]])
    assert evaluate_plans(problem, quarter).slo_violation_s[0] > 0
    linear = np.array([1.0, 0.0, 0.0, 0.0])

    def score(e):
        return np.where(e.slo_violation_s <= 0, e.objectives @ linear, np.inf)

    found = local_search(problem, crossed, score, problem.allowed, 3, linear)
    np.testing.assert_allclose(found, uncrossed, atol=1e-12)


def test_local_search_never_worsens_a_plan_and_keeps_rows_whole():
    # Several moves on disjoint pairs of sites are taken in one round; their gains add up only
    # if each changes its two sites alone. The plan found must score (by evaluate_plans) no
    # worse than the start, stay SLO-feasible and keep every row summing to 1.
    from slit.optimise.baselines import objective_scales, weighted_sum_greedy
    from slit.optimise.local_search import local_search

    for seed in range(3):
        problem = random_problem(10, 8, seed=seed)
        scales = objective_scales(problem)
        for weights in ([0.1, 0.3, 0.3, 0.3], [1.0, 0, 0, 0], [1 / 3, 0, 2 / 3, 0]):
            linear = np.asarray(weights) / scales

            def score(e, linear=linear):
                return np.where(e.slo_violation_s <= 0, e.objectives @ linear, np.inf)

            start = repair(problem, weighted_sum_greedy(problem, np.asarray(weights)))
            before = score(evaluate_plans(problem, start))[0]
            found = local_search(problem, start, score, problem.allowed, 6, linear)
            after = score(evaluate_plans(problem, found))[0]
            assert np.isfinite(before) and after <= before * (1 + 1e-12)
            np.testing.assert_allclose(found.sum(axis=1), 1.0, rtol=1e-12)
            assert found.min() >= 0.0


def test_open_site_kick_never_worsens_a_local_optimum_and_often_improves_it():
    # From a local optimum of the site-by-site descent, opening a sleeping site (its cheaper
    # origins moved over whole, within its capacity) and descending again reaches plans no
    # two-site move does; the kick keeps the start when it finds nothing better.
    from slit.optimise.baselines import objective_scales, scaled_pair_costs, weighted_sum_greedy
    from slit.optimise.local_search import cheapest_targets, local_search
    from slit.optimise.metaheuristic import open_site, open_site_kick

    improved = 0
    for seed in range(8):
        problem = random_problem(10, 8, seed=seed)
        scales = objective_scales(problem)
        for weights in ([2 / 3, 0, 1 / 3, 0], [1 / 3, 0, 2 / 3, 0], [1.0, 0, 0, 0]):
            w = np.asarray(weights)
            linear = w / scales

            def score(e, linear=linear):
                return np.where(e.slo_violation_s <= 0, e.objectives @ linear, np.inf)

            cost = np.tensordot(w, scaled_pair_costs(problem), axes=1)
            start = local_search(problem, repair(problem, weighted_sum_greedy(problem, w)),
                                 score, cheapest_targets(problem, cost), 8, linear)
            kicked = open_site_kick(problem, start, score, cost, linear)
            before, after = score(evaluate_plans(problem, np.stack([start, kicked])))
            assert np.isfinite(before) and after <= before * (1 + 1e-12)
            np.testing.assert_allclose(kicked.sum(axis=1), 1.0, rtol=1e-12)
            improved += after < before * (1 - 1e-9)
            # open_site: whole rows moved, only where allowed, within the full fleet's capacity.
            sleeping = np.flatnonzero(evaluate_plans(problem, start).load_rps[0] <= 0)
            for site in sleeping:
                opened = open_site(problem, start, cost, int(site))
                moved = np.flatnonzero(opened[:, site] > 0)
                np.testing.assert_array_equal(opened[moved, site], 1.0)
                assert problem.allowed[moved, site].all()
                if len(moved):
                    worst = np.full(problem.n_sites, problem.rtt_s[moved, site].max())
                    assert problem.demand_rps[moved].sum() <= problem.max_load_rps(worst)[site]
    assert improved >= 4  # 8 of these 24 cases on 2026-11-27


def test_slit_gap_above_the_milp_bound_is_within_target_on_a_fixed_instance():
    # Issue 11's grading on one small instance: for each of the 20 Das-Dennis weightings, SLIT's
    # best front plan above the MILP's proven bound. Against the exact model (2026-11-26; its
    # optimum is the best plan's objective), with the whole-column moves: 0.18 % median, 0.52 %
    # p90; with the swap and fine moves too: 0.04 % and 0.21 %. (8 x 6 before, against the
    # relaxed model: 0.61 % and 2.89 %; the exact model no longer closes that instance in 20 s
    # on a loaded machine.)
    from pymoo.util.ref_dirs import get_reference_directions
    from test_milp import small_problem

    from slit.optimise.baselines import objective_scales
    from slit.optimise.milp import IntervalMilp

    problem = small_problem(3, 6, 4, 0.5)
    scales = objective_scales(problem)
    decision = plan_interval(problem)
    model = IntervalMilp.build(problem)
    gaps = []
    for w in get_reference_directions("das-dennis", 4, n_partitions=3):
        result = model.solve_weighted(w, scales, 20.0)
        assert result.gap < 1e-3  # the bound is the proven optimum of the model, not a stop
        scores = np.where(decision.front_violation_s <= 0,
                          (decision.front_objectives / scales) @ w, np.inf)
        gaps.append((scores.min() - result.bound) / result.bound)
    assert min(gaps) >= -1e-9  # a bound, so never above a feasible plan
    assert np.median(gaps) <= 0.01
    assert np.percentile(gaps, 90) <= 0.03
