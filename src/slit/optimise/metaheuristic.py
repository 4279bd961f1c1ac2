"""SLIT's multi-objective search: NSGA-II (pymoo) over routing matrices.

Encoding: the routing matrix flattened (origins x sites), values in [0, 1]. Variation works on
whole origin rows (a row is one origin's routing decision): row-wise uniform crossover, and a
mutation that shifts part of an origin's share from one site to another allowed site. Every
candidate is repaired (allowed pairs, rows summing to 1, site capacity) before evaluation, and the
SLO is a constraint (worst pair tail TTFT minus SLO <= 0). The first population is warm-started
from the previous interval's plan, every baseline and weighted-greedy plans over a weight lattice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.optimize import minimize
from pymoo.termination.max_gen import MaximumGenerationTermination
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from slit.optimise.baselines import (
    BASELINES,
    objective_scales,
    scaled_pair_costs,
    weighted_sum_greedy,
)
from slit.optimise.lp import weight_lattice
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.routing import normalise_rows, repair


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """Search effort. ``time_budget_s`` stops early when set (results then depend on the
    machine's speed, so reproducible runs leave it unset and rely on ``generations``)."""

    population: int = 64
    generations: int = 60
    local_rounds: int = 12
    time_budget_s: float | None = None
    seed: int = 0


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


class _RoutingProblem(Problem):
    def __init__(self, problem: IntervalProblem) -> None:
        self.interval = problem
        n_var = problem.n_origins * problem.n_sites
        super().__init__(n_var=n_var, n_obj=4, n_ieq_constr=1, xl=0.0, xu=1.0)

    def _evaluate(self, x, out, *args, **kwargs):
        plans = x.reshape(-1, self.interval.n_origins, self.interval.n_sites)
        ev = evaluate_plans(self.interval, plans)
        out["F"] = ev.objectives
        out["G"] = ev.slo_violation_s[:, None]


class _RoutingRepair(Repair):
    def _do(self, problem, X, **kwargs):
        p = problem.interval
        plans = repair(p, X.reshape(-1, p.n_origins, p.n_sites))
        return plans.reshape(len(X), -1)


class _RowCrossover(Crossover):
    """Children take each origin's whole row from one parent or the other."""

    def __init__(self) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=0.9)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        p = problem.interval
        _, n_matings, _ = X.shape
        a = X[0].reshape(n_matings, p.n_origins, p.n_sites)
        b = X[1].reshape(n_matings, p.n_origins, p.n_sites)
        take_a = random_state.random((n_matings, p.n_origins, 1)) < 0.5
        first = np.where(take_a, a, b)
        second = np.where(take_a, b, a)
        return np.stack([first, second]).reshape(2, n_matings, -1)


class _ShiftMutation(Mutation):
    """Move a random part of a few origins' share from one site to another allowed site."""

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        p = problem.interval
        plans = X.reshape(len(X), p.n_origins, p.n_sites).copy()
        allowed = p.allowed
        for i in range(len(plans)):
            n_rows = random_state.integers(1, min(3, p.n_origins) + 1)
            for o in random_state.choice(p.n_origins, size=n_rows, replace=False):
                sites = np.flatnonzero(allowed[o])
                if len(sites) < 2:
                    continue
                row = plans[i, o]
                holders = sites[row[sites] > 0]
                source = random_state.choice(holders if len(holders) else sites)
                target = random_state.choice(sites[sites != source])
                moved = row[source] * random_state.uniform(0.2, 1.0)
                row[source] -= moved
                row[target] += moved
        return plans.reshape(len(X), -1)


def seed_plans(problem: IntervalProblem, previous: np.ndarray | None) -> np.ndarray:
    """Warm-start plans: the previous decision, every baseline, weighted-greedy on a lattice."""
    plans = [] if previous is None else [normalise_rows(problem, previous)]
    plans += [policy(problem) for policy in BASELINES.values()]
    plans += [weighted_sum_greedy(problem, w) for w in weight_lattice(3)]
    return np.unique(np.round(np.array(plans), 12), axis=0)


