"""Rolling-origin evaluation of the signal forecasters on a year of real data.

For each region and each origin (the first of every month from ``first_origin_month``), every
forecaster is fitted on the rows before the origin only, then issues forecasts every
``issue_every_h`` hours until the next origin; the learned model is thus retrained monthly on
an expanding past. Errors are MAE and a guarded MAPE (see ``mape``) per signal, horizon, region
and method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slit.data.embedded import embedded_info
from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.data.signals import CARBON_DIRECT, CARBON_LCA, PRICE, TEMP, available_years
from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.forecast.demand import (
    DEFAULT_HISTORY_DAYS,
    DemandForecaster,
    intervals_per_day,
    observed_history,
    persistence_forecast,
    seasonal_naive_forecast,
)
from slit.forecast.history import WET_BULB, load_history
from slit.forecast.signals import (
    MAX_HORIZON_H,
    HourlyForecaster,
    PersistenceForecaster,
    SeasonalNaiveForecaster,
    SignalForecaster,
)
from slit.workload.demand import DemandModel

METHODS = ("lightgbm", "persistence", "seasonal_naive")
DEMAND_METHODS = ("forecaster", "persistence", "seasonal_naive")
DEMAND_EVAL_RATE_RPS = 100.0  # the default scenario's rate
EVAL_SIGNALS: tuple[str, ...] = (CARBON_DIRECT, PRICE, WET_BULB)
# MAPE counts only points with |actual| at or above this floor: prices cross zero and a
# percentage of a near-zero price (or of a wet-bulb near 0 °C) is meaningless.
MAPE_FLOOR: dict[str, float] = {CARBON_DIRECT: 10.0, CARBON_LCA: 10.0, PRICE: 10.0,
                                TEMP: 1.0, WET_BULB: 1.0}


@dataclass(frozen=True, slots=True)
class EvalConfig:
    year: int | None = None  # None: the latest year every region has (data_year)
    first_origin_month: int = 3  # January and February are the first training window
    last_origin_month: int = 12
    issue_every_h: int = 6
    regions: tuple[str, ...] = DEFAULT_REGION_IDS
    signals: tuple[str, ...] = EVAL_SIGNALS
    seed: int = 0


def mape(actual: np.ndarray, predicted: np.ndarray, floor: float) -> float:
    """Mean absolute percentage error over points with |actual| >= floor (NaN if none)."""
    keep = np.abs(actual) >= floor
    if not keep.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs(predicted[keep] - actual[keep]) / np.abs(actual[keep])))


def make_forecasters(signals: tuple[str, ...], timezone: str,
                     seed: int) -> dict[str, HourlyForecaster]:
    return {
        "lightgbm": SignalForecaster(signals, timezone, seed=seed),
        "persistence": PersistenceForecaster(signals, timezone),
        "seasonal_naive": SeasonalNaiveForecaster(signals, timezone),
    }


def rolling_forecasts(history: pd.DataFrame, origins: list[pd.Timestamp], issue_every_h: int,
                      forecasters: dict[str, HourlyForecaster]
                      ) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(method, signal, issue positions, forecasts [issues, 24]) for each origin's period.

    The forecasters are refitted at each origin on ``history`` rows before it; forecasts for an
    issue position read only rows before that position.
    """
    start = history.index[0]
    bounds = [*origins, history.index[-1] + pd.Timedelta(hours=1)]
    for origin, next_origin in zip(bounds[:-1], bounds[1:], strict=True):
        first = int((origin - start) / pd.Timedelta(hours=1))
        stop = min(int((next_origin - start) / pd.Timedelta(hours=1)),
                   len(history) - MAX_HORIZON_H + 1)
        positions = np.arange(first, stop, issue_every_h)
        if len(positions) == 0:
            continue
        past = history[history.index < origin]
        for method, forecaster in forecasters.items():
            forecaster.fit(past)
            for signal in forecaster.signals:
                values = history[signal].to_numpy(dtype=float)
                yield method, signal, positions, forecaster.forecast_positions(
                    signal, values, start, positions, MAX_HORIZON_H)


def data_year(source: DataSource, regions: tuple[str, ...]) -> int:
    """The latest year every region has in ``source`` (the embedded default: the last year its
    statistics come from)."""
    if source.data_dir is None:
        return embedded_info().source_years[-1]
    common = set.intersection(*(set(available_years(source.data_dir, r)) for r in regions))
    if not common:
        raise SlitInputError(str(source), f"holds no year with all of {', '.join(regions)}",
                             "add one year's files for every region, or pick fewer regions")
    return max(common)


