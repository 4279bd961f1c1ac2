"""Plan one interval: the scenario narrowed to it, its forecasts, its Pareto front, one pick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd

from slit.data.signals import available_years
from slit.errors import SlitInputError
from slit.experiment.run import interval_problem, prepare
from slit.experiment.scenario import Scenario
from slit.optimise.metaheuristic import Decision, plan_interval
from slit.optimise.policies import interval_seeds
from slit.optimise.problem import IntervalProblem


def plan_scenario(base: Scenario, start: pd.Timestamp) -> Scenario:
    """``base`` reduced to the one interval starting at ``start`` (refused when real data does
    not cover it and the forecasters' history)."""
    scenario = replace(base, start_utc=start, hours=base.interval_s / 3600.0)
    _check_data_covers(scenario)
    return scenario


def plan_next_interval(scenario: Scenario,
                       progress: Callable[[str, int, int], None] | None = None,
                       ) -> tuple[IntervalProblem, Decision]:
    """Forecast the interval, search its Pareto front, pick by the scenario's preference."""
    prepared = prepare(scenario, progress)
    problem = interval_problem(prepared, 0)
    # The seed interval 0 of ``slit run`` would plan with: the scenario's one seed.
    seed = interval_seeds(scenario.seed, 1)[0]
    return problem, plan_interval(problem, scenario.preference, scenario.search, seed=seed)


def _check_data_covers(scenario: Scenario) -> None:
    """With real data, the interval and the history the forecasters learn from must be in it."""
    if scenario.data_dir is None:
        return
    begin = scenario.start_utc.floor("h") - pd.Timedelta(days=scenario.history_days)
    last = scenario.end_utc.ceil("h") - pd.Timedelta(hours=1)
    needed = range(begin.year, last.year + 1)
    for site in scenario.sites:
        have = available_years(scenario.data_dir, site.region_id)
        if any(year not in have for year in needed):
            span = f"{min(have)}-{max(have)}" if have else "no year"
            raise SlitInputError(
                "--at", f"{scenario.start_utc:%Y-%m-%dT%H:%M} needs {site.region_id} signals from "
                f"{begin:%Y-%m-%d} (the {scenario.history_days}-day history) to "
                f"{scenario.end_utc:%Y-%m-%d %H:%M}, but {scenario.data_dir} has {span}",
                f"plan a time at least {scenario.history_days} days into the data's years")
