"""The interval problem: route each origin's demand to sites and size the awake fleets.

Decision: a routing matrix ``X[o, s]`` (share of origin ``o``'s requests served at site ``s``;
rows sum to 1, zero where residency pins or the TTFT SLO forbid the pair). The awake replicas per
site follow from the routed load: the fewest replicas whose predicted tail TTFT (the SLO
percentile) stays within what the SLO leaves after the round trip (``awake_for_load``), so every
policy sizes fleets by the same rule and differs only in where it sends requests.

Objectives, all minimised, for one interval: demand-weighted mean TTFT (s, network round trip +
site TTFT), carbon (kg), water (L, on-site + off-site) and energy cost (USD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slit.optimise.site_table import SiteServingTable

OBJECTIVES: tuple[str, ...] = ("ttft_mean_s", "carbon_kg", "water_l", "cost_usd")
SHARE_EPS = 1e-3  # shares below this are treated as "not routed" by the SLO check
TARGET_GRID = np.linspace(0.0, 1.0, 41)  # site tail targets as fractions of the SLO


@dataclass(frozen=True)
class IntervalProblem:
    """Everything known (forecast) when planning one interval."""

    origin_ids: tuple[str, ...]
    site_ids: tuple[str, ...]
    demand_rps: np.ndarray  # [O] forecast mean request rate per origin
    rtt_s: np.ndarray  # [O, S] network round trip
    allowed: np.ndarray  # [O, S] bool: pins and SLO reachability
    tables: tuple[SiteServingTable, ...]  # [S]
    carbon_kg_per_kwh_it: np.ndarray  # [S] forecast, per kWh of IT energy (PUE included)
    water_l_per_kwh_it: np.ndarray  # [S]
    cost_usd_per_kwh_it: np.ndarray  # [S]
    interval_s: float
    planning_slo_ttft_s: float  # the user's SLO less the planning margin
    # slo_capacity_rps[s, k, n - 1]: load that n awake replicas of site s carry with site tail TTFT
    # within TARGET_GRID[k] x SLO; the target a plan needs is the SLO less the worst round trip
    # it routes to the site.
    slo_capacity_rps: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n_o, n_s = len(self.origin_ids), len(self.site_ids)
        if self.rtt_s.shape != (n_o, n_s) or self.allowed.shape != (n_o, n_s):
            raise ValueError("rtt_s and allowed must be [origins, sites]")
        if len(self.tables) != n_s:
            raise ValueError("one serving table per site")
        width = max(t.installed for t in self.tables)
        caps = np.zeros((n_s, len(TARGET_GRID), width))
        for s, table in enumerate(self.tables):
            for k, fraction in enumerate(TARGET_GRID):
                cap = table.slo_capacity_rps(fraction * self.planning_slo_ttft_s)
                caps[s, k, : len(cap)] = cap
                caps[s, k, len(cap):] = np.inf  # replicas a site does not have never suffice
        object.__setattr__(self, "slo_capacity_rps", caps)

    @property
    def n_origins(self) -> int:
        return len(self.origin_ids)

    @property
    def n_sites(self) -> int:
        return len(self.site_ids)

    @property
    def installed(self) -> np.ndarray:
        return np.array([t.installed for t in self.tables])

    def max_load_rps(self, worst_rtt_s: np.ndarray | None = None) -> np.ndarray:
        """[S] largest load each site carries within the SLO with every replica awake.

        ``worst_rtt_s`` [S] is the longest round trip routed to each site (default: the nearest
        allowed origin's, i.e. the most load a site can take at all).
        """
        if worst_rtt_s is None:
            masked = np.where(self.allowed, self.rtt_s, np.inf).min(axis=0)
            worst_rtt_s = np.where(np.isfinite(masked), masked, self.planning_slo_ttft_s)
        k = self.target_index(worst_rtt_s)
        sites = np.arange(self.n_sites)
        return self.slo_capacity_rps[sites, k, self.installed - 1]

    def target_index(self, worst_rtt_s: np.ndarray) -> np.ndarray:
        """Index into ``TARGET_GRID`` of the tail-TTFT budget left after ``worst_rtt_s``."""
        fraction = 1.0 - np.asarray(worst_rtt_s) / self.planning_slo_ttft_s
        # Round the remaining budget down to the grid, so sizing is never optimistic.
        return np.clip(np.searchsorted(TARGET_GRID, fraction, side="right") - 1, 0, None)

    def worst_rtt_s(self, routing: np.ndarray) -> np.ndarray:
        """[P, S] longest round trip among the origins each plan routes to each site."""
        routed = routing > SHARE_EPS
        return np.where(routed, self.rtt_s[None], 0.0).max(axis=1)

    def awake_for_load(self, load_rps: np.ndarray, worst_rtt_s: np.ndarray) -> np.ndarray:
        """Fewest awake replicas per site keeping pair tail TTFT within the SLO ([P, S]).

        A site with no load sleeps entirely; a site loaded past its capacity keeps all awake.
        """
        load = np.atleast_2d(np.asarray(load_rps, dtype=float))
        k = self.target_index(np.atleast_2d(worst_rtt_s))
        out = np.zeros(load.shape, dtype=np.int64)
        for s, table in enumerate(self.tables):
            caps = self.slo_capacity_rps[s, k[:, s], : table.installed]  # [P, N]
            need = (caps < load[:, s, None]).sum(axis=1) + 1
            out[:, s] = np.where(load[:, s] > 0, np.minimum(need, table.installed), 0)
        return out


@dataclass(frozen=True, slots=True)
class PlanEvaluation:
    """Objectives of a population of plans under the problem's model (leading axis: plan)."""

    objectives: np.ndarray  # [P, 4] in OBJECTIVES order
    awake: np.ndarray  # [P, S]
    load_rps: np.ndarray  # [P, S]
    site_ttft_tail_s: np.ndarray  # [P, S]
    slo_violation_s: np.ndarray  # [P] worst (rtt + site tail - SLO) over routed pairs; <= 0 ok
    energy_kwh: np.ndarray  # [P, S] IT energy over the interval


def evaluate_plans(problem: IntervalProblem, routing: np.ndarray) -> PlanEvaluation:
    """Evaluate routing matrices ``[P, O, S]`` (or one ``[O, S]``) under the problem's model."""
    x = np.asarray(routing, dtype=float)
    if x.ndim == 2:
        x = x[None]
    demand = problem.demand_rps
    load = np.einsum("o,pos->ps", demand, x)
    awake = problem.awake_for_load(load, problem.worst_rtt_s(x))
    ttft_mean = np.empty_like(load)
    ttft_tail = np.empty_like(load)
    power_w = np.empty_like(load)
    for s, table in enumerate(problem.tables):
        ttft_mean[:, s], ttft_tail[:, s], power_w[:, s] = table.lookup(load[:, s], awake[:, s])
    energy_kwh = power_w * problem.interval_s / 3.6e6
    total_demand = max(float(demand.sum()), 1e-12)
    flow = demand[None, :, None] * x  # [P, O, S] req/s
    ttft = (flow * (problem.rtt_s[None] + ttft_mean[:, None, :])).sum(axis=(1, 2)) / total_demand
    objectives = np.stack(
        [
            ttft,
            energy_kwh @ problem.carbon_kg_per_kwh_it,
            energy_kwh @ problem.water_l_per_kwh_it,
            energy_kwh @ problem.cost_usd_per_kwh_it,
        ],
        axis=1,
    )
    routed = x > SHARE_EPS
    pair_tail = problem.rtt_s[None] + ttft_tail[:, None, :]
    slo = problem.planning_slo_ttft_s
    violation = np.where(routed, pair_tail - slo, -np.inf).max(axis=(1, 2))
    return PlanEvaluation(objectives, awake, load, ttft_tail, violation, energy_kwh)