def evaluate_region(history: pd.DataFrame, region_id: str, config: EvalConfig) -> pd.DataFrame:
    """Error rows (region, signal, method, horizon_h, mae, mape, n) for one region."""
    year = history.index[0].year
    origins = [pd.Timestamp(year=year, month=m, day=1, tz="UTC")
               for m in range(config.first_origin_month, config.last_origin_month + 1)]
    forecasters = make_forecasters(config.signals, get_region(region_id).timezone, config.seed)
    collected: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for method, signal, positions, forecast in rolling_forecasts(
            history, origins, config.issue_every_h, forecasters):
        values = history[signal].to_numpy(dtype=float)
        actual = values[positions[:, None] + np.arange(MAX_HORIZON_H)[None, :]]
        actuals, forecasts = collected.setdefault((method, signal), ([], []))
        actuals.append(actual)
        forecasts.append(forecast)
    rows = []
    for (method, signal), (actuals, forecasts) in collected.items():
        actual, forecast = np.concatenate(actuals), np.concatenate(forecasts)
        for h in range(MAX_HORIZON_H):
            rows.append({
                "region": region_id, "signal": signal, "method": method, "horizon_h": h + 1,
                "mae": float(np.mean(np.abs(forecast[:, h] - actual[:, h]))),
                "mape_pct": mape(actual[:, h], forecast[:, h], MAPE_FLOOR[signal]),
                "n": len(actual),
            })
    return pd.DataFrame(rows)


def evaluate(source: DataSource, config: EvalConfig = EvalConfig(),
             progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Rolling-origin errors for every region of ``config``, over its year (default: the
    latest year the data holds for all of them)."""
    year = config.year if config.year is not None else data_year(source, config.regions)
    start = pd.Timestamp(year=year, month=1, day=1, tz="UTC")
    end = pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC")
    frames = []
    for region_id in config.regions:
        history = load_history(source, region_id, start, end, seed=config.seed)
        frames.append(evaluate_region(history, region_id, config))
        if progress is not None:
            progress(region_id)
    return pd.concat(frames, ignore_index=True)


def regions_beating_persistence(errors: pd.DataFrame,
                                signals: tuple[str, ...] = (CARBON_DIRECT, PRICE)) -> list[str]:
    """Regions where the model's MAE, averaged over horizons 1-24, beats persistence on every
    one of ``signals``."""
    mean = (errors[errors["signal"].isin(signals)]
            .groupby(["region", "signal", "method"])["mae"].mean().unstack("method"))
    better = (mean["lightgbm"] < mean["persistence"]).groupby(level="region").all()
    return [region for region in errors["region"].unique() if better.get(region, False)]


def evaluate_demand(seed: int = 0, history_days: int = DEFAULT_HISTORY_DAYS,
                    eval_days: int = 7, interval_s: float = 900.0,
                    global_rate_rps: float = DEMAND_EVAL_RATE_RPS) -> dict[str, float]:
    """Next-interval demand MAE (requests per origin and interval) on held-out days.

    The forecaster is fitted on ``history_days`` of observed counts before the start and then
    forecasts each interval of the ``eval_days`` after it from the counts observed so far, as
    in a run; persistence and the one-day seasonal naive see the same counts. The stream is the
    default workload's (``DemandModel`` at ``global_rate_rps``); the forecaster never sees it.
    """
    demand = DemandModel(global_rate_rps=global_rate_rps)
    start = pd.Timestamp(year=2023, month=6, day=5, tz="UTC")  # a Monday
    history = observed_history(demand, start, history_days, interval_s, seed)
    held_out = demand.observed_counts(start, eval_days * intervals_per_day(interval_s),
                                      interval_s, seed)
    forecaster = DemandForecaster(interval_s).fit(history)
    series = np.concatenate([history, held_out]).astype(float)
    errors: dict[str, list[float]] = {name: [] for name in DEMAND_METHODS}
    for k in range(len(held_out)):
        i = len(history) + k
        forecasts = {
            "forecaster": forecaster.predict_next(held_out[:k]),
            "persistence": persistence_forecast(series, i),
            "seasonal_naive": seasonal_naive_forecast(series, i, interval_s),
        }
        for name, forecast in forecasts.items():
            errors[name].append(float(np.abs(forecast - series[i]).mean()))
    out = {name: float(np.mean(values)) for name, values in errors.items()}
    out["mean_count"] = float(held_out.mean())
    return out
