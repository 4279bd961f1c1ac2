"""One simulated hour of the realistic-scale day (``scenarios/scale.yaml``) with every policy.

2,000 req/s worldwide on the 15 default regions (thousands of GPUs): the hour is planned by SLIT
and every baseline and judged by the request-level simulation of each (site, policy). With
``--workers N`` the site simulations run as Ray tasks on a local runtime of N CPUs. Prints each
policy's figures and ends with ``scale_requests=``, ``scale_wall_s=`` and ``peak_rss_mb=``
(peak resident memory of this process; Ray workers, if any, are separate processes).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from slit.config import load_scenario
from slit.data.source import DataSource
from slit.experiment.run import POLICIES, run_experiment

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="real data folder (default: $SLIT_DATA_DIR, else embedded)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="Ray CPUs; 0: no Ray")
    args = parser.parse_args()
    scenario = load_scenario(REPO / "scenarios" / "scale.yaml",
                             data_dir=DataSource.resolve(args.data_dir), hours=args.hours)
    gpus = sum(s.installed * s.replica.tp for s in scenario.sites)
    print(f"scale: {scenario.demand.global_rate_rps:g} req/s, {len(scenario.sites)} sites, "
          f"{gpus} GPUs, {args.hours:g} h, data: {scenario.data}")
    started_ray = False
    if args.workers > 0:
        from slit.sweep.runner import start_ray

        started_ray = start_ray(None, args.workers)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage] = time.perf_counter() - started

    try:
        result = run_experiment(scenario, POLICIES, progress)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    wall_s = time.perf_counter() - started
    print("stages ended at (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    for policy, m in result.metrics.items():
        print(f"{policy:>16}: {m.requests} requests, SLO {m.slo_attainment_pct:.2f} %, "
              f"carbon {m.carbon_kg:.1f} kg, water {m.water_l:.0f} L, cost {m.cost_usd:.0f} USD")
    print(f"scale_requests={next(iter(result.metrics.values())).requests}")
    print(f"scale_wall_s={wall_s:.1f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
