"""Hand-made serving tables and interval problems for optimiser tests (no simulation needed)."""

from __future__ import annotations

import numpy as np

from slit.optimise.problem import IntervalProblem
from slit.optimise.site_table import SiteServingTable


def queue_table(
    installed: int, capacity_rps: float, base_ttft_s: float = 0.2, idle_w: float = 1000.0,
    busy_w: float = 3000.0, standby_w: float = 50.0,
) -> SiteServingTable:
    """Textbook M/M/1-shaped table: TTFT grows as 1/(1 - utilisation); power linear in it."""
    grid = np.linspace(0.0, 1.2 * capacity_rps, 49)
    rho = np.minimum(grid / capacity_rps, 0.99)
    mean = base_ttft_s / (1.0 - rho)
    tail = 3.0 * mean
    power = idle_w + (busy_w - idle_w) * np.minimum(grid / capacity_rps, 1.0)
    n = installed
    return SiteServingTable(
        installed=n, load_rps_per_replica=grid, ttft_mean_s=np.tile(mean, (n, 1)),
        ttft_tail_s=np.tile(tail, (n, 1)), power_w_per_replica=np.tile(power, (n, 1)),
        standby_w_per_replica=standby_w,
    )


def random_problem(n_origins: int = 15, n_sites: int = 15, seed: int = 0,
                   slo_ttft_s: float = 2.0) -> IntervalProblem:
    rng = np.random.default_rng(seed)
    rtt = rng.uniform(0.01, 0.3, (n_origins, n_sites))
    if n_origins == n_sites:
        np.fill_diagonal(rtt, 0.005)
    tables = tuple(queue_table(int(rng.integers(2, 12)), 2.0) for _ in range(n_sites))
    return IntervalProblem(
        origin_ids=tuple(f"o{i}" for i in range(n_origins)),
        site_ids=tuple(f"s{i}" for i in range(n_sites)),
        demand_rps=rng.uniform(0.5, 6.0, n_origins),
        rtt_s=rtt,
        allowed=np.ones((n_origins, n_sites), bool),
        tables=tables,
        carbon_kg_per_kwh_it=rng.uniform(0.02, 0.8, n_sites),
        water_l_per_kwh_it=rng.uniform(0.5, 5.0, n_sites),
        cost_usd_per_kwh_it=rng.uniform(0.02, 0.2, n_sites),
        interval_s=900.0,
        planning_slo_ttft_s=slo_ttft_s,
    )
