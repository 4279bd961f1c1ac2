"""Baseline routing policies, run on exactly the inputs SLIT gets.

Every baseline decides only the routing; the awake fleet then follows from the routed load by the
same SLO sizing rule for every policy (``IntervalProblem.awake_for_load``), so comparisons measure
where requests go, not how aggressively replicas are put to sleep.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slit.optimise.local_search import cheapest_targets, local_search
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, PlanEvaluation, evaluate_plans
from slit.optimise.routing import greedy_fill, normalise_rows


def reference_operating_point(problem: IntervalProblem) -> tuple[np.ndarray, np.ndarray]:
    """Per site: IT energy per request (kWh) and site TTFT mean (s) when it runs at capacity.

    The linear cost of serving one more request at a site, used by the greedy baselines and the
    LP reference: all replicas awake, loaded to the SLO capacity for the nearest origin.
    """
    cap = problem.max_load_rps()
    energy = np.empty(problem.n_sites)
    ttft = np.empty(problem.n_sites)
    for s, table in enumerate(problem.tables):
        load = max(float(cap[s]), 1e-9)
        mean, _, power = table.lookup(np.array([load]), np.array([table.installed]))
        energy[s] = power[0] / load / 3.6e6
        ttft[s] = mean[0]
    return energy, ttft


def latency_first(problem: IntervalProblem) -> np.ndarray:
    """Each origin to its nearest site, spilling to the next nearest when a site is full."""
    return greedy_fill(problem, problem.rtt_s)


def capacity_proportional(problem: IntervalProblem) -> np.ndarray:
    """Round-robin weighted by capacity: every origin spreads over its allowed sites in
    proportion to what each site can carry."""
    shares = np.broadcast_to(problem.max_load_rps()[None, :], problem.allowed.shape)
    return normalise_rows(problem, shares * problem.allowed)


def _per_request_greedy(problem: IntervalProblem, per_kwh: np.ndarray) -> np.ndarray:
    energy_kwh, _ = reference_operating_point(problem)
    per_request = energy_kwh * per_kwh
    # Round trip breaks ties (and orders origins among equally good sites).
    score = per_request[None, :] + 1e-9 * problem.rtt_s
    return greedy_fill(problem, score)


def lowest_carbon(problem: IntervalProblem) -> np.ndarray:
    """Greedy: fill sites in order of carbon per request."""
    return _per_request_greedy(problem, problem.carbon_kg_per_kwh_it)


def lowest_water(problem: IntervalProblem) -> np.ndarray:
    """Greedy: fill sites in order of water per request."""
    return _per_request_greedy(problem, problem.water_l_per_kwh_it)


def cheapest_energy(problem: IntervalProblem) -> np.ndarray:
    """Greedy: fill sites in order of energy cost per request."""
    return _per_request_greedy(problem, problem.cost_usd_per_kwh_it)


MIN_ENERGY_ROUNDS = 12


def min_energy(problem: IntervalProblem) -> np.ndarray:
    """The least IT energy plan we find without a solver: a greedy fill in order of IT energy
    per request, and the other single-objective baselines, as starts; steepest descent on the
    interval's IT energy (SLO-feasible plans only) from the best of them. Fleets are sized by
    the shared SLO rule. The descent matters: with fleets sized per site, linear per-request
    costs miss that a half-loaded site keeps replicas awake."""
    starts = np.stack([_per_request_greedy(problem, np.ones(problem.n_sites))]
                      + [rule(problem) for rule in (latency_first, capacity_proportional,
                                                    lowest_carbon, lowest_water,
                                                    cheapest_energy)])

    def it_energy(ev: PlanEvaluation) -> np.ndarray:
        return np.where(ev.slo_violation_s <= 0, ev.energy_kwh.sum(axis=1), np.inf)

    best = starts[int(np.argmin(it_energy(evaluate_plans(problem, starts))))]
    energy_kwh, _ = reference_operating_point(problem)
    targets = cheapest_targets(problem, np.broadcast_to(energy_kwh, problem.allowed.shape)
                               + 1e-9 * problem.rtt_s)
    return local_search(problem, best, it_energy, targets, MIN_ENERGY_ROUNDS)


def pair_costs(problem: IntervalProblem) -> np.ndarray:
    """``[4, O, S]`` linear cost of serving one request/s of origin o at site s for one interval,
    per objective: TTFT (s, demand-weighted share), carbon (kg), water (L), cost (USD)."""
    energy_kwh, ttft = reference_operating_point(problem)
    per_interval = energy_kwh * problem.interval_s
    total = max(float(problem.demand_rps.sum()), 1e-12)
    shape = problem.rtt_s.shape
    return np.stack(
        [
            (problem.rtt_s + ttft[None, :]) / total,
            np.broadcast_to(per_interval * problem.carbon_kg_per_kwh_it, shape),
            np.broadcast_to(per_interval * problem.water_l_per_kwh_it, shape),
            np.broadcast_to(per_interval * problem.cost_usd_per_kwh_it, shape),
        ]
    )


def objective_scales(problem: IntervalProblem) -> np.ndarray:
    """[4] typical magnitude of each objective for this interval, to weigh them comparably:
    the value if all demand were served at the mean pair cost."""
    costs = pair_costs(problem)
    allowed = problem.allowed
    mean_cost = np.array([c[allowed].mean() if allowed.any() else c.mean() for c in costs])
    scale = np.abs(mean_cost) * problem.demand_rps.sum()
    return np.where(scale > 0, scale, 1.0)


def scaled_pair_costs(problem: IntervalProblem) -> np.ndarray:
    """``pair_costs`` with each objective divided by its typical magnitude (comparable units)."""
    scales = objective_scales(problem)[:, None, None]
    return pair_costs(problem) * problem.demand_rps.sum() / scales


def weighted_sum_greedy(problem: IntervalProblem, weights: tuple[float, ...] | np.ndarray
                        ) -> np.ndarray:
    """Greedy on a weighted sum of the four per-request costs, each scaled to its magnitude."""
    score = np.tensordot(np.asarray(weights, dtype=float), scaled_pair_costs(problem), axes=1)
    return greedy_fill(problem, score)


def weighted_greedy(problem: IntervalProblem, preference: Preference) -> np.ndarray:
    """Greedy on the scenario's own preference weights (the weights SLIT chooses by), so the
    comparison with SLIT is on the same trade-off."""
    return weighted_sum_greedy(problem, preference.effective_weights)


# The baselines that decide from the problem alone (``weighted_greedy`` also needs the
# preference; ``slit.optimise.policies`` registers every policy).
BASELINES: dict[str, Callable[[IntervalProblem], np.ndarray]] = {
    "latency_first": latency_first,
    "capacity_proportional": capacity_proportional,
    "lowest_carbon": lowest_carbon,
    "lowest_water": lowest_water,
    "cheapest_energy": cheapest_energy,
    "min_energy": min_energy,
}
