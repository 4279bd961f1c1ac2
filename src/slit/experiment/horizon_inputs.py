"""The horizon problem of a real scenario at interval ``k``: what the planner knows then.

``horizon_problem`` builds, for intervals ``k .. k + H - 1`` (clipped at the run's end) and every
served model, the interval problem as known at interval ``k``'s start (or at ``known_at_utc``, a
failover inside it):

- demand: ``DemandForecaster.predict_ahead`` on the counts of the intervals completed by then
  (the seasonal profile times the level observed so far; no oracle);
- signals: the LightGBM signal forecasters told of every hour completed by then, predicting the
  hours the horizon covers (carbon, water and cost per IT kWh from the forecast weather);
- serving: the surrogate's table of the model's replica at each site, up to the replicas the
  whole pool holds (``Prepared.pool_tables``), cut (``released_tables``) to what the pool holds
  while a fault is known; released replicas draw 0 W (their GPUs go to other tenants);
- pools from ``Site.gpus`` times the share of GPUs the planner knows usable
  (``events.known_gpu_fraction``, floored to whole GPUs), replica size and GPU type from
  ``Site.replica_for``, load time and loading power from ``serving.lifecycle``, the scenario's
  minimum up-time; origin-site pairs cut by a known partition (``events.known_reachable``) or
  by a site whose pool holds no replica of the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from slit.data.signals import PRICE, TEMP
from slit.experiment.events import known_gpu_fraction, known_reachable
from slit.experiment.scenario import Scenario
from slit.footprint.model import carbon_column, coefficients_from_weather
from slit.forecast.history import WET_BULB
from slit.optimise.horizon import DEFAULT_HORIZON, HorizonProblem, released_tables
from slit.optimise.problem import IntervalProblem
from slit.serving.lifecycle import load_time_s, loading_power_w

if TYPE_CHECKING:  # run imports this module
    from slit.experiment.run import Prepared


@dataclass
class HorizonInputs:
    """What building horizons reuses across intervals and policies: per model a template
    interval problem (its capacity tables are tabulated once), forecast signal coefficients per
    (hour known, target hour)."""

    scenario: Scenario
    prepared_by_model: list[Prepared]
    horizon: int = DEFAULT_HORIZON
    templates: list[IntervalProblem] = field(default_factory=list)
    coefficients: dict[tuple[pd.Timestamp, pd.Timestamp], np.ndarray] = field(
        default_factory=dict)

    def __post_init__(self) -> None:
        scenario = self.scenario
        n_o, n_s = len(scenario.demand.origins), len(scenario.sites)
        for prepared in self.prepared_by_model:
            tables = prepared.pool_tables
            # A pair is reachable when the round trip plus the site's unloaded tail fits.
            idle_tail = np.array([table.ttft_tail_s[0, 0] for table in tables])
            reachable = prepared.rtt_s + idle_tail[None, :] <= scenario.planning_slo_ttft_s
            self.templates.append(IntervalProblem(
                origin_ids=scenario.demand.origins, site_ids=scenario.site_ids,
                demand_rps=np.zeros(n_o), rtt_s=prepared.rtt_s,
                allowed=prepared.pinned & reachable, tables=tables,
                carbon_kg_per_kwh_it=np.zeros(n_s), water_l_per_kwh_it=np.zeros(n_s),
                cost_usd_per_kwh_it=np.zeros(n_s), interval_s=scenario.interval_s,
                planning_slo_ttft_s=scenario.planning_slo_ttft_s))


def gpu_types(scenario: Scenario) -> tuple[str, ...]:
    """The GPU types of the scenario's pools, in a fixed order (the pools' second axis)."""
    return tuple(sorted({g for site in scenario.sites for g in site.gpus}
                        | {site.replica_for[m].gpu for site in scenario.sites
                           for m in scenario.model_names}))


def pool_gpus(scenario: Scenario, t_utc: pd.Timestamp) -> np.ndarray:
    """[S, T] GPUs of each pool the planner counts on at ``t`` (known faults applied, floored
    to whole GPUs)."""
    types = gpu_types(scenario)
    fraction = known_gpu_fraction(scenario.events, scenario.site_ids, t_utc)
    return np.array([[int(np.floor(site.gpus.get(g, 0) * fraction[s] + 1e-9)) for g in types]
                     for s, site in enumerate(scenario.sites)], dtype=np.int64)


def fit_to_pools(scenario: Scenario, replicas: np.ndarray, pools: np.ndarray) -> np.ndarray:
    """[S, M] ``replicas`` cut to fit ``pools`` [S, T] (a fault took GPUs: the replicas on them
    are gone), the models in reverse order losing replicas first."""
    types = gpu_types(scenario)
    out = np.asarray(replicas, dtype=np.int64).copy()
    for s, site in enumerate(scenario.sites):
        for t, gpu in enumerate(types):
            models = [m for m, name in enumerate(scenario.model_names)
                      if site.replica_for[name].gpu == gpu]
            used = sum(int(out[s, m]) * site.replica_for[scenario.model_names[m]].tp
                       for m in models)
            for m in reversed(models):
                if used <= pools[s, t]:
                    break
                tp = site.replica_for[scenario.model_names[m]].tp
                drop = min(int(out[s, m]), -(-(used - int(pools[s, t])) // tp))
                out[s, m] -= drop
                used -= drop * tp
    return out


def horizon_problem(inputs: HorizonInputs, k: int, replicas_now: np.ndarray,
                    up_s_now: np.ndarray, known_at_utc: pd.Timestamp | None = None
                    ) -> HorizonProblem:
    """The horizon of intervals ``k .. k + H - 1`` (clipped at the run's end) as known at
    interval ``k``'s start, or at ``known_at_utc`` (inside interval ``k``: a failover), from the
    committed state ``replicas_now`` [S, M] (cut to the pools known then) up ``up_s_now``."""
    scenario = inputs.scenario
    t0 = scenario.start_utc + pd.Timedelta(seconds=k * scenario.interval_s)
    known = t0 if known_at_utc is None else known_at_utc
    steps_n = max(1, min(inputs.horizon, scenario.n_intervals - k))
    pools = pool_gpus(scenario, known)
    types = gpu_types(scenario)
    names = scenario.model_names
    n_s, n_m = len(scenario.sites), len(names)
    gpu_type = np.array([[types.index(site.replica_for[m].gpu) for m in names]
                         for site in scenario.sites], dtype=np.int64)
    tp = np.array([[site.replica_for[m].tp for m in names] for site in scenario.sites],
                  dtype=np.int64)
    max_replicas = pools[np.arange(n_s)[:, None], gpu_type] // tp  # [S, M]
    reachable = known_reachable(scenario.events, scenario.demand.origins, scenario.site_ids,
                                known)
    demand = [prepared.demand_forecaster.predict_ahead(prepared.counts[:k], steps_n)
              / scenario.interval_s for prepared in inputs.prepared_by_model]  # [M][H, O]
    steps = []
    for h in range(steps_n):
        t = t0 + pd.Timedelta(seconds=h * scenario.interval_s)
        coefficients = _coefficients(inputs, known, t)
        row = []
        for m in range(n_m):
            template = inputs.templates[m]
            problem = copy.copy(template)
            allowed = template.allowed & reachable & (max_replicas[:, m] > 0)[None, :]
            # An origin with no site left keeps its pinned sites (a refusal, not a crash).
            allowed = np.where(allowed.any(axis=1, keepdims=True), allowed, template.allowed)
            for name, value in (("demand_rps", demand[m][h]), ("allowed", allowed),
                                ("carbon_kg_per_kwh_it", coefficients[0]),
                                ("water_l_per_kwh_it", coefficients[1]),
                                ("cost_usd_per_kwh_it", coefficients[2])):
                object.__setattr__(problem, name, value)
            if (max_replicas[:, m] < template.installed).any():
                problem = released_tables(problem, max_replicas[:, m].tolist())
            row.append(problem)
        steps.append(tuple(row))
    specs = [[site.replica_for[m] for m in names] for site in scenario.sites]
    return HorizonProblem(
        model_names=names, steps=tuple(steps), pool_gpus=pools, gpu_type=gpu_type,
        gpus_per_replica=tp,
        initial_replicas=fit_to_pools(scenario, replicas_now, pools),
        initial_up_s=np.asarray(up_s_now, dtype=float),
        load_time_s=np.array([[load_time_s(r) for r in row] for row in specs]),
        loading_power_w=np.array([[loading_power_w(r) for r in row] for row in specs]),
        min_up_s=float(scenario.min_up_s))


def _coefficients(inputs: HorizonInputs, known: pd.Timestamp, t: pd.Timestamp) -> np.ndarray:
    """[3, S] forecast carbon (kg), water (L) and cost (USD) per IT kWh for the hour of ``t``,
    forecast from the hours completed by ``known`` (never the hour in progress)."""
    issue, target = known.floor("h"), t.floor("h")
    key = (issue, target)
    if key in inputs.coefficients:
        return inputs.coefficients[key]
    scenario = inputs.scenario
    prepared = inputs.prepared_by_model[0]  # signals are the sites', shared by every model
    carbon = carbon_column(scenario.carbon_basis)
    hours = int((target - issue) / pd.Timedelta(hours=1)) + 1
    out = np.empty((hours, 3, len(scenario.sites)))
    for s, site in enumerate(scenario.sites):
        forecaster = prepared.forecasters[site.region_id]
        completed = prepared.actual[site.region_id]
        forecaster.observe(completed[completed.index < issue][list(forecaster.signals)])
        rows = forecaster.predict(issue, hours)
        # A forecast may dip below zero carbon; the grid cannot.
        coefficients = coefficients_from_weather(
            rows[TEMP].to_numpy(), rows[WET_BULB].to_numpy(),
            np.maximum(rows[carbon].to_numpy(), 0.0), rows[PRICE].to_numpy(), site.footprint)
        out[:, 0, s] = coefficients["carbon_kg_per_kwh_it"]
        out[:, 1, s] = coefficients["water_l_per_kwh_it"]
        out[:, 2, s] = coefficients["cost_usd_per_kwh_it"]
    for i in range(hours):
        inputs.coefficients[(issue, issue + pd.Timedelta(hours=i))] = out[i]
    return out[-1]
