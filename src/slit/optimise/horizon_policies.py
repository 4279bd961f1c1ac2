"""Every policy on the horizon problem, and the receding-horizon loop that commits their plans.

A horizon policy maps (``HorizonProblem``, preference, its own previous horizon plan) to a
horizon plan ``(replicas [H, S, M], routing [H, M, O, S])``; the loop commits interval 0 and
re-plans at the next interval from the committed state. SLIT plans the horizon
(``plan_horizon``). The baselines plan each interval and model on its own (the per-interval
MILP ``milp``, ``weighted_greedy`` with the scenario's weights, and the rules of
``baselines.BASELINES``) and place replicas by the fixed rule ``horizon.fixed_placement``:
the replicas the interval's routed load needs, loaded at the interval's start, kept for the
minimum up-time, within the pools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from slit.optimise.baselines import BASELINES, weighted_greedy
from slit.optimise.horizon import HorizonProblem, fixed_placement
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
        x = np.stack([np.stack([self.rule(p, preference) for p in row]) for row in steps])
        return self.place(problem, x), x

    def place(self, problem: HorizonProblem, x: np.ndarray) -> np.ndarray:
        """The fixed placement of the routing ``x`` [H, M, O, S] (H = 1 when ``first_only``)
        from the committed state ``problem`` starts from."""
        return fixed_placement(_first(problem) if self.first_only else problem, x)


def _first(problem: HorizonProblem) -> HorizonProblem:
    return replace(problem, steps=problem.steps[:1])


@dataclass(frozen=True)
class RouteJob:
    """One model's interval problem for a myopic policy's rule (a Ray task's argument)."""

    policy: str
    problem: IntervalProblem
    preference: Preference


def timed_route(job: RouteJob) -> tuple[np.ndarray, float]:
    """The policy's routing [O, S] of the job's interval problem, and the seconds its rule took
    (measured where it ran, so a decision time means the same on Ray as in one process)."""
    policy = HORIZON_POLICIES[job.policy]
    if not isinstance(policy, Myopic):
        raise TypeError(f"{job.policy} is not a per-interval rule")
    started = time.perf_counter()
    x = policy.rule(job.problem, job.preference)
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
