"""Time of one SLIT scheduling decision (15 sites x 15 origins), how it scales with sites, and
how SLIT's chosen plan compares with the weighted greedy on the busiest intervals.

    python benchmarks/bench_decision.py

Prints one line per interval and per site count, then, for the 12 busiest intervals of the
default day, SLIT's and weighted_greedy's preference scores (the scenario's weights, objectives
scaled per interval); ends with ``slit_better_than_weighted_greedy=N/12``,
``median_gap_vs_weighted_greedy_pct=G`` (negative: SLIT lower) and ``median_decision_s=X``: the
median wall time of ``plan_interval`` on the default day's problems (its CPU time beside it).
Target: X <= 1.0 on 2 cores.

Then the horizon decision (``plan_horizon``: two models, H = 8, every 8th interval of the day
as the first of a horizon, warm-started from the previous horizon shifted): one line per
horizon and ``median_decision_s_horizon=Y``. Target: Y <= 3.0 on 2 cores.
"""

from __future__ import annotations

import statistics
import time

from slit.experiment.problems import busiest_problems, default_problems, widened
from slit.experiment.scenario import default_scenario
from slit.optimise.baselines import objective_scales, weighted_greedy
from slit.optimise.metaheuristic import plan_interval
from slit.optimise.policies import interval_seeds
from slit.optimise.problem import evaluate_plans


def main() -> None:
    problems = default_problems(every=8)
    plan_interval(problems[0])  # warm-up: imports, first-call overheads
    times, cpu_times = [], []
    for k, problem in enumerate(problems):
        started, cpu = time.perf_counter(), time.process_time()
        plan_interval(problem)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
        print(f"interval {k * 8:3d}: {times[-1]:.3f} s (cpu {cpu_times[-1]:.3f} s)")
    for n_sites in (5, 10, 15, 30, 45, 60):
        sample = [widened(p, n_sites, seed=n_sites) for p in problems[:4]]
        spent = []
        for problem in sample:
            started = time.perf_counter()
            plan_interval(problem)
            spent.append(time.perf_counter() - started)
        print(f"sites={n_sites} origins=15 median_s={statistics.median(spent):.3f}")

    preference = default_scenario().preference
    busiest = busiest_problems(12)
    seeds = interval_seeds(0, len(busiest))
    gaps, busy_times, busy_cpu = [], [], []
    for k, problem in enumerate(busiest):
        scales = objective_scales(problem)
        cpu = time.process_time()
        decision = plan_interval(problem, preference, seed=seeds[k])
        busy_times.append(decision.decision_s)
        busy_cpu.append(time.process_time() - cpu)
        greedy = evaluate_plans(problem, weighted_greedy(problem, preference))
        slit_score = preference.score(decision.objectives[None],
                                      [decision.slo_violation_s], scales)[0]
        greedy_score = preference.score(greedy.objectives, greedy.slo_violation_s, scales)[0]
        gaps.append(100.0 * (slit_score / greedy_score - 1.0))
        print(f"busy {k:2d}: slit {slit_score:.5f} weighted_greedy {greedy_score:.5f} "
              f"gap {gaps[-1]:+.2f} % decision {decision.decision_s:.3f} s")
    better = sum(g < 0 for g in gaps)
    print(f"slit_better_than_weighted_greedy={better}/{len(gaps)}")
    print(f"median_gap_vs_weighted_greedy_pct={statistics.median(gaps):+.2f}")
    print(f"busiest_median_decision_s={statistics.median(busy_times):.3f} "
          f"(cpu {statistics.median(busy_cpu):.3f})")
    # CPU time as well: on a shared machine, wall time measures the other processes too.
    print(f"median_decision_cpu_s={statistics.median(cpu_times):.3f}")
    print(f"median_decision_s={statistics.median(times):.3f}")
    horizon_decisions()


def horizon_decisions() -> None:
    from slit.experiment.problems import (
        default_horizon_problems,
        steady_replicas,
        two_model_horizon,
    )
    from slit.optimise.horizon_search import plan_horizon

    day = default_horizon_problems()
    preference = default_scenario().preference
    times, cpu_times = [], []
    for start in range(0, len(day) - 1, 8):
        # One receding-horizon step: plan at `start`, commit its first interval, re-plan at
        # `start + 1` warm-started from the shifted plan; the second decision is timed.
        hp = two_model_horizon(day, start, 8, initial=steady_replicas(day, max(start - 1, 0)))
        first = plan_horizon(hp, preference)
        nxt = two_model_horizon(day, start + 1, 8, initial=first.replicas[0])
        cpu = time.process_time()
        decision = plan_horizon(nxt, preference, previous=(first.replicas, first.routing))
        cpu_times.append(time.process_time() - cpu)
        times.append(decision.decision_s)
        print(f"horizon at {start + 1:3d}: {decision.decision_s:.3f} s (cpu {cpu_times[-1]:.3f}"
              f" s; cold {first.decision_s:.3f} s) feasible={decision.feasible} "
              f"score={decision.score:.4f}")
    # CPU time as well: on a shared machine, wall time measures the other processes too.
    print(f"median_decision_cpu_s_horizon={statistics.median(cpu_times):.3f}")
    print(f"median_decision_s_horizon={statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
