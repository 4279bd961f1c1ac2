"""Time of one SLIT scheduling decision (15 sites x 15 origins), and how it scales with sites.

    python benchmarks/bench_decision.py

Prints one line per interval and per site count, and ends with ``median_decision_s=X``: the
median wall time of ``plan_interval`` on the default day's problems. Target: X <= 1.0 on 2 cores.
"""

from __future__ import annotations

import statistics
import time

from slit.experiment.problems import default_problems, widened
from slit.optimise.metaheuristic import plan_interval


def main() -> None:
    problems = default_problems(every=8)
    plan_interval(problems[0])  # warm-up: imports, first-call overheads
    times = []
    for k, problem in enumerate(problems):
        started = time.perf_counter()
        plan_interval(problem)
        times.append(time.perf_counter() - started)
        print(f"interval {k * 8:3d}: {times[-1]:.3f} s")
    for n_sites in (5, 10, 15, 30, 45, 60):
        sample = [widened(p, n_sites, seed=n_sites) for p in problems[:4]]
        spent = []
        for problem in sample:
            started = time.perf_counter()
            plan_interval(problem)
            spent.append(time.perf_counter() - started)
        print(f"sites={n_sites} origins=15 median_s={statistics.median(spent):.3f}")
    print(f"median_decision_s={statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
