"""SLIT graded by its optimality gap above the proven MILP bound.

    python benchmarks/bench_gap.py [--time-limit 5] [--intervals 12]

For the 12 busiest intervals of the default day (forecast inputs) and each of the 20 weight
vectors of pymoo's Das-Dennis reference directions (4 objectives, 3 partitions), the weighted sum
``sum_k w_k f_k / scale_k`` is minimised by the interval MILP (``slit.optimise.milp``: the exact
model of the interval problem, HiGHS through highspy); its dual bound is a proven lower bound for
every feasible plan, and the optimum itself when the solve closes within the time limit (a solve
stopped by it reports its dual bound, so a gap then includes the bound's own slack: compare
``solver_gap``). ``scale_k`` is
``objective_scales(problem)``: fixed by the problem's own data (the per-request costs at the
sites' reference operating points), the same scaling SLIT's preference uses, and independent of
the fronts being compared.

Gap of a plan = (its weighted sum - bound) / bound. For SLIT the plan is the best plan of its
front for that weight (one search per interval, default settings); the weighted greedy is run with
that weight; the MILP's own (polished) plan is judged by ``evaluate_plans`` like the others.
``slit_vs_best_known`` compares SLIT with the best plan any of the three found (how much of the
gap is SLIT's, as opposed to the bound's slack, which ``solver_gap`` shows inside the model).
Prints one line per interval and ends with ``gap_median= gap_p90= gap_max=`` (SLIT), the same for
the greedy and the MILP plan, ``milp_solve_s_median=`` and ``load_average_1min=`` (on a loaded
machine more solves stop at the time limit before closing: check ``solver_gap``, and raise
``--time-limit`` until it is ~0). Target: gap_median <= 1 %, gap_p90 <= 3 %.

    python benchmarks/bench_gap.py --horizon [--time-limit 60] [--intervals 12]

The horizon problem instead (``slit.optimise.horizon``): for the default scenario's horizons
(both served models on their GPU pools, H = 8, as ``slit run`` plans them) starting at the 12
busiest intervals (``experiment.problems.scenario_busiest_horizons``), SLIT's decision
(``experiment.run.slit_step``, as ``slit run`` and ``slit plan`` take it: the per-interval
searches, then ``plan_horizon``) and the baselines' (the weighted greedy per interval with the
fixed placement rule; with ``--myopic-milp`` also the per-interval MILP's) are graded against the
horizon MILP's proven bound (``horizon_milp``, HiGHS through highspy, SLIT's plan as its MIP
start) on the preference's weighted sum, normalised by ``HorizonProblem.scales()``. Prints
``horizon_gap_median= horizon_gap_p90= horizon_gap_max=``; a plan the planning model finds
infeasible counts as an infinite gap (``feasible=`` says how many were feasible). Also: the
solver's own gap (its incumbent vs its bound), the incumbent judged by the planning model
against its MILP objective (``incumbent_model_slack``: how much the model's relaxations
undershoot a plan's true cost) and SLIT against the best plan known (its own, the baselines',
the incumbent judged, feasible or not), and against the blocks' bounds alone, summed
(``interval_bound_gap``: each (interval, model) block solved alone; their bounds are the horizon
MILP's interval cuts, solved before and outside its ``--time-limit``, each block for at most
``--interval-time-limit`` seconds, default 30: on a quiet machine the blocks then close,
measured 1-15 s each, where 6 s left many unproven under load). With
``--coupled-time-limit S`` each interval's models are also bounded together on the pools
(``HorizonMilp.coupled_interval_bound``, S seconds per interval, outside ``--time-limit``), each
a cut and their sum a bound (``horizon_coupled_bound_gap_median``); about 2 min more per horizon
with S = 30. Target: horizon_gap_median <= 5 %.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

import numpy as np
from pymoo.util.ref_dirs import get_reference_directions

from slit.experiment.problems import busiest_problems
from slit.optimise.baselines import objective_scales, weighted_sum_greedy
from slit.optimise.metaheuristic import plan_interval
from slit.optimise.milp import IntervalMilp
from slit.optimise.problem import evaluate_plans


def _weighted(objectives: np.ndarray, violation: np.ndarray, weights: np.ndarray,
              scales: np.ndarray) -> float:
    score = (np.atleast_2d(objectives) / scales) @ weights
    score = np.where(np.atleast_1d(violation) <= 0, score, np.inf)
    return float(score.min())


def _summary(name: str, gaps: list[float]) -> str:
    g = np.array(gaps) * 100
    return (f"{name}gap_median={np.median(g):.2f}% {name}gap_p90={np.percentile(g, 90):.2f}% "
            f"{name}gap_max={g.max():.2f}%")


def horizon_main(args: argparse.Namespace) -> None:
    from slit.experiment.problems import scenario_busiest_horizons
    from slit.experiment.run import slit_step
    from slit.experiment.scenario import default_scenario
    from slit.optimise.baselines import weighted_greedy
    from slit.optimise.horizon import evaluate_horizon, fixed_placement, horizon_score
    from slit.optimise.horizon_milp import HorizonMilp
    from slit.optimise.milp import milp_plan
    from slit.optimise.policies import interval_seeds

    scenario = default_scenario()
    preference = scenario.preference
    weights = np.asarray(preference.effective_weights, dtype=float)
    horizons = scenario_busiest_horizons(args.intervals)
    gaps: dict[str, list[float]] = {"slit": [], "weighted_greedy": []}
    if args.myopic_milp:
        gaps["milp"] = []
    solve_s, solver_gaps, decision_s, vs_best, incumbent_slack = [], [], [], [], []
    interval_s, vs_interval_bound, vs_coupled_bound = [], [], []
    seeds = interval_seeds(scenario.seed, len(horizons))
    for i, hp in enumerate(horizons):
        # SLIT's whole decision as slit run and slit plan take it (per-interval searches, then
        # the horizon search with their routings as candidates).
        started = time.perf_counter()
        step = slit_step(hp, scenario, seeds[i])
        decision_s.append(time.perf_counter() - started)
        evaluation = evaluate_horizon(hp, step.replicas, step.routing)
        decision = SimpleNamespace(replicas=step.replicas, routing=step.routing,
                                   feasible=evaluation.feasible,
                                   score=horizon_score(hp, evaluation, weights))
        scores = {"slit": decision.score}
        rules = {"weighted_greedy": lambda p: weighted_greedy(p, preference)}
        if args.myopic_milp:
            rules["milp"] = lambda p: milp_plan(p, preference, args.time_limit / 8)
        for name, rule in rules.items():
            x = np.stack([np.stack([rule(hp.steps[k][m]) for m in range(hp.n_models)])
                          for k in range(hp.n_steps)])
            r = fixed_placement(hp, x)
            scores[name] = horizon_score(hp, evaluate_horizon(hp, r, x), weights)
        # SLIT's plan is HiGHS's first incumbent (it prunes; the bound is proven regardless).
        model = HorizonMilp(hp)
        result = model.solve_weighted(weights, time_limit_s=args.time_limit,
                                      start=(decision.replicas, decision.routing)
                                      if decision.feasible else None,
                                      interval_time_limit_s=args.interval_time_limit,
                                      coupled_time_limit_s=args.coupled_time_limit)
        solve_s.append(result.solve_s)
        solver_gaps.append(result.gap)
        interval_s.append(result.interval_s)
        vs_interval_bound.append((decision.score - result.interval_bound)
                                 / abs(result.interval_bound))
        if np.isfinite(result.coupled_bound):
            vs_coupled_bound.append((decision.score - result.coupled_bound)
                                    / abs(result.coupled_bound))
        # The incumbent judged by the planning model (its routing cleaned to rows of 1): how
        # far the MILP's own objective undershoots a plan's, i.e. the model's relaxation slack.
        judged = np.inf
        if result.replicas is not None and result.routing is not None:
            x = np.clip(result.routing, 0.0, None)
            x /= np.maximum(x.sum(axis=-1, keepdims=True), 1e-12)
            ev = evaluate_horizon(hp, result.replicas, x)
            judged = float((ev.objectives / hp.scales()) @ weights)  # ignoring feasibility
            incumbent_slack.append((judged - result.value) / abs(result.value))
        best_known = min(min(scores.values()), judged if np.isfinite(judged) else np.inf)
        vs_best.append((decision.score - best_known) / abs(best_known))
        line = [f"horizon {i:2d}: bound {result.bound:.4f} (solver gap {100 * result.gap:.2f}%,"
                f" incumbent {result.value:.4f}, judged {judged:.4f}; intervals alone"
                f" {result.interval_bound:.4f}, coupled {result.coupled_bound:.4f},"
                f" in {result.interval_s:.0f} s)"]
        for name, score in scores.items():
            gaps[name].append((score - result.bound) / abs(result.bound))
            line.append(f"{name} {score:.4f} ({100 * gaps[name][-1]:+.2f}%)")
        print(" ".join(line) + f" slit_decision {decision_s[-1]:.2f} s", flush=True)
    for name, values in gaps.items():
        prefix = "horizon_" if name == "slit" else f"horizon_{name}_"
        feasible = sum(np.isfinite(values))
        print(_summary(prefix, values) + f" {prefix}feasible={feasible}/{len(values)}")
    print(f"horizon_solver_gap_median={100 * np.median(solver_gaps):.2f}% "
          f"horizon_solver_gap_max={100 * np.max(solver_gaps):.2f}% "
          f"horizon_milp_solve_s_median={statistics.median(solve_s):.1f}")
    print(f"horizon_interval_bound_gap_median={100 * np.median(vs_interval_bound):.2f}% "
          f"horizon_interval_solve_s_median={statistics.median(interval_s):.1f} "
          "(SLIT vs the blocks' bounds alone, summed; their solves, part of the MILP's)")
    if vs_coupled_bound:
        print(f"horizon_coupled_bound_gap_median={100 * np.median(vs_coupled_bound):.2f}% "
              f"(SLIT vs the coupled interval bounds summed, --coupled-time-limit "
              f"{args.coupled_time_limit:g} s per interval)")
    if incumbent_slack:
        print(f"horizon_incumbent_model_slack_median={100 * np.median(incumbent_slack):.2f}% "
              "(the MILP incumbent judged by the planning model vs its MILP objective)")
    print(f"horizon_slit_vs_best_known_median={100 * np.median(vs_best):.2f}% "
          f"horizon_slit_vs_best_known_max={100 * np.max(vs_best):.2f}% "
          f"horizon_slit_decision_s_median={statistics.median(decision_s):.2f}")
    print(f"load_average_1min={os.getloadavg()[0]:.2f}")
    print(f"horizon_gap_median={100 * np.median(gaps['slit']):.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-limit", type=float, default=None,
                        help="MILP seconds per solve (default 5; 60 with --horizon)")
    parser.add_argument("--intervals", type=int, default=12)
    parser.add_argument("--horizon", action="store_true", help="grade the horizon problem")
    parser.add_argument("--interval-time-limit", type=float, default=30.0,
                        help="with --horizon: seconds per (interval, model) block solved alone "
                             "for the interval cuts (default 30: long enough that the blocks "
                             "close on a quiet machine; 6 s left many unproven under load)")
    parser.add_argument("--coupled-time-limit", type=float, default=None,
                        help="with --horizon: seconds per interval for the coupled interval "
                             "bound (both models on the pools; off by default)")
    parser.add_argument("--myopic-milp", action="store_true",
                        help="with --horizon: also grade the per-interval MILP (slow)")
    args = parser.parse_args()
    if args.horizon:
        args.time_limit = 60.0 if args.time_limit is None else args.time_limit
        horizon_main(args)
        return
    args.time_limit = 5.0 if args.time_limit is None else args.time_limit
    weights = get_reference_directions("das-dennis", 4, n_partitions=3)
    slit_gaps: list[float] = []
    greedy_gaps: list[float] = []
    milp_gaps: list[float] = []
    solve_s: list[float] = []
    solver_gaps: list[float] = []
    slit_vs_best: list[float] = []
    worst: list[tuple[float, int, tuple[float, ...]]] = []
    for i, problem in enumerate(busiest_problems(args.intervals)):
        scales = objective_scales(problem)
        decision = plan_interval(problem)
        model = IntervalMilp.build(problem)
        row = []
        for w in weights:
            result = model.solve_weighted(w, scales, args.time_limit)
            solve_s.append(result.solve_s)
            bound = result.bound
            slit = _weighted(decision.front_objectives, decision.front_violation_s, w, scales)
            greedy = evaluate_plans(problem, weighted_sum_greedy(problem, w))
            g = _weighted(greedy.objectives, greedy.slo_violation_s, w, scales)
            if result.routing is not None:
                mine = evaluate_plans(problem, result.routing)
                m = _weighted(mine.objectives, mine.slo_violation_s, w, scales)
            else:
                m = np.inf
            solver_gaps.append(result.gap)
            best_known = min(slit, g, m)
            slit_vs_best.append((slit - best_known) / best_known)
            slit_gaps.append((slit - bound) / bound)
            greedy_gaps.append((g - bound) / bound)
            milp_gaps.append((m - bound) / bound)
            row.append(slit_gaps[-1])
            worst.append((slit_gaps[-1], i, tuple(float(a) for a in np.round(w, 3))))
        print(f"interval {i:2d} ({model.size['binaries']} binaries): slit gap median "
              f"{100 * np.median(row):.2f}% max {100 * max(row):.2f}%, greedy median "
              f"{100 * np.median(greedy_gaps[-len(weights):]):.2f}%, milp plan median "
              f"{100 * np.median(milp_gaps[-len(weights):]):.2f}%, solve median "
              f"{statistics.median(solve_s[-len(weights):]):.1f} s", flush=True)
    by_weight: dict[tuple[float, ...], list[float]] = {}
    for gap, _, w in worst:
        by_weight.setdefault(w, []).append(gap)
    for w, gaps in sorted(by_weight.items(), key=lambda kv: -float(np.median(kv[1]))):
        print(f"weights {w}: slit gap median {100 * np.median(gaps):.2f}% "
              f"max {100 * max(gaps):.2f}%")
    print(_summary("greedy_", greedy_gaps))
    print(_summary("milp_plan_", milp_gaps))
    print(_summary("slit_vs_best_known_", slit_vs_best))
    print(f"solver_gap_median={100 * np.median(solver_gaps):.2f}% "
          f"solver_gap_p90={100 * np.percentile(solver_gaps, 90):.2f}% "
          f"(incumbent vs bound inside the model; 0 = proven optimal)")
    print(f"milp_solve_s_median={statistics.median(solve_s):.2f} "
          f"milp_time_limit_s={args.time_limit:g}")
    # Shared machine: a loaded one stops more solves at the clock (compare solver_gap).
    print(f"load_average_1min={os.getloadavg()[0]:.2f}")
    print(_summary("", slit_gaps))


if __name__ == "__main__":
    main()
