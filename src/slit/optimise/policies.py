"""Every scheduling policy behind one interface: ``POLICIES[name].plan(problem, context)``.

A run plans, judges and reports every policy by the same path; SLIT is one entry among the
baselines. A policy gets the interval problem (forecast inputs) and a ``PlanContext`` (the
scenario's preference, search settings, this interval's seed and the policy's own previous
plan) and returns a ``PolicyDecision``: the routing, plus the searched front when the policy
searched one (SLIT), for the report. Adding a policy is one entry in ``POLICIES``; a function
``f(problem, preference) -> routing`` (such as an exact MILP plan for the preference) is
registered as ``"name": PreferenceRule(f)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from slit.optimise.baselines import BASELINES, weighted_greedy
from slit.optimise.metaheuristic import Decision, SearchSettings, plan_interval
from slit.optimise.milp import milp_plan
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem

# The search's random stream, apart from the ones other parts of a run draw from the same
# scenario seed (their SeedSequence children are small indices: 0, 1, ...).
SEARCH_STREAM = 0x5EA4C


def interval_seeds(seed: int, n_intervals: int) -> list[np.random.SeedSequence]:
    """One SeedSequence per interval, all spawned from the scenario's one ``seed``: interval k
    plans with the same random numbers in ``slit run`` and in ``slit plan`` for that interval."""
    root = np.random.SeedSequence(seed, spawn_key=(SEARCH_STREAM,))
    return root.spawn(n_intervals)


@dataclass(frozen=True)
class PlanContext:
    """What a policy knows besides the interval problem."""

    preference: Preference
    search: SearchSettings
    seed: np.random.SeedSequence  # this interval's; a policy draws random numbers only from it
    previous: np.ndarray | None = None  # [O, S] this policy's plan for the previous interval


@dataclass(frozen=True)
class PolicyDecision:
    """A policy's plan for one interval."""

    routing: np.ndarray  # [O, S]
    search: Decision | None = None  # the front it was chosen from, for a policy that searches


class Policy(Protocol):
    def plan(self, problem: IntervalProblem, context: PlanContext) -> PolicyDecision: ...


@dataclass(frozen=True)
class RoutingRule:
    """A policy deciding from the problem alone."""

    rule: Callable[[IntervalProblem], np.ndarray]

    def plan(self, problem: IntervalProblem, context: PlanContext) -> PolicyDecision:
        return PolicyDecision(self.rule(problem))


@dataclass(frozen=True)
class PreferenceRule:
    """A policy deciding from the problem and the scenario's preference."""

    rule: Callable[[IntervalProblem, Preference], np.ndarray]

    def plan(self, problem: IntervalProblem, context: PlanContext) -> PolicyDecision:
        return PolicyDecision(self.rule(problem, context.preference))


@dataclass(frozen=True)
class SlitSearch:
    """SLIT: NSGA-II with a memetic local search, the plan picked by preference."""

    def plan(self, problem: IntervalProblem, context: PlanContext) -> PolicyDecision:
        decision = plan_interval(problem, context.preference, context.search, context.previous,
                                 seed=context.seed)
        return PolicyDecision(decision.routing, decision)


POLICIES: dict[str, Policy] = {
    "slit": SlitSearch(),
    **{name: RoutingRule(rule) for name, rule in BASELINES.items() if name != "min_energy"},
    "weighted_greedy": PreferenceRule(weighted_greedy),
    "min_energy": RoutingRule(BASELINES["min_energy"]),
    "milp": PreferenceRule(milp_plan),
}

# --- Horizon policies (issue 12, planning side): every policy on the multi-model horizon
# problem, and the receding-horizon loop; see slit.optimise.horizon_policies. ---
from slit.optimise.horizon_policies import HORIZON_POLICIES, run_receding  # noqa: E402, F401
