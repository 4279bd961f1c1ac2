"""Plan one interval: the scenario narrowed to it, its forecasts, its Pareto front, one pick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

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
    not cover it)."""
    scenario = replace(base, start_utc=start, hours=base.interval_s / 3600.0)
    _check_data_covers(scenario)
    return scenario


@dataclass(frozen=True)
class ModelPlan:
    """One served model's plan for the interval: its problem (forecasts) and the decision."""

    model: str
    scenario: Scenario  # the model's single-model view (Scenario.for_model)
    problem: IntervalProblem
    decision: Decision


def plan_next_interval(scenario: Scenario,
                       progress: Callable[[str, int, int], None] | None = None,
                       ) -> list[ModelPlan]:
    """Per served model: forecast the interval, search its Pareto front, pick by the scenario's
    preference (each model on its view: its demand, replica and reserved share of each pool)."""
    plans = []
    for model in scenario.model_names:
        view = scenario.for_model(model)
        prepared = prepare(view, progress)
        problem = interval_problem(prepared, 0)
        # The seed interval 0 of ``slit run`` would plan with: the view's seed.
        seed = interval_seeds(view.seed, 1)[0]
        plans.append(ModelPlan(model, view, problem, plan_interval(
            problem, scenario.preference, scenario.search, seed=seed)))
    return plans


def _check_data_covers(scenario: Scenario) -> None:
    """With real data, the interval itself must be in it (the forecasters' history need not:
    with less than they want they use what there is, flagged)."""
    if scenario.data_dir is None:
        return
    first = scenario.start_utc.floor("h")
    last = scenario.end_utc.ceil("h") - pd.Timedelta(hours=1)
    needed = range(first.year, last.year + 1)
    for site in scenario.sites:
        have = available_years(scenario.data_dir, site.region_id)
        if any(year not in have for year in needed):
            span = f"{min(have)}-{max(have)}" if have else "no year"
            raise SlitInputError(
                "--at", f"{scenario.start_utc:%Y-%m-%dT%H:%M} needs {site.region_id} signals to "
                f"{scenario.end_utc:%Y-%m-%d %H:%M}, but {scenario.data_dir} has {span}",
                "plan a time inside the data's years")
