"""Hypervolume of SLIT's Pareto front relative to the LP reference front.

    python benchmarks/bench_hv.py

For a set of intervals of the default day, SLIT's front and the LP's front (HiGHS over a lattice
of objective weights) are both judged by the same surrogate model; prints the ratio per interval
and ends with ``hv_ratio=X``, the mean ratio. Target: X >= 0.95.
"""

from __future__ import annotations

import statistics

from slit.experiment.problems import default_problems
from slit.optimise.metaheuristic import plan_interval
from slit.optimise.quality import hypervolume_ratio


def main() -> None:
    ratios = []
    for k, problem in enumerate(default_problems(every=8)):
        decision = plan_interval(problem)
        ratio, lp = hypervolume_ratio(problem, decision.front_objectives)
        ratios.append(ratio)
        print(f"interval {k * 8:3d}: slit front {len(decision.front_objectives):3d} plans, "
              f"lp front {len(lp):3d} plans, hv ratio {ratio:.3f}")
    print(f"min_hv_ratio={min(ratios):.3f}")
    print(f"hv_ratio={statistics.mean(ratios):.3f}")


if __name__ == "__main__":
    main()
