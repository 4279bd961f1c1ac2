"""Forecasts of a site's hourly signals (carbon intensity, price, temperature, wet-bulb).

Time convention. Hourly rows are stamped at the start of their hour, so the row stamped ``h`` is
known once ``h + 1 h`` has passed. A forecast issued at any instant ``t`` uses only rows stamped
before ``floor(t, hour)`` (completed hours) and predicts the rows stamped ``floor(t, hour)``,
``+1 h``, ... : horizon 1 is the hour in progress at issue time, horizon 24 the hour starting 23 h
later.

Three forecasters share one interface (``fit``, ``observe``, ``predict``):

- ``PersistenceForecaster``: every horizon gets the last completed hour's value.
- ``SeasonalNaiveForecaster``: each target hour gets the value of the same hour the day before.
- ``SignalForecaster``: one LightGBM model per signal with the horizon as a feature. Features are
  the horizon, the target's local hour and weekday, and lags relative to the last value (last
  changes, same hour 1, 2 and 7 days before the target, 24 h and 168 h means, 24 h spread). The
  target is the change from the last value, so the trees never have to extrapolate a level that
  drifted since training; the loss is L1 because forecasts are judged by MAE and prices spike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from slit.data.signals import CARBON_DIRECT, CARBON_LCA, PRICE, TEMP
from slit.errors import SlitInputError
from slit.forecast.history import WET_BULB
from slit.timeutil import to_utc

FORECAST_SIGNALS: tuple[str, ...] = (CARBON_DIRECT, CARBON_LCA, PRICE, TEMP, WET_BULB)
MAX_HORIZON_H = 24
# The features look back one week before a target hour and 168 h before the issue hour.
LOOKBACK_H = 168
HOUR = pd.Timedelta(hours=1)


class HourlyForecaster:
    """Common part: holds the observed history and turns issue times into array positions."""

    def __init__(self, signals: tuple[str, ...] = FORECAST_SIGNALS, timezone: str = "UTC") -> None:
        self.signals = tuple(signals)
        self.timezone = timezone
        self._history: pd.DataFrame | None = None

    def fit(self, history: pd.DataFrame) -> Self:
        """Learn from ``history`` (hourly UTC index, one column per signal) and keep it."""
        self._history = _checked(history, self.signals, "forecast history")
        self._train(self._history)
        return self

    def observe(self, rows: pd.DataFrame) -> Self:
        """Append newly completed hours (after the last one held) without retraining."""
        held = self._fitted_history()
        rows = _checked(rows, self.signals, "forecast observations")
        rows = rows[rows.index > held.index[-1]]
        if len(rows) and rows.index[0] != held.index[-1] + HOUR:
            raise SlitInputError("forecast observations",
                                 f"start at {rows.index[0]}, leaving a gap after "
                                 f"{held.index[-1]}", "pass every completed hour in order")
        self._history = pd.concat([held, rows])
        return self

    def predict(self, issue_time_utc: pd.Timestamp | str, horizon_h: int = MAX_HORIZON_H
                ) -> pd.DataFrame:
        """Forecast for the ``horizon_h`` hours from ``floor(issue_time, hour)``.

        Returns a frame indexed by target hour (UTC) with one column per signal.
        """
        held = self._fitted_history()
        if not 1 <= horizon_h <= MAX_HORIZON_H:
            raise SlitInputError("forecast horizon", f"{horizon_h} h is outside 1..{MAX_HORIZON_H}",
                                 f"ask for 1 to {MAX_HORIZON_H} hours")
        issue = to_utc(issue_time_utc).floor("h")
        position = int((issue - held.index[0]) / HOUR)
        if position > len(held):
            raise SlitInputError("forecast", f"no observations between {held.index[-1]} and the "
                                 f"issue time {issue}", "observe() every completed hour first")
        if position < LOOKBACK_H + 1:
            raise SlitInputError("forecast", f"issue time {issue} has less than {LOOKBACK_H + 1} h "
                                 "of history before it", "fit on a longer history")
        out = {
            signal: self.forecast_positions(signal, held[signal].to_numpy(), held.index[0],
                                            np.array([position]), horizon_h)[0]
            for signal in self.signals
        }
        index = pd.date_range(issue, periods=horizon_h, freq="h", name="time_utc")
        return pd.DataFrame(out, index=index)

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        """Forecasts [len(positions), horizon_h] issued at each position of ``values``.

        ``values[i]`` is the hour ``start_utc + i h``; the forecast at position ``p`` reads only
        ``values[:p]``, so one array can serve many issue times without leaking the future.
        """
        raise NotImplementedError

    def _train(self, history: pd.DataFrame) -> None:
        """Baselines have nothing to learn."""

    def _fitted_history(self) -> pd.DataFrame:
        if self._history is None:
            raise RuntimeError(f"{type(self).__name__}.fit() must be called before use")
        return self._history


class PersistenceForecaster(HourlyForecaster):
    """Last completed hour, held for every horizon."""

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        return np.repeat(values[positions - 1][:, None], horizon_h, axis=1)


class SeasonalNaiveForecaster(HourlyForecaster):
    """Same hour the day before."""

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        targets = positions[:, None] + np.arange(horizon_h)[None, :]
        return values[targets - 24]


@dataclass(frozen=True, slots=True)
class LgbmSettings:
    """Training set and booster size of ``SignalForecaster``."""

    train_window_days: int = 120  # recent history only: grid mixes and markets drift
    issue_stride_h: int = 4  # one training issue time every few hours keeps fits small
    n_estimators: int = 80
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 40


class SignalForecaster(HourlyForecaster):
    """LightGBM with calendar and lag features, one model per signal, horizon as a feature."""

    def __init__(self, signals: tuple[str, ...] = FORECAST_SIGNALS, timezone: str = "UTC",
                 seed: int = 0, settings: LgbmSettings = LgbmSettings()) -> None:
        super().__init__(signals, timezone)
        self.seed = seed
        self.settings = settings
        self._models: dict[str, lgb.LGBMRegressor] = {}

    def _train(self, history: pd.DataFrame) -> None:
        n = len(history)
        first = max(LOOKBACK_H + 1, n - MAX_HORIZON_H + 1 - self.settings.train_window_days * 24)
        positions = np.arange(first, n - MAX_HORIZON_H + 1, self.settings.issue_stride_h)
        if len(positions) < 50:
            raise SlitInputError("forecast history", f"{n} hours are too few to train on",
                                 f"give at least {LOOKBACK_H + MAX_HORIZON_H + 50 * 3} hours")
        self._models = {}
        for signal in self.signals:
            values = history[signal].to_numpy(dtype=float)
            features, last = _features(values, history.index[0], positions, MAX_HORIZON_H,
                                       self.timezone)
            targets = positions[:, None] + np.arange(MAX_HORIZON_H)[None, :]
            change = (values[targets] - last[:, None]).ravel()
            # One thread: the sets are small, and OpenMP threads that spin-wait slow to a crawl
            # when another process holds the second core.
            model = lgb.LGBMRegressor(
                objective="l1", n_estimators=self.settings.n_estimators,
                learning_rate=self.settings.learning_rate, num_leaves=self.settings.num_leaves,
                min_child_samples=self.settings.min_child_samples, subsample=1.0,
                colsample_bytree=1.0, n_jobs=1, deterministic=True, force_row_wise=True,
                random_state=self.seed, verbose=-1,
            )
            model.fit(features, change)
            self._models[signal] = model

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        if signal not in self._models:
            raise RuntimeError(f"SignalForecaster has no model for {signal!r}; fit() first")
        features, last = _features(np.asarray(values, dtype=float), start_utc, positions,
                                   horizon_h, self.timezone)
        change = np.asarray(self._models[signal].predict(features)).reshape(len(positions),
                                                                     horizon_h)
        return last[:, None] + change


FEATURE_NAMES = ("horizon_h", "local_hour", "local_weekday", "last", "change_1h", "change_3h",
                 "change_24h", "same_hour_1d", "same_hour_2d", "same_hour_7d", "mean_24h",
                 "mean_168h", "std_24h")


def _features(values: np.ndarray, start_utc: pd.Timestamp, positions: np.ndarray,
              horizon_h: int, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (issue-major, horizon-minor) and the last known value per issue.

    Every lag index is < its issue position: same-hour lags are at target - 24 k with
    target - issue < 24, windows end at issue - 1.
    """
    positions = np.asarray(positions, dtype=np.int64)
    horizons = np.arange(1, horizon_h + 1)
    targets = positions[:, None] + horizons[None, :] - 1
    cumulative = np.concatenate([[0.0], np.cumsum(values[: positions.max()])])
    cumulative_sq = np.concatenate([[0.0], np.cumsum(values[: positions.max()] ** 2)])
    last = values[positions - 1]

    def window_mean(width: int, source: np.ndarray) -> np.ndarray:
        return (source[positions] - source[positions - width]) / width

    mean_24 = window_mean(24, cumulative)
    std_24 = np.sqrt(np.maximum(window_mean(24, cumulative_sq) - mean_24**2, 0.0))
    per_issue = np.stack([
        last,
        last - values[positions - 2],
        last - values[positions - 4],
        last - values[positions - 25],
        mean_24 - last,
        window_mean(LOOKBACK_H, cumulative) - last,
        std_24,
    ], axis=1)
    stamps = pd.DatetimeIndex(start_utc + pd.to_timedelta(targets.ravel(), unit="h"))
    local = stamps.tz_convert(timezone)
    shape = targets.shape
    columns = [
        np.broadcast_to(horizons[None, :], shape).ravel().astype(float),
        np.asarray(local.hour, dtype=float),
        np.asarray(local.day_of_week, dtype=float),
        np.repeat(per_issue[:, 0], horizon_h),
        np.repeat(per_issue[:, 1], horizon_h),
        np.repeat(per_issue[:, 2], horizon_h),
        np.repeat(per_issue[:, 3], horizon_h),
        (values[targets - 24] - last[:, None]).ravel(),
        (values[targets - 48] - last[:, None]).ravel(),
        (values[targets - 168] - last[:, None]).ravel(),
        np.repeat(per_issue[:, 4], horizon_h),
        np.repeat(per_issue[:, 5], horizon_h),
        np.repeat(per_issue[:, 6], horizon_h),
    ]
    return np.stack(columns, axis=1), last


def _checked(frame: pd.DataFrame, signals: tuple[str, ...], where: str) -> pd.DataFrame:
    """Hourly, gap-free, UTC, NaN-free in the forecast signals."""
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise SlitInputError(where, "index is not a tz-aware DatetimeIndex",
                             "index the rows by UTC hour")
    missing = [s for s in signals if s not in frame.columns]
    if missing:
        raise SlitInputError(where, f"missing column {missing[0]!r}",
                             "add wet_bulb_c with slit.forecast.history.add_wet_bulb")
    out = frame[list(signals)].astype(float)
    out.index = frame.index.tz_convert("UTC")
    if len(out) and ((out.index[1:] - out.index[:-1]) != HOUR).any():
        raise SlitInputError(where, "rows are not consecutive hours", "fill or drop the gaps")
    if out.isna().to_numpy().any():
        raise SlitInputError(where, "holds NaN values", "fill them before forecasting")
    return out

