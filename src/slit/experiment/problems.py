"""Interval problems of the default day, shared by the optimiser benchmarks and tests."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from slit.experiment.run import interval_problem, prepare
from slit.experiment.scenario import Scenario, default_scenario
from slit.optimise.horizon import HorizonProblem, released_tables
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


# A two-model horizon built from the default day's single-model problems, for benchmarks and
# tests until the multi-model scenario provides its own (ASSUMPTION, labelled as such in
# docs/scheduler.md): the day's demand split 60/40 between a small model (2 GPUs a replica,
# 30 s to load) and a large one (4 GPUs a replica, 84 s to load: the published figure for a
# 70B model from local storage), both served with the day's surrogate tables; each site a pool
# of 4 GPUs per replica the single-model fleet had; loading draws the idle power of the GPUs.
TWO_MODELS = ("small", "large")
TWO_MODEL_SHARES = (0.6, 0.4)
TWO_MODEL_GPUS = (2, 4)
TWO_MODEL_LOAD_S = (30.0, 84.0)
TWO_MODEL_MIN_UP_S = 1800.0


def two_model_horizon(problems: list[IntervalProblem], start: int, horizon: int = 8,
                      initial: np.ndarray | None = None, initial_up_s: np.ndarray | None = None
                      ) -> HorizonProblem:
    """The horizon of ``horizon`` intervals starting at ``problems[start]`` (clipped at the end
    of the list), two models as described above. ``initial`` [S, M]: replicas loaded now."""
    steps_src = [problems[min(start + k, len(problems) - 1)] for k in range(horizon)]
    base = steps_src[0]
    n_s = base.n_sites
    gpus = np.array(TWO_MODEL_GPUS)[None, :].repeat(n_s, axis=0)
    pool = (base.installed * 4)[:, None]
    max_rep = pool // gpus
    steps = tuple(
        tuple(released_tables(replace(p, demand_rps=p.demand_rps * share), max_rep[:, m])
              for m, share in enumerate(TWO_MODEL_SHARES))
        for p in steps_src)
    idle_w = np.array([[t.power_w_per_replica[0, 0] for t in row] for row in
                       zip(*(step.tables for step in steps[0]), strict=True)])
    return HorizonProblem(
        model_names=TWO_MODELS, steps=steps, pool_gpus=pool,
        gpu_type=np.zeros((n_s, 2), dtype=np.int64), gpus_per_replica=gpus,
        initial_replicas=(np.zeros((n_s, 2), dtype=np.int64) if initial is None else initial),
        initial_up_s=(np.full((n_s, 2), 1e9) if initial_up_s is None else initial_up_s),
        load_time_s=np.array(TWO_MODEL_LOAD_S)[None, :].repeat(n_s, axis=0),
        loading_power_w=idle_w, min_up_s=TWO_MODEL_MIN_UP_S)


def default_horizon_problems(data_dir: Path | None = None) -> list[IntervalProblem]:
    """Every interval problem of the default day (forecast inputs), in time order."""
    scenario = _single_model(default_scenario(data_dir=data_dir))
    prepared = prepare(scenario, _progress)
    print(file=sys.stderr)
    return [interval_problem(prepared, k) for k in range(scenario.n_intervals)]


def busiest_horizons(problems: list[IntervalProblem], n: int = 12, horizon: int = 8
                     ) -> list[HorizonProblem]:
    """Two-model horizons starting at the ``n`` busiest intervals, each from the replicas the
    preference's greedy keeps in the interval before (up long enough to be released)."""
    busiest = sorted(np.argsort([-p.demand_rps.sum() for p in problems], kind="stable")[:n])
    return [two_model_horizon(problems, int(k), horizon,
                              initial=steady_replicas(problems, max(int(k) - 1, 0)))
            for k in busiest]


def steady_replicas(problems: list[IntervalProblem], k: int) -> np.ndarray:
    """[S, M] replicas the fixed placement rule keeps for the weighted greedy's plan of
    interval ``k`` (a plausible current state)."""
    from slit.optimise.baselines import weighted_greedy
    from slit.optimise.horizon import fixed_placement
    from slit.optimise.preference import Preference

    one = two_model_horizon(problems, k, 1)
    x = np.stack([np.stack([weighted_greedy(p, Preference()) for p in one.steps[0]])])
    return fixed_placement(one, x)[0]


def scenario_busiest_horizons(n: int = 12, horizon: int = 8, data_dir: Path | None = None
                              ) -> list[HorizonProblem]:
    """Horizons of the default scenario itself (both served models on their GPU pools, as
    ``slit run`` plans them: ``horizon_inputs.horizon_problem``) starting at the ``n`` intervals
    with the most forecast demand, in time order; each from the replicas the fixed placement
    rule keeps for the weighted greedy's plan of the interval before (up long enough to be
    released). Replaces the ``two_model_horizon`` assumption where a benchmark wants the real
    scenario."""
    from slit.experiment.horizon_inputs import HorizonInputs, horizon_problem
    from slit.experiment.run import prepare_models
    from slit.optimise.baselines import weighted_greedy
    from slit.optimise.horizon import fixed_placement

    scenario = default_scenario(data_dir=data_dir)
    inputs = HorizonInputs(scenario, prepare_models(scenario, _progress), horizon)
    print(file=sys.stderr)
    n_s, n_m = len(scenario.sites), len(scenario.model_names)
    zero, old = np.zeros((n_s, n_m), dtype=np.int64), np.full((n_s, n_m), scenario.min_up_s)
    demand = [sum(float(p.demand_rps.sum()) for p in horizon_problem(inputs, k, zero, old)
                  .steps[0]) for k in range(scenario.n_intervals)]
    busiest = sorted(np.argsort([-d for d in demand], kind="stable")[:n])
    out = []
    for k in busiest:
        before = horizon_problem(inputs, max(int(k) - 1, 0), zero, old)
        # Each model routed on its own (not ``route_on_pools``): the benchmarks' instances stay
        # the ones their earlier figures were measured on; any state within the pools will do.
        x = np.stack([np.stack([weighted_greedy(p, scenario.preference)
                                for p in before.steps[0]])])
        first = replace(before, steps=before.steps[:1])
        out.append(horizon_problem(inputs, int(k), fixed_placement(first, x)[0], old))
    return out
