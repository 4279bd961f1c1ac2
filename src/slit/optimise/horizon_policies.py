"""Every policy on the horizon problem, and the receding-horizon loop that commits their plans.

A horizon policy maps (``HorizonProblem``, preference, its own previous horizon plan) to a
horizon plan ``(replicas [H, S, M], routing [H, M, O, S])``; the loop commits interval 0 and
re-plans at the next interval from the committed state. SLIT plans the horizon
(``plan_horizon``). The baselines plan each interval on its own (the per-interval MILP
``milp``, ``weighted_greedy`` with the scenario's weights, and the rules of
``baselines.BASELINES``), one model after the other on what the pools have left
(``route_on_pools``), and place replicas by the fixed rule ``horizon.fixed_placement``: the
replicas the interval's routed load needs, loaded at the interval's start, kept for the
minimum up-time, within the pools.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from slit.optimise.baselines import BASELINES, weighted_greedy
from slit.optimise.horizon import HorizonProblem, fixed_placement, released_tables
from slit.optimise.horizon_search import plan_horizon
from slit.optimise.milp import POLICY_SAFETY_TIME_LIMIT_S, milp_plan
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem

HorizonPlan = tuple[np.ndarray, np.ndarray]  # replicas [H, S, M], routing [H, M, O, S]
# per (interval, model) solve: only a safety net, as for the milp policy. The exact interval
# model (milp.py) stops on its node limit and gap, which take longer than the 2 s this was;
# a solve stopped by the clock would make runs machine-dependent (test_experiment).
MYOPIC_MILP_TIME_LIMIT_S = POLICY_SAFETY_TIME_LIMIT_S


class HorizonPolicy:
    def plan(self, problem: HorizonProblem, preference: Preference,
             previous: HorizonPlan | None, first_routing: np.ndarray | None = None,
             seed: int = 0) -> HorizonPlan:
        """``first_routing`` [M, O, S]: a routing of the committed interval to consider, and
        ``seed`` the search's random numbers (SLIT only; the per-interval plans ignore them)."""
        raise NotImplementedError


@dataclass(frozen=True)
class SlitHorizon(HorizonPolicy):
    def plan(self, problem: HorizonProblem, preference: Preference,
             previous: HorizonPlan | None, first_routing: np.ndarray | None = None,
             seed: int = 0) -> HorizonPlan:
        decision = plan_horizon(problem, preference, previous, first_routing=first_routing,
                                seed=seed)
        return decision.replicas, decision.routing


@dataclass(frozen=True)
class Myopic(HorizonPolicy):
    """A per-interval rule on the committed interval, repeated over the horizon's forecasts
    (only interval 0 is committed), with the fixed placement rule.

    The rule reads only the interval problem (forecast demand, signals, tables, pools known
    then), never the committed replicas, which only the placement reads: so each interval's
    routing can be solved before the run reaches it. ``offload`` marks the rules worth solving
    that way, in parallel (``plan_receding``: the MILP, seconds per interval; the others take
    milliseconds)."""

    rule: Callable[[IntervalProblem, Preference], np.ndarray]
    first_only: bool = True  # plan interval 0 alone: the rule does not look ahead anyway
    offload: bool = False

    def plan(self, problem: HorizonProblem, preference: Preference,
             previous: HorizonPlan | None, first_routing: np.ndarray | None = None,
             seed: int = 0) -> HorizonPlan:
        steps = problem.steps[:1] if self.first_only else problem.steps
        pools = Pools.of(problem)
        x = np.stack([route_on_pools(self.rule, row, pools, preference) for row in steps])
        return self.place(problem, x), x

    def place(self, problem: HorizonProblem, x: np.ndarray) -> np.ndarray:
        """The fixed placement of the routing ``x`` [H, M, O, S] (H = 1 when ``first_only``)
        from the committed state ``problem`` starts from."""
        return fixed_placement(_first(problem) if self.first_only else problem, x)


def _first(problem: HorizonProblem) -> HorizonProblem:
    return replace(problem, steps=problem.steps[:1])


@dataclass(frozen=True)
class Pools:
    """What the myopic rules' composition reads of a horizon problem's pools."""

    pool_gpus: np.ndarray  # [S, T] GPUs per site and type
    gpu_type: np.ndarray  # [S, M] the type each model's replica takes there
    gpus_per_replica: np.ndarray  # [S, M]

    @classmethod
    def of(cls, problem: HorizonProblem) -> Pools:
        return cls(problem.pool_gpus, problem.gpu_type, problem.gpus_per_replica)

    def order(self) -> list[int]:
        """Models by their largest replica, largest first (first-fit decreasing: a small
        replica fits in the GPUs a large one leaves, not the other way round); ties in order."""
        size = self.gpus_per_replica.max(axis=0)
        return sorted(range(len(size)), key=lambda m: -int(size[m]))


