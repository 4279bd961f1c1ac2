"""Signal and demand forecasters: interface, no use of the future, baselines, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slit.data.signals import CARBON_DIRECT, PRICE
from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.forecast.demand import DemandForecaster
from slit.forecast.evaluate import (
    EvalConfig,
    evaluate,
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


def test_demand_forecaster_learns_the_level_and_beats_persistence() -> None:
    prior = DemandModel(global_rate_rps=2.0)
    truth = DemandModel(global_rate_rps=2.6)
    start = pd.Timestamp("2023-06-05", tz="UTC")
    counts = interval_counts(truth.generate(start, start + pd.Timedelta(days=2), seed=5),
                             truth.n_origins, 900.0, 192)
    with_prior, seasonal = DemandForecaster(900.0, prior), DemandForecaster(900.0)
    errors = {"prior": [], "seasonal": [], "persistence": []}
    for k in range(97, 192):
        errors["prior"].append(np.abs(with_prior.predict_next(start, counts[:k]) - counts[k]))
        errors["seasonal"].append(np.abs(seasonal.predict_next(start, counts[:k]) - counts[k]))
        errors["persistence"].append(np.abs(counts[k - 1] - counts[k]))
    mae = {name: float(np.mean(v)) for name, v in errors.items()}
    assert mae["prior"] < mae["persistence"]
    assert mae["seasonal"] < mae["persistence"]
    forecast = with_prior.predict_next(start, counts[:150])
    expected = truth.expected_counts(start, 151, 900.0)[-1]
    assert forecast.sum() == pytest.approx(expected.sum(), rel=0.05)


def test_demand_forecast_uses_only_observed_counts() -> None:
    forecaster = DemandForecaster(900.0, DemandModel(global_rate_rps=2.0))
    counts = np.full((10, 15), 100)
    assert np.array_equal(forecaster.predict_next("2023-06-05", counts),
                          forecaster.predict_next("2023-06-05", counts.copy()))
    with pytest.raises(SlitInputError):
        forecaster.predict_next("2023-06-05", np.zeros((0, 15)))
