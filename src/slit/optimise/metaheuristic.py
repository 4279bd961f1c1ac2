"""SLIT's multi-objective search: NSGA-II (pymoo) over routing matrices.

The encoding and the variation operators are in ``slit.optimise.operators``. The first population
is warm-started from the previous interval's plan, every baseline and weighted-greedy plans over
pymoo's Das-Dennis reference directions; the plan the preference picks is then refined by a local
search on the preference's own score, and the best plan for each reference direction by a short
one on that direction's weighted sum (where mean TTFT weighs in, followed by one "open a sleeping
site" kick, ``open_site_kick``). Every random draw follows from the ``seed`` given to
``plan_interval`` (in a run: the scenario's seed, spawned per interval).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.optimize import minimize
from pymoo.termination.max_gen import MaximumGenerationTermination
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.ref_dirs import get_reference_directions

from slit.optimise.baselines import (
    BASELINES,
    objective_scales,
    scaled_pair_costs,
    weighted_sum_greedy,
)
from slit.optimise.local_search import (
    PlanScore,
    cheapest_targets,
    fast_evaluate,
    local_search,
)
from slit.optimise.operators import RoutingProblem, RoutingRepair, RowCrossover, ShiftMutation
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, PlanEvaluation, evaluate_plans
from slit.optimise.routing import greedy_fill, normalise_rows, repair


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """Search effort. ``time_budget_s`` stops early when set (results then depend on the
    machine's speed, so reproducible runs leave it unset and rely on ``generations``)."""

    # Measured (docs/scheduler.md): the local searches, not NSGA-II's generations, close the gap
    # above the MILP bound; 60 generations of 64 plans gave the same gaps as 10 of 32.
    population: int = 32
    generations: int = 10
    local_rounds: int = 12
    spread_rounds: int = 8  # local search rounds from each SPREAD_DIRECTIONS' best plan (0: off)
    time_budget_s: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The plan for one interval and the front it was chosen from."""

    routing: np.ndarray  # [O, S]
    awake: np.ndarray  # [S]
    objectives: np.ndarray  # [4]
    slo_violation_s: float
    front_routing: np.ndarray  # [K, O, S]
    front_objectives: np.ndarray  # [K, 4]
    front_violation_s: np.ndarray  # [K]
    chosen: int
    decision_s: float


# 4 objectives, 3 partitions: the 20 weightings with entries in {0, 1/3, 2/3, 1}.
SEED_DIRECTIONS = get_reference_directions("das-dennis", 4, n_partitions=3)
# Directions whose best plan gets a short local search of its own: NSGA-II's variation rarely
# reaches the whole-replica steps, which the local search's moves target, and refining only the
# preference's plan leaves the rest of the front (the plan for any other weighting) unrefined.
# Measured (docs/scheduler.md): one round per direction cuts the median gap above the MILP bound
# by ~1.4 points for ~0.5 s CPU per decision on 15 x 15.
SPREAD_DIRECTIONS = SEED_DIRECTIONS


def seed_plans(problem: IntervalProblem, preference: Preference,
               previous: np.ndarray | None) -> np.ndarray:
    """Warm-start plans: the previous decision, every baseline, weighted-greedy on the
    preference's weights and on the reference directions."""
    plans = [] if previous is None else [normalise_rows(problem, previous)]
    # min_energy is itself a local search (on IT energy); the spread search below covers the
    # energy-only directions at a fraction of its cost.
    plans += [policy(problem) for name, policy in BASELINES.items() if name != "min_energy"]
    # weighted_sum_greedy for each weighting, with the pair costs computed once.
    costs = scaled_pair_costs(problem)
    for w in [np.asarray(preference.effective_weights, dtype=float), *SEED_DIRECTIONS]:
        plans.append(greedy_fill(problem, np.tensordot(w, costs, axes=1)))
    return np.unique(np.round(np.array(plans), 12), axis=0)


def _child(seed: np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    """The i-th child of ``seed`` without advancing its spawn counter, so planning twice with
    the same SeedSequence object gives the same result."""
    return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (i,))


def plan_interval(
    problem: IntervalProblem,
    preference: Preference | None = None,
    settings: SearchSettings | None = None,
    previous: np.ndarray | None = None,
    seed: int | np.random.SeedSequence = 0,
) -> Decision:
    """Search the Pareto front of the interval problem and pick one plan by preference."""
    preference = preference or Preference()
    settings = settings or SearchSettings()
    started = time.perf_counter()
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = np.random.default_rng(_child(root, 0))
    pymoo_seed = int(_child(root, 1).generate_state(1)[0])
    seeds = repair(problem, seed_plans(problem, preference, previous))
    n_random = max(settings.population - len(seeds), 0)
    alpha = np.where(problem.allowed, 0.3, 1e-9)
    random_plans = np.stack(
        [np.stack([rng.dirichlet(a) for a in alpha]) for _ in range(n_random)]
    ) if n_random else np.zeros((0,) + problem.allowed.shape)
    initial = np.concatenate([seeds, repair(problem, random_plans)]) if n_random else seeds
    algorithm = NSGA2(
        pop_size=max(settings.population, len(seeds)),
        sampling=initial.reshape(len(initial), -1),
        crossover=RowCrossover(),
        mutation=ShiftMutation(),
        repair=RoutingRepair(),
        eliminate_duplicates=True,
    )
    termination = MaximumGenerationTermination(settings.generations)
    if settings.time_budget_s is not None:
        from pymoo.termination.collection import TerminationCollection
        from pymoo.termination.max_time import TimeBasedTermination

        termination = TerminationCollection(
            termination, TimeBasedTermination(settings.time_budget_s)
        )
    result = minimize(RoutingProblem(problem), algorithm, termination, seed=pymoo_seed,
                      verbose=False)
    population = result.pop.get("X").reshape(-1, problem.n_origins, problem.n_sites)
    # Seeds join the final front so a plan the search failed to improve on is never lost.
    candidates = np.concatenate([population, seeds])
    ev = evaluate_plans(problem, candidates)
    scales = objective_scales(problem)
    picked = preference.choose(ev.objectives, ev.slo_violation_s, scales)
    # Descend from the plan the preference picks and from the greedy on the preference's
    # weights: they often sit in different basins of the step-wise (whole-replica) landscape.
    starts = np.unique(np.stack([candidates[picked], repair(
        problem, weighted_sum_greedy(problem, preference.effective_weights))]), axis=0)
    targets = preference_targets(problem, preference)
    # knee and weights score plans by the (effective) weights: a linear score, searched with
    # the fast site-by-site move scores; cap is not linear in the objectives.
    linear = None if preference.mode == "cap" else (
        np.asarray(preference.effective_weights, dtype=float) / scales)
    refined = [local_search(
        problem, start, lambda ev: preference.score(ev.objectives, ev.slo_violation_s, scales),
        targets, settings.local_rounds, linear) for start in starts]
    if settings.spread_rounds > 0:
        refined += spread_search(problem, candidates, ev, scales, settings.spread_rounds)
    candidates = np.concatenate([candidates, np.stack(refined)])
    ev = evaluate_plans(problem, candidates)
    front = _feasible_front(ev.objectives, ev.slo_violation_s)
    front_ev = evaluate_plans(problem, candidates[front])
    chosen = preference.choose(front_ev.objectives, front_ev.slo_violation_s, scales)
    return Decision(
        routing=candidates[front][chosen],
        awake=front_ev.awake[chosen],
        objectives=front_ev.objectives[chosen],
        slo_violation_s=float(front_ev.slo_violation_s[chosen]),
        front_routing=candidates[front],
        front_objectives=front_ev.objectives,
        front_violation_s=front_ev.slo_violation_s,
        chosen=chosen,
        decision_s=time.perf_counter() - started,
    )


def spread_search(problem: IntervalProblem, candidates: np.ndarray, ev: PlanEvaluation,
                  scales: np.ndarray, rounds: int) -> list[np.ndarray]:
    """Local search on each of SPREAD_DIRECTIONS' weighted sums from the plan best for it
    among the candidates and the plans refined so far (a plan refined for one direction is
    often the best start for its neighbours), so the plan for any weighting, not only the
    preference's, is refined."""
    out: list[np.ndarray] = []
    objectives, violation = ev.objectives, ev.slo_violation_s
    pool = candidates
    costs = scaled_pair_costs(problem)
    for w in SPREAD_DIRECTIONS:
        linear = w / scales

        def score(e: PlanEvaluation, linear: np.ndarray = linear) -> np.ndarray:
            return np.where(e.slo_violation_s <= 0, e.objectives @ linear, np.inf)

        scores = np.where(violation <= 0, objectives @ linear, np.inf)
        if not np.isfinite(scores).any():  # no feasible plan to refine
            break
        best = int(np.argmin(scores))
        cost = np.tensordot(w, costs, axes=1)
        # The start's score is known: no whole-plan evaluation of it again.
        plan = local_search(problem, pool[best], score, cheapest_targets(problem, cost), rounds,
                            linear, float(scores[best]))
        if OPEN_SITE_KICKS and w[0] > 0:  # the swap and fine moves' directions too
            plan = open_site_kick(problem, plan, score, cost, linear)
        out.append(plan)
        plan_objectives, plan_violation, _, _ = fast_evaluate(problem, plan[None])
        pool = np.concatenate([pool, plan[None]])
        objectives = np.concatenate([objectives, plan_objectives])
        violation = np.concatenate([violation, plan_violation])
    return out


# After each TTFT-weighted direction's descent, open the most promising sleeping site and
# descend again from there (``open_site_kick``): the plans best for mean TTFT sometimes open a
# different *set* of sites (on the busiest intervals, weights 2/3 TTFT + 1/3 water: DE-LU
# opened for the European origins), which no two-site move improves on one step at a time.
# Measured (docs/scheduler.md, the 183 closed (interval, weight) pairs of the busiest
# intervals): gap above the MILP optimum 0.15 / 1.33 / 6.15 % -> 0.13 / 1.20 / 5.67 %
# (median / p90 / max) for ~11 % more CPU per decision; 2 sites or 4 rounds gained little
# more (0.11 / 1.19 / 5.43 %) for 50 % / 18 % more CPU.
OPEN_SITE_KICKS = True
KICK_SITES = 1  # sleeping sites tried, best first by the opened plan's own score
KICK_ROUNDS = 2  # descent rounds from each opened plan


def open_site(problem: IntervalProblem, routing: np.ndarray, cost: np.ndarray, site: int
              ) -> np.ndarray:
    """``routing`` with sleeping ``site`` opened: each origin whose ``cost`` ([O, S]) there is
    below its current (share-weighted) cost moves there whole, most gaining first, while the
    site's whole fleet carries it within the SLO for the longest round trip routed there."""
    x = routing.copy()
    gain = (routing * cost).sum(axis=1) - cost[:, site]
    load_rps, worst_rtt_s = 0.0, 0.0
    full = int(problem.installed[site]) - 1
    for o in np.argsort(-gain, kind="stable"):
        if gain[o] <= 0:
            break
        if not problem.allowed[o, site]:
            continue
        rtt = max(worst_rtt_s, float(problem.rtt_s[o, site]))
        k = int(problem.target_index(np.array([rtt]))[0])
        if load_rps + problem.demand_rps[o] > problem.slo_capacity_rps[site, k, full]:
            continue
        x[o] = 0.0
        x[o, site] = 1.0
        load_rps += float(problem.demand_rps[o])
        worst_rtt_s = rtt
    return x


def open_site_kick(problem: IntervalProblem, plan: np.ndarray, score: PlanScore,
                   cost: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """From a local optimum ``plan`` of ``score`` (``objectives @ linear`` on SLO-feasible
    plans), open each of the KICK_SITES sleeping sites whose opened plan (``open_site``)
    scores best, descend KICK_ROUNDS rounds from it, and return the best plan seen."""
    objectives, violation, _, load = fast_evaluate(problem, plan[None])
    best = float(np.where(violation <= 0, objectives @ linear, np.inf)[0])
    sleeping = np.flatnonzero(load[0] <= 0)
    if len(sleeping) == 0:
        return plan
    opened = np.stack([open_site(problem, plan, cost, int(s)) for s in sleeping])
    f, v, _, _ = fast_evaluate(problem, opened)
    raw = np.where(v <= 0, f @ linear, np.inf)
    for i in np.argsort(raw, kind="stable")[:KICK_SITES]:
        if not np.isfinite(raw[i]):
            break
        found = local_search(problem, opened[i], score, cheapest_targets(problem, cost),
                             KICK_ROUNDS, linear, float(raw[i]))
        f, v, _, _ = fast_evaluate(problem, found[None])
        found_score = float(np.where(v <= 0, f @ linear, np.inf)[0])
        if found_score < best:
            plan, best = found, found_score
    return plan


def preference_targets(problem: IntervalProblem, preference: Preference) -> np.ndarray:
    """[O, S] the allowed sites worth moving an origin's traffic to: its LOCAL_TARGETS cheapest
    by the preference's weights on the linear per-request costs. Keeps the neighbourhood, and so
    the decision time, from growing with the square of the number of sites."""
    weights = np.asarray(preference.effective_weights)
    return cheapest_targets(problem, np.tensordot(weights, scaled_pair_costs(problem), axes=1))


def _feasible_front(objectives: np.ndarray, violation_s: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated plans among the feasible ones (else the least violating)."""
    feasible = np.flatnonzero(violation_s <= 0)
    if len(feasible) == 0:
        return np.array([int(np.argmin(violation_s))])
    unique_f, first = np.unique(objectives[feasible], axis=0, return_index=True)
    nd = NonDominatedSorting().do(unique_f, only_non_dominated_front=True)
    return feasible[first[nd]]