def route_on_pools(rule: Callable[[IntervalProblem, Preference], np.ndarray],
                   steps: Sequence[IntervalProblem], pools: Pools, preference: Preference
                   ) -> np.ndarray:
    """One interval's routing [M, O, S] by a per-model rule, the models planned one after the
    other on what the pools have left (``Pools.order``): each model's problem cut to the
    replicas the GPUs left hold (``pool_share``), and the replicas its routed load needs
    (``awake_for_load``) taken from the pools before the next model is planned.

    Why: every model's interval problem sees its whole pool, which the models share. Planned
    each on its own, two models could both count on the same GPUs; the placement then gave them
    to the first model and the other's load, routed for replicas it did not get, queued at the
    replicas it did (on the real data's noon window the milp ran the 70B model on one replica
    where its routing needed two: 48 % of those requests within the SLO). Planned in turn, a
    model's routing only counts on GPUs left, as an operator placing models one by one does.
    Reads only the interval problems (forecasts), never the committed replicas."""
    sites = np.arange(len(pools.pool_gpus))
    free = pools.pool_gpus.astype(np.int64).copy()
    out: dict[int, np.ndarray] = {}
    for m in pools.order():
        t, g = pools.gpu_type[:, m], pools.gpus_per_replica[:, m]
        fit = free[sites, t] // g
        problem = pool_share(steps[m], fit)
        x = rule(problem, preference)
        need = problem.awake_for_load((problem.demand_rps @ x)[None],
                                      problem.worst_rtt_s(x[None]))[0]
        free[sites, t] -= np.minimum(need, fit) * g
        out[m] = x
    return np.stack([out[m] for m in range(len(steps))])


def pool_share(problem: IntervalProblem, fit: np.ndarray) -> IntervalProblem:
    """``problem`` with each site's replicas cut to ``fit[s]`` (``released_tables``) and the
    sites where none fits no longer routed to (an origin left with none keeps its sites: its
    requests are then refused or queue, as when the whole pool is gone); ``problem`` itself
    where every site fits all its replicas."""
    fit = np.asarray(fit, dtype=np.int64)
    if (fit >= problem.installed).all():
        return problem
    out = released_tables(problem, fit.tolist())
    allowed = problem.allowed & (fit > 0)[None, :]
    allowed = np.where(allowed.any(axis=1, keepdims=True), allowed, problem.allowed)
    object.__setattr__(out, "allowed", allowed)  # a copy: released_tables made it
    return out


@dataclass(frozen=True)
class RouteJob:
    """One interval's problems (every model) for a myopic policy's rule (a Ray task's
    argument)."""

    policy: str
    steps: tuple[IntervalProblem, ...]
    pools: Pools
    preference: Preference


def timed_route(job: RouteJob) -> tuple[np.ndarray, float]:
    """The policy's routing [M, O, S] of the job's interval (``route_on_pools``), and the
    seconds its rule took (measured where it ran, so a decision time means the same on Ray as in
    one process)."""
    policy = HORIZON_POLICIES[job.policy]
    if not isinstance(policy, Myopic):
        raise TypeError(f"{job.policy} is not a per-interval rule")
    started = time.perf_counter()
    x = route_on_pools(policy.rule, job.steps, job.pools, job.preference)
    return x, time.perf_counter() - started


def _rule(name: str) -> Callable[[IntervalProblem, Preference], np.ndarray]:
    rule = BASELINES[name]
    return lambda p, preference: rule(p)


HORIZON_POLICIES: dict[str, HorizonPolicy] = {
    "slit": SlitHorizon(),
    "milp": Myopic(lambda p, pref: milp_plan(p, pref, MYOPIC_MILP_TIME_LIMIT_S), offload=True),
    "weighted_greedy": Myopic(weighted_greedy),
    **{name: Myopic(_rule(name)) for name in BASELINES},
}


@dataclass(frozen=True, slots=True)
class CommittedPlans:
    """What a policy committed over a run (interval k's plan at index k)."""

    replicas: np.ndarray  # [K, S, M]
    routing: np.ndarray  # [K, M, O, S]


def run_receding(horizon_at: Callable[[int, np.ndarray, np.ndarray], HorizonProblem],
                 n_intervals: int, policy: HorizonPolicy, preference: Preference,
                 initial_replicas: np.ndarray, initial_up_s: np.ndarray) -> CommittedPlans:
    """The receding-horizon loop: ``horizon_at(k, replicas_now, up_s_now)`` builds the horizon
    problem starting at interval ``k`` (forecasts) from the committed state; the policy's plan
    for its first interval is committed, the state advanced (a replica loaded at k is up
    ``interval_s`` at k + 1; a count that grows resets the age to the youngest's), and the
    plan shifted is the policy's warm start at ``k + 1``."""
    replicas, up_s = np.asarray(initial_replicas).copy(), np.asarray(initial_up_s, float).copy()
    previous: HorizonPlan | None = None
    out_r, out_x = [], []
    for k in range(n_intervals):
        problem = horizon_at(k, replicas, up_s)
        r, x = policy.plan(problem, preference, previous)
        committed = r[0]
        grew = committed > replicas
        up_s = np.where(grew, 0.0, up_s) + problem.interval_s
        up_s = np.where(committed > 0, up_s, 0.0)
        replicas = committed
        previous = (r, x) if r.shape[0] > 1 else None
        out_r.append(committed)
        out_x.append(x[0])
    return CommittedPlans(np.stack(out_r), np.stack(out_x))
