"""Interval problems of the default day, shared by the optimiser benchmarks and tests."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from slit.experiment.run import interval_problem, prepare
from slit.experiment.scenario import Scenario, default_scenario
from slit.optimise.problem import IntervalProblem


def default_problems(every: int = 8, data_dir: Path | None = None) -> list[IntervalProblem]:
    """Problems at every ``every``-th interval of the default day (forecast inputs)."""
    scenario = _single_model(default_scenario(data_dir=data_dir))
    prepared = prepare(scenario, _progress)
    print(file=sys.stderr)
    return [interval_problem(prepared, k) for k in range(0, scenario.n_intervals, every)]


def busiest_problems(n: int = 12, data_dir: Path | None = None) -> list[IntervalProblem]:
    """The ``n`` intervals of the default day with the most forecast demand, in time order."""
    scenario = _single_model(default_scenario(data_dir=data_dir))
    prepared = prepare(scenario, _progress)
    print(file=sys.stderr)
    problems = [interval_problem(prepared, k) for k in range(scenario.n_intervals)]
    busiest = sorted(np.argsort([-p.demand_rps.sum() for p in problems], kind="stable")[:n])
    return [problems[k] for k in busiest]


def _single_model(scenario: Scenario) -> Scenario:
    """The per-interval (single-model) problems: the default's Llama-3.1-70B view, the model
    these benchmarks measured before the default served several."""
    return scenario.for_model("Llama-3.1-70B" if "Llama-3.1-70B" in scenario.model_names
                              else scenario.model_names[0])


def _progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage} {done}/{total}", end="", file=sys.stderr)


def widened(problem: IntervalProblem, n_sites: int, seed: int = 0) -> IntervalProblem:
    """The same origins facing ``n_sites`` sites: the real sites repeated with their signals
    and round trips perturbed by up to +-20 % (a larger footprint of similar datacenters)."""
    rng = np.random.default_rng(seed)
    pick = np.arange(n_sites) % problem.n_sites
    jitter = rng.uniform(0.8, 1.2, (4, n_sites))
    rtt = problem.rtt_s[:, pick] * rng.uniform(0.8, 1.2, (problem.n_origins, n_sites))
    return replace(
        problem,
        site_ids=tuple(f"{problem.site_ids[p]}#{i}" for i, p in enumerate(pick)),
        rtt_s=rtt, allowed=problem.allowed[:, pick],
        tables=tuple(problem.tables[p] for p in pick),
        carbon_kg_per_kwh_it=problem.carbon_kg_per_kwh_it[pick] * jitter[0],
        water_l_per_kwh_it=problem.water_l_per_kwh_it[pick] * jitter[1],
        cost_usd_per_kwh_it=problem.cost_usd_per_kwh_it[pick] * jitter[2],
        demand_rps=problem.demand_rps * n_sites / problem.n_sites,
    )