def plan_interval(
    problem: IntervalProblem,
    preference: Preference | None = None,
    settings: SearchSettings | None = None,
    previous: np.ndarray | None = None,
) -> Decision:
    """Search the Pareto front of the interval problem and pick one plan by preference."""
    preference = preference or Preference()
    settings = settings or SearchSettings()
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    seeds = repair(problem, seed_plans(problem, previous))
    n_random = max(settings.population - len(seeds), 0)
    alpha = np.where(problem.allowed, 0.3, 1e-9)
    random_plans = np.stack(
        [np.stack([rng.dirichlet(a) for a in alpha]) for _ in range(n_random)]
    ) if n_random else np.zeros((0,) + problem.allowed.shape)
    initial = np.concatenate([seeds, repair(problem, random_plans)]) if n_random else seeds
    algorithm = NSGA2(
        pop_size=max(settings.population, len(seeds)),
        sampling=initial.reshape(len(initial), -1),
        crossover=_RowCrossover(),
        mutation=_ShiftMutation(),
        repair=_RoutingRepair(),
        eliminate_duplicates=True,
    )
    termination = MaximumGenerationTermination(settings.generations)
    if settings.time_budget_s is not None:
        from pymoo.termination.collection import TerminationCollection
        from pymoo.termination.max_time import TimeBasedTermination

        termination = TerminationCollection(
            termination, TimeBasedTermination(settings.time_budget_s)
        )
    result = minimize(_RoutingProblem(problem), algorithm, termination, seed=settings.seed,
                      verbose=False)
    population = result.pop.get("X").reshape(-1, problem.n_origins, problem.n_sites)
    # Seeds join the final front so a plan the search failed to improve on is never lost.
    candidates = np.concatenate([population, seeds])
    ev = evaluate_plans(problem, candidates)
    scales = objective_scales(problem)
    picked = preference.choose(ev.objectives, ev.slo_violation_s, scales)
    refined = local_search(problem, candidates[picked], preference, scales,
                           settings.local_rounds)
    candidates = np.concatenate([candidates, refined[None]])
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


LOCAL_STEPS = (0.05, 0.25, 1.0)  # share of the source site's part of the row that moves
LOCAL_TARGETS = 8


def local_search(problem: IntervalProblem, routing: np.ndarray, preference: Preference,
                 scales: np.ndarray, rounds: int) -> np.ndarray:
    """Steepest descent on ``preference.score``: each round tries every move of a step of one
    origin's share from a site it uses to another allowed site, and keeps the best if it helps."""
    current = routing
    best = preference.score(*_judged(problem, current[None]), scales)[0]
    targets = _promising_targets(problem, preference)
    for _ in range(rounds):
        moves = _single_moves(problem, current, targets)
        if len(moves) == 0:
            break
        scores = preference.score(*_judged(problem, moves), scales)
        i = int(np.argmin(scores))
        if not scores[i] < best - 1e-12 * max(abs(best), 1.0):
            break
        current, best = moves[i], scores[i]
    return current


def _judged(problem: IntervalProblem, plans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ev = evaluate_plans(problem, plans)
    return ev.objectives, ev.slo_violation_s


def _promising_targets(problem: IntervalProblem, preference: Preference) -> np.ndarray:
    """[O, S] the allowed sites worth moving an origin's traffic to: its LOCAL_TARGETS cheapest
    by the preference's weights on the linear per-request costs. Keeps the neighbourhood, and so
    the decision time, from growing with the square of the number of sites."""
    weights = np.asarray(preference.weights if preference.mode == "weights"
                         else Preference().weights)
    cost = np.tensordot(weights, scaled_pair_costs(problem), axes=1)
    cost = np.where(problem.allowed, cost, np.inf)
    rank = np.argsort(np.argsort(cost, axis=1, kind="stable"), axis=1, kind="stable")
    return problem.allowed & (rank < LOCAL_TARGETS)


def _single_moves(problem: IntervalProblem, routing: np.ndarray, targets: np.ndarray
                  ) -> np.ndarray:
    """All plans one move away from ``routing`` ([M, O, S]), repaired."""
    origin, source = np.nonzero((routing > 0) & (problem.demand_rps[:, None] > 0))
    if len(origin) == 0:
        return np.zeros((0,) + routing.shape)
    # Every (origin, source) pair against every allowed target site and every step.
    o = np.repeat(origin, problem.n_sites)
    src = np.repeat(source, problem.n_sites)
    dst = np.tile(np.arange(problem.n_sites), len(origin))
    keep = (dst != src) & targets[o, dst]
    o, src, dst = o[keep], src[keep], dst[keep]
    steps = np.array(LOCAL_STEPS)
    o, src, dst = (np.repeat(a, len(steps)) for a in (o, src, dst))
    amount = routing[o, src] * np.tile(steps, len(o) // len(steps))
    moves = np.repeat(routing[None], len(o), axis=0)
    index = np.arange(len(o))
    moves[index, o, src] -= amount
    moves[index, o, dst] += amount
    return repair(problem, moves)


def _feasible_front(objectives: np.ndarray, violation_s: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated plans among the feasible ones (else the least violating)."""
    feasible = np.flatnonzero(violation_s <= 0)
    if len(feasible) == 0:
        return np.array([int(np.argmin(violation_s))])
    unique_f, first = np.unique(objectives[feasible], axis=0, return_index=True)
    nd = NonDominatedSorting().do(unique_f, only_non_dominated_front=True)
    return feasible[first[nd]]
