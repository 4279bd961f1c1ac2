"""SLO attainment during a site outage, and over the period, per policy.

    python benchmarks/bench_outage.py [scenarios/outage.yaml] [--from-utc-hour 11] [--hours 2]

Runs the scenario (default ``scenarios/outage.yaml``: DE-LU down 11:00-13:00 UTC) for SLIT,
latency_first, milp and weighted_greedy and prints, per policy, the share of the requests first
sent during the outage window that got their first token within the SLO (their final outcome:
a handed-off request counts once, where it ended), the period's SLO attainment and the request
outcomes (completed, shed, late, handed off, rejected, in flight). The judge normally drops the
per-request arrays it does not need; this benchmark keeps them (it wraps ``run._judged``).
Issue 13's targets: nothing lost, SLIT >= 97 % during the outage and >= 99 % over the day.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

import slit.experiment.run as run
from slit.config import load_scenario
from slit.simulate.site import SiteSimResult

POLICIES = ("slit", "latency_first", "milp", "weighted_greedy")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", default="scenarios/outage.yaml")
    parser.add_argument("--from-utc-hour", type=float, default=11.0)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    started = time.time()
    kept: list[SiteSimResult] = []

    def keep(sim: SiteSimResult, n_received: int = 0) -> SiteSimResult:
        kept.append(replace(sim, n_received=n_received))
        return kept[-1]

    run._judged = keep
    scenario = load_scenario(args.scenario)
    result = run.run_experiment(scenario, POLICIES)
    per_policy = len(kept) // len(POLICIES)
    lo_s = (args.from_utc_hour - scenario.start_utc.hour) * 3600.0
    hi_s = lo_s + args.hours * 3600.0
    for i, policy in enumerate(POLICIES):
        met = total = 0
        for sim in kept[i * per_policy:(i + 1) * per_policy]:
            final = ~sim.handed_off if sim.handed_off is not None \
                else np.ones(len(sim.arrival_s), bool)
            window = (sim.arrival_s >= lo_s) & (sim.arrival_s < hi_s) & final
            total += int(window.sum())
            met += int((window & sim.completed
                        & (sim.ttft_with_network_s <= scenario.slo_ttft_s)).sum())
        m = result.metrics[policy]
        print(f"{policy}: window_slo_pct={100 * met / max(total, 1):.2f} window_requests={total} "
              f"period_slo_pct={m.slo_attainment_pct:.2f} requests={m.requests} "
              f"completed={m.completed} shed={m.shed} late={m.late} handed_off={m.handed_off} "
              f"rejected={m.rejected} in_flight={m.in_flight} "
              f"lost={m.requests - m.completed - m.shed - m.rejected - m.in_flight}", flush=True)
    print(f"elapsed_s={time.time() - started:.0f}")


if __name__ == "__main__":
    main()
