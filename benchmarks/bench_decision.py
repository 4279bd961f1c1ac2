"""Time of one SLIT scheduling decision (15 sites x 15 origins), how it scales with sites, and
how SLIT's chosen plan compares with the weighted greedy on the busiest intervals.

    python benchmarks/bench_decision.py

Prints one line per interval and per site count, then, for the 12 busiest intervals of the
default day, SLIT's and weighted_greedy's preference scores (the scenario's weights, objectives
scaled per interval); ends with ``slit_better_than_weighted_greedy=N/12``,
``median_gap_vs_weighted_greedy_pct=G`` (negative: SLIT lower) and ``median_decision_s=X``: the
median wall time of ``plan_interval`` on the default day's problems (its CPU time beside it).
Target: X <= 1.0 on 2 cores.

Then the horizon decision on the default scenario itself (both served models on their GPU
pools, H = 8; ``experiment.run.slit_step``, SLIT's whole decision in ``slit run`` and ``slit
plan``: the per-interval searches and the horizon search), at the interval after every 8th of
the day, from the state the previous decision committed and warm-started from its plan shifted:
one line per horizon, ``median_horizon_search_s`` (``plan_horizon`` alone) and
``median_decision_s_horizon=Y``. Target: Y <= 3.0 on 2 cores.
"""

from __future__ import annotations

import statistics
import sys
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
    import numpy as np

    from slit.experiment.horizon_inputs import HorizonInputs, horizon_problem
    from slit.experiment.problems import _progress
    from slit.experiment.run import prepare_models, slit_step
    from slit.optimise.horizon_policies import HORIZON_POLICIES
    from slit.optimise.horizon_search import plan_horizon

    # The default scenario itself (both served models on their GPU pools), as slit run and
    # slit plan plan it.
    scenario = default_scenario()
    inputs = HorizonInputs(scenario, prepare_models(scenario, _progress), 8)
    print(file=sys.stderr)
    preference = scenario.preference
    n_s, n_m = len(scenario.sites), len(scenario.model_names)
    zero, old = np.zeros((n_s, n_m), dtype=np.int64), np.full((n_s, n_m), scenario.min_up_s)
    seeds = interval_seeds(scenario.seed, scenario.n_intervals)
    times, cpu_times, search_times = [], [], []
    for start in range(0, scenario.n_intervals - 1, 8):
        # One receding-horizon step: SLIT's decision at `start` from the replicas the fixed
        # rule keeps for the weighted greedy's plan of the interval before (up long enough to
        # be released), its first interval committed; the decision at `start + 1`, from that
        # state and warm-started from the plan shifted, is timed: slit_step, SLIT's whole
        # decision in slit run and slit plan (per-interval searches and the horizon search).
        before = horizon_problem(inputs, max(start - 1, 0), zero, old)
        state = HORIZON_POLICIES["weighted_greedy"].plan(before, preference, None)[0][0]
        first = slit_step(horizon_problem(inputs, start, state, old), scenario, seeds[start])
        committed = first.replicas[0]
        up_s = np.where(committed > state, 0.0, old) + scenario.interval_s
        nxt = horizon_problem(inputs, start + 1, committed, up_s)
        started, cpu = time.perf_counter(), time.process_time()
        step = slit_step(nxt, scenario, seeds[start + 1], (first.replicas, first.routing))
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
        # The horizon search alone, on the same problem and warm start.
        search = plan_horizon(nxt, preference, (first.replicas, first.routing),
                              first_routing=np.stack([d.routing for d in step.decisions]),
                              seed=int(seeds[start + 1].generate_state(1)[0]))
        search_times.append(search.decision_s)
        print(f"horizon at {start + 1:3d}: {times[-1]:.3f} s (cpu {cpu_times[-1]:.3f} s; "
              f"horizon search {search.decision_s:.3f} s) feasible={search.feasible} "
              f"score={search.score:.4f}")
    # CPU time as well: on a shared machine, wall time measures the other processes too.
    print(f"median_horizon_search_s={statistics.median(search_times):.3f}")
    print(f"median_decision_cpu_s_horizon={statistics.median(cpu_times):.3f}")
    print(f"median_decision_s_horizon={statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
