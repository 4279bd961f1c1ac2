"""The per-interval baselines on shared GPU pools: the models are routed one after the other on
what the pools have left (``route_on_pools``), so no model's routing counts on GPUs another
model's replicas take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from test_horizon import small_horizon

from slit.optimise.baselines import BASELINES, weighted_greedy
from slit.optimise.horizon import HorizonProblem, fixed_placement
from slit.optimise.horizon_policies import Myopic, Pools, pool_share, route_on_pools
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem


def _ignoring_preference(rule: Callable[[IntervalProblem], np.ndarray]
                         ) -> Callable[[IntervalProblem, Preference], np.ndarray]:
    return lambda p, preference: rule(p)


RULES = {"weighted_greedy": weighted_greedy,
         **{name: _ignoring_preference(rule) for name, rule in BASELINES.items()}}


def needed(problem: HorizonProblem, x: np.ndarray) -> np.ndarray:
    """[S, M] replicas interval 0's routing ``x`` [M, O, S] needs (the sizing rule)."""
    out = []
    for m, p in enumerate(problem.steps[0]):
        load = p.demand_rps @ x[m]
        out.append(p.awake_for_load(load[None], p.worst_rtt_s(x[m][None]))[0])
    return np.stack(out, axis=1)


def contested(seed: int) -> HorizonProblem:
    """One interval of a busy random two-model instance, nothing up yet (no replica locked),
    every origin free to use every site (a pinned origin whose only site is full is a conflict
    no routing order removes)."""
    problem = small_horizon(seed, 4, 1, 0.8, min_up_s=0.0)
    steps = tuple(tuple(replace(p, allowed=np.ones_like(p.allowed)) for p in row)
                  for row in problem.steps)
    return replace(problem, steps=steps,
                   initial_replicas=np.zeros_like(problem.initial_replicas),
                   initial_up_s=np.zeros_like(problem.initial_up_s))


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_replica_a_routing_counts_on_is_placed(name: str) -> None:
    """Each model's routed load gets the replicas it needs within the pools; planned each on
    its own (the old composition) the models overcommit some pool on these instances."""
    rule, preference = RULES[name], Preference()
    overcommitted = 0
    for seed in range(12):
        problem = contested(seed)
        replicas, x = Myopic(rule).plan(problem, preference, None)
        assert (needed(problem, x[0]) <= replicas[0]).all(), seed
        use = problem.pool_use(replicas[0])
        assert (use <= problem.pool_gpus).all()
        alone = np.stack([rule(p, preference) for p in problem.steps[0]])[None]
        overcommitted += int((needed(problem, alone[0]) > fixed_placement(problem, alone)[0])
                             .any())
    if name in ("weighted_greedy", "min_energy", "lowest_carbon"):
        assert overcommitted > 0  # the instances do contest the pools for these rules


def test_the_largest_replica_is_routed_first_and_a_full_site_is_not_routed_to() -> None:
    problem = contested(3)
    pools = Pools.of(problem)
    assert pools.order() == [1, 0]  # model b takes 4 GPUs a replica, a 2
    step = problem.steps[0][0]
    fit = np.array([0, 1, 5, 5])
    cut = pool_share(step, fit)
    assert not cut.allowed[:, 0].any() and (cut.allowed[:, 1:] == step.allowed[:, 1:]).all()
    assert cut.installed[1] == 1 and cut.installed[2] == min(5, step.installed[2])
    assert pool_share(step, step.installed) is step  # nothing to cut: the same problem
    x = route_on_pools(RULES["weighted_greedy"], problem.steps[0], pools, Preference())
    assert x.shape == (2, step.n_origins, step.n_sites)
    np.testing.assert_allclose(x.sum(axis=2), 1.0)
