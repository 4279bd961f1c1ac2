"""The operator's decision at one interval: SLIT's receding-horizon step of ``slit run``.

``plan_scenario`` narrows a scenario to the look-ahead that starts at the interval (H intervals,
``DEFAULT_HORIZON`` as in ``slit run``, clipped at the data's end); ``plan_next_interval``
forecasts it from what was known before the interval and takes SLIT's step
(``experiment.run.slit_step``: the per-interval searches, then the horizon search over the
pools, with the replica lifecycle) from the replicas loaded now (``LoadedState``, read from the
previous plan by ``document.state_from_document``; none: a cold start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from slit.data.signals import available_years
from slit.errors import SlitInputError
from slit.experiment.horizon_inputs import HorizonInputs, horizon_problem
from slit.experiment.run import SlitStep, prepare_models, slit_step
from slit.experiment.scenario import Scenario
from slit.optimise.horizon import DEFAULT_HORIZON, HorizonProblem
from slit.optimise.policies import interval_seeds


def plan_scenario(base: Scenario, start: pd.Timestamp, horizon: int = DEFAULT_HORIZON
                  ) -> Scenario:
    """``base`` reduced to the ``horizon`` intervals from ``start`` (refused when real data does
    not cover the first; the look-ahead is cut where the data ends)."""
    first = replace(base, start_utc=start, hours=base.interval_s / 3600.0)
    if not _covered(first):
        _refuse_outside_data(first)
    n = max(h for h in range(1, max(1, horizon) + 1)
            if _covered(replace(first, hours=h * base.interval_s / 3600.0)))
    return replace(first, hours=n * base.interval_s / 3600.0)


@dataclass(frozen=True)
class LoadedState:
    """The replicas loaded (loading or serving) when the plan is issued, and how long the
    youngest of each (site, model) has been up: what the minimum up-time is counted from."""

    replicas: np.ndarray  # [S, M] in scenario order
    up_s: np.ndarray  # [S, M] seconds since the youngest replica was loaded (0 where none)
    loaded_since_utc: tuple[tuple[pd.Timestamp | None, ...], ...]  # [S][M], None where none
    source: str  # "cold start" or "current plan"
    current_start_utc: pd.Timestamp | None = None  # the interval of the plan it was read from

    @staticmethod
    def cold(scenario: Scenario) -> LoadedState:
        """Nothing loaded: every replica of the plan is a load."""
        n_s, n_m = len(scenario.sites), len(scenario.model_names)
        return LoadedState(np.zeros((n_s, n_m), dtype=np.int64), np.zeros((n_s, n_m)),
                           tuple((None,) * n_m for _ in range(n_s)), "cold start")


@dataclass(frozen=True)
class FleetDecision:
    """SLIT's decision at the planned interval: the horizon plan (interval 0 committed, the rest
    planned, not committed), the problem it was made on and the state it started from."""

    scenario: Scenario  # narrowed to the look-ahead (plan_scenario)
    problem: HorizonProblem
    state: LoadedState
    step: SlitStep
    decision_s: float  # wall time of the searches

    @property
    def replicas(self) -> np.ndarray:
        """[H, S, M] planned replicas; ``[0]`` is committed."""
        return self.step.replicas

    @property
    def routing(self) -> np.ndarray:
        """[H, M, O, S] planned routing; ``[0]`` is committed."""
        return self.step.routing


def plan_next_interval(scenario: Scenario, state: LoadedState | None = None,
                       progress: Callable[[str, int, int], None] | None = None,
                       horizon: int = DEFAULT_HORIZON) -> FleetDecision:
    """SLIT's step at the interval ``scenario`` starts at (``plan_scenario``): forecasts from
    the data before it, the horizon problem from ``state`` (default: cold start), the same
    ``slit_step`` as ``slit run`` with interval 0's seed of the scenario's seed (``slit run``'s
    first interval takes the same)."""
    report = progress or (lambda stage, done, total: None)
    state = state or LoadedState.cold(scenario)
    prepared = prepare_models(scenario, report)
    inputs = HorizonInputs(scenario, prepared, horizon)
    problem = horizon_problem(inputs, 0, state.replicas, state.up_s)
    started = time.perf_counter()
    step = slit_step(problem, scenario, interval_seeds(scenario.seed, 1)[0])
    decision_s = time.perf_counter() - started
    report("plan", 1, 1)
    return FleetDecision(scenario, problem, state, step, decision_s)


def _covered(scenario: Scenario) -> bool:
    """With real data, whether every hour of the scenario's period is in the data's years."""
    if scenario.data_dir is None:
        return True
    first = scenario.start_utc.floor("h")
    last = scenario.end_utc.ceil("h") - pd.Timedelta(hours=1)
    needed = range(first.year, last.year + 1)
    return all(year in available_years(scenario.data_dir, site.region_id)
               for site in scenario.sites for year in needed)


def _refuse_outside_data(scenario: Scenario) -> None:
    """With real data, the interval itself must be in it (the forecasters' history need not:
    with less than they want they use what there is, flagged)."""
    assert scenario.data_dir is not None
    first = scenario.start_utc.floor("h")
    last = scenario.end_utc.ceil("h") - pd.Timedelta(hours=1)
    for site in scenario.sites:
        have = available_years(scenario.data_dir, site.region_id)
        if any(year not in have for year in range(first.year, last.year + 1)):
            span = f"{min(have)}-{max(have)}" if have else "no year"
            raise SlitInputError(
                "--at", f"{scenario.start_utc:%Y-%m-%dT%H:%M} needs {site.region_id} signals to "
                f"{scenario.end_utc:%Y-%m-%d %H:%M}, but {scenario.data_dir} has {span}",
                "plan a time inside the data's years")
