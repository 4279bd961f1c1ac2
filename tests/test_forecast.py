"""Signal and demand forecasters: interface, no use of the future, baselines, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slit.data.signals import CARBON_DIRECT, PRICE
from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.forecast.demand import DemandForecaster, observed_history
from slit.forecast.evaluate import (
    EvalConfig,
    evaluate,
    evaluate_demand,
    make_forecasters,
    mape,
    regions_beating_persistence,
    rolling_forecasts,
)
from slit.forecast.history import WET_BULB, load_history
from slit.forecast.signals import (
    LgbmSettings,
    PersistenceForecaster,
    SeasonalNaiveForecaster,
    SignalForecaster,
)
from slit.workload.demand import DemandModel, interval_counts

SIGNALS = (CARBON_DIRECT, PRICE, WET_BULB)
SMALL = LgbmSettings(train_window_days=60, n_estimators=40)


@pytest.fixture(scope="module")
def history(data_dir: Path) -> pd.DataFrame:
    return load_history(DataSource(data_dir), "DE-LU", "2023-01-01", "2023-06-01")


def _corrupt_from(frame: pd.DataFrame, stamp: pd.Timestamp) -> pd.DataFrame:
    bad = frame.copy()
    future = bad.index >= stamp
    rng = np.random.default_rng(0)
    bad.loc[future, list(SIGNALS)] = rng.uniform(1e6, 1e9, (int(future.sum()), len(SIGNALS)))
    return bad


@pytest.mark.parametrize("kind", ["lightgbm", "persistence", "seasonal_naive"])
def test_forecast_is_unchanged_when_the_future_is_corrupted(history: pd.DataFrame,
                                                            kind: str) -> None:
    fit_end = pd.Timestamp("2023-04-01", tz="UTC")
    issue = pd.Timestamp("2023-04-20 10:40", tz="UTC")
    forecasts = []
    for frame in (history, _corrupt_from(history, issue.floor("h"))):
        forecaster = make_forecasters(SIGNALS, "Europe/Berlin", seed=0)[kind]
        if isinstance(forecaster, SignalForecaster):
            forecaster.settings = SMALL
        forecaster.fit(frame[frame.index < fit_end]).observe(frame[frame.index >= fit_end])
        forecasts.append(forecaster.predict(issue, 24))
    pd.testing.assert_frame_equal(forecasts[0], forecasts[1])
    assert forecasts[0].index[0] == issue.floor("h") and len(forecasts[0]) == 24
    assert np.isfinite(forecasts[0].to_numpy()).all()
    assert forecasts[0].abs().to_numpy().max() < 1e5  # nothing of the corrupted future


def test_rolling_evaluation_uses_only_the_past(history: pd.DataFrame) -> None:
    """Forecasts issued before the corruption point, and the models fitted before it, are
    identical whatever the data after it holds."""
    cut = pd.Timestamp("2023-05-01", tz="UTC")
    origins = [pd.Timestamp("2023-04-01", tz="UTC"), cut]
    results = []
    for frame in (history, _corrupt_from(history, cut)):
        forecasters = make_forecasters(SIGNALS, "Europe/Berlin", seed=0)
        forecasters["lightgbm"].settings = SMALL
        results.append([
            (method, signal, positions, forecast)
            for method, signal, positions, forecast in rolling_forecasts(frame, origins, 6,
                                                                        forecasters)
            if positions[0] < len(frame[frame.index < cut])
        ])
    assert len(results[0]) == len(results[1]) == 9
    for (m0, s0, p0, f0), (m1, s1, p1, f1) in zip(*results, strict=True):
        assert (m0, s0) == (m1, s1)
        np.testing.assert_array_equal(p0, p1)
        np.testing.assert_array_equal(f0, f1)


def test_baselines_definitions(history: pd.DataFrame) -> None:
    issue = pd.Timestamp("2023-05-10 07:00", tz="UTC")
    last = history.loc[issue - pd.Timedelta(hours=1), CARBON_DIRECT]
    persistence = PersistenceForecaster(SIGNALS).fit(history).predict(issue, 6)
    assert (persistence[CARBON_DIRECT] == last).all()
    seasonal = SeasonalNaiveForecaster(SIGNALS).fit(history).predict(issue, 24)
    yesterday = history.loc[seasonal.index - pd.Timedelta(hours=24), CARBON_DIRECT].to_numpy()
    np.testing.assert_array_equal(seasonal[CARBON_DIRECT].to_numpy(), yesterday)


def test_model_is_deterministic_and_beats_persistence_on_a_month(history: pd.DataFrame) -> None:
    train = history[history.index < "2023-05-01"]
    a = SignalForecaster(SIGNALS, "Europe/Berlin", seed=3).fit(train)
    b = SignalForecaster(SIGNALS, "Europe/Berlin", seed=3).fit(train)
    values = history[CARBON_DIRECT].to_numpy()
    positions = np.arange(len(train), len(history) - 24, 6)
    fa = a.forecast_positions(CARBON_DIRECT, values, history.index[0], positions, 24)
    np.testing.assert_array_equal(
        fa, b.forecast_positions(CARBON_DIRECT, values, history.index[0], positions, 24))
    fp = PersistenceForecaster(SIGNALS).fit(train).forecast_positions(
        CARBON_DIRECT, values, history.index[0], positions, 24)
    actual = values[positions[:, None] + np.arange(24)[None, :]]
    assert np.abs(fa - actual).mean() < np.abs(fp - actual).mean()


def test_predict_refuses_missing_recent_hours_and_bad_horizons(history: pd.DataFrame) -> None:
    forecaster = PersistenceForecaster(SIGNALS).fit(history[history.index < "2023-03-01"])
    with pytest.raises(SlitInputError):
        forecaster.predict("2023-03-05 00:00", 24)
    with pytest.raises(SlitInputError):
        forecaster.predict("2023-03-01 00:00", 25)
    with pytest.raises(SlitInputError):
        forecaster.observe(history[history.index >= "2023-03-02"])


def test_forecaster_works_on_the_embedded_default() -> None:
    history = load_history(EMBEDDED, "KR", "2023-01-01", "2023-04-01", seed=0)
    forecaster = SignalForecaster(SIGNALS, "Asia/Seoul", settings=SMALL).fit(history)
    forecast = forecaster.predict(history.index[-1] + pd.Timedelta(minutes=75), 24)
    assert forecast.shape == (24, 3) and np.isfinite(forecast.to_numpy()).all()


def test_mape_guard_skips_near_zero_actuals() -> None:
    actual = np.array([0.5, -2.0, 100.0])
    predicted = np.array([5.0, 3.0, 110.0])
    assert mape(actual, predicted, floor=10.0) == pytest.approx(10.0)
    assert np.isnan(mape(actual[:2], predicted[:2], floor=10.0))


def test_small_rolling_evaluation_reports_every_horizon(data_dir: Path) -> None:
    config = EvalConfig(regions=("CL-SIC", "JP-TK"), first_origin_month=10, issue_every_h=12)
    errors = evaluate(DataSource(data_dir), config)
    assert set(errors["horizon_h"]) == set(range(1, 25))
    assert len(errors) == 2 * 3 * 3 * 24
    assert regions_beating_persistence(errors) == ["CL-SIC", "JP-TK"]


class _NoOracle(DemandModel):
    """A demand model whose expectation must never be read by a forecaster."""

    def expected_counts(self, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the forecaster read the demand model's expectation")


def test_demand_forecaster_never_reads_the_expectation_and_learns_the_level() -> None:
    truth = _NoOracle(global_rate_rps=20.0)
    start = pd.Timestamp("2023-06-07", tz="UTC")
    forecaster = DemandForecaster(900.0).fit(observed_history(truth, start, 7, 900.0, seed=2))
    period = truth.observed_counts(start, 96, 900.0, seed=2)
    forecast = np.stack([forecaster.predict_next(period[:k]) for k in range(96)])
    # Over the day, the forecasts add up to what was observed (the level is learned) ...
    assert forecast.sum() == pytest.approx(period.sum(), rel=0.03)
    # ... and follow the daily shape: the correlation with the observed counts is high.
    assert np.corrcoef(forecast.ravel(), period.ravel())[0, 1] > 0.98
    # A demand that doubles is followed within a few intervals.
    doubled = np.concatenate([period[:40], 2 * period[40:48]])
    assert forecaster.predict_next(doubled).sum() > 1.6 * forecaster.predict_next(
        period[:48]).sum()


def test_demand_forecaster_beats_persistence_on_held_out_days() -> None:
    for rate in (5.0, 100.0):
        mae = evaluate_demand(seed=3, eval_days=2, global_rate_rps=rate)
        assert mae["forecaster"] < 0.9 * mae["persistence"], mae
        assert mae["forecaster"] < mae["seasonal_naive"], mae


def test_demand_forecaster_needs_a_day_of_history() -> None:
    with pytest.raises(SlitInputError, match="one day"):
        DemandForecaster(900.0).fit(np.zeros((95, 15)))
    with pytest.raises(SlitInputError, match="not fitted"):
        DemandForecaster(900.0).predict_next(np.zeros((3, 15)))


def test_observed_counts_are_the_generated_stream_counts() -> None:
    model = DemandModel(global_rate_rps=3.0)
    start = pd.Timestamp("2023-06-07 06:00", tz="UTC")
    batch = model.generate(start, start + pd.Timedelta(hours=6), seed=11)
    counts = interval_counts(batch, model.n_origins, 900.0, 24)
    assert np.array_equal(model.observed_counts(start, 24, 900.0, seed=11), counts)


def test_the_run_plans_demand_without_the_demand_models_expectation(tmp_path: Path) -> None:
    from dataclasses import replace

    from scenario_helpers import write_tiny

    from slit.config import load_scenario
    from slit.experiment.run import interval_problem, prepare
    scenario = load_scenario(write_tiny(tmp_path))
    d = scenario.demand
    blind = replace(scenario, demand=_NoOracle(origins=d.origins, weights=d.weights,
                                               global_rate_rps=d.global_rate_rps,
                                               trace_mix=d.trace_mix))
    prepared = prepare(blind)
    for k in range(blind.n_intervals):
        problem = interval_problem(prepared, k)
        assert problem.demand_rps.shape == (len(d.origins),)
        assert (problem.demand_rps > 0).all()
    # Interval 0 is forecast from the observed history alone, close to the realised load.
    first = interval_problem(prepared, 0).demand_rps * blind.interval_s
    assert first.sum() == pytest.approx(prepared.counts[0].sum(), rel=0.25)


def test_evaluation_year_is_the_datas_latest_common_year(data_dir: Path, tmp_path: Path) -> None:
    from slit.forecast.evaluate import data_year

    assert data_year(DataSource(data_dir), ("SG", "KR")) == 2023
    for region, year in (("SG", 2031), ("SG", 2030), ("KR", 2030)):
        folder = tmp_path / "regions" / region / str(year)
        folder.mkdir(parents=True)
        for name in ("carbon_intensity.csv", "electricity_price.csv", "weather.json"):
            (folder / name).write_text("", encoding="utf-8")
    assert data_year(DataSource(tmp_path), ("SG", "KR")) == 2030
    assert data_year(DataSource(tmp_path), ("SG",)) == 2031
    with pytest.raises(SlitInputError, match="no year"):
        data_year(DataSource(tmp_path), ("SG", "ZA"))
