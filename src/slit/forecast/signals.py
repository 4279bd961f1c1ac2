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

Missing hours (a gap in the data, a ``SignalGap`` event, hours before the data's first year) are
NaN in the history the forecasters hold; they are data, not an error. Each forecast says, per
signal, which ``method`` produced it (``SignalForecast.methods``):

- ``model``: the learned model (or the baseline's rule), on a history whose missing hours were
  filled causally, each gap with the fallback issued at its start (never with later values);
- while the last completed hour of a signal is missing, its ``FALLBACK`` (``profile``: the mean
  of each UTC hour of day over the observed hours of the ``PROFILE_DAYS`` days before the gap;
  ``anchored_profile``: that profile shifted to the last reading, the shift fading with a 24 h
  half-life; ``last_good``: the last observed value), issued at the start of the gap;
- ``prior``: nothing observed to fall back on: the prior (the embedded default's monthly
  profile of the region, ``prior_profiles``), never zero;
- a model that could not be trained (history shorter than ``min_train_issues`` issue times
  with observed targets) or that lacks the week of look-back: ``profile`` with
  ``SignalForecast.short_history`` set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from slit.data.signals import CARBON_DIRECT, CARBON_LCA, PRICE, RH, TEMP
from slit.errors import SlitInputError
from slit.forecast.history import WET_BULB
from slit.timeutil import to_utc

FORECAST_SIGNALS: tuple[str, ...] = (CARBON_DIRECT, CARBON_LCA, PRICE, TEMP, WET_BULB)
MAX_HORIZON_H = 24
# The features look back one week before a target hour and 168 h before the issue hour.
LOOKBACK_H = 168
HOUR = pd.Timedelta(hours=1)

MODEL, PROFILE, ANCHORED, LAST_GOOD, PRIOR = (
    "model", "profile", "anchored_profile", "last_good", "prior")
# The seasonal profile of a gap fallback averages this many days before the gap.
PROFILE_DAYS = 7
# The anchored profile starts at the last reading and returns to the profile with this
# half-life: a level that differs from the week's mean persists for hours, not for days.
ANCHOR_HALFLIFE_H = 24.0
# The fallback per signal while its feed is missing, chosen by the 6 h gap experiment of
# docs/forecast.md ("Planning through data gaps"): the anchored profile beat the plain profile
# and the last good value on carbon, temperature and wet-bulb; on price, whose spikes make the
# last reading a poor anchor, the plain profile won.
FALLBACK: dict[str, str] = {CARBON_DIRECT: ANCHORED, CARBON_LCA: ANCHORED, PRICE: PROFILE,
                            TEMP: ANCHORED, RH: ANCHORED, WET_BULB: ANCHORED}
# Fewer training issue times than this with observed targets: no model, the profile instead.
MIN_TRAIN_ISSUES = 50


@dataclass(frozen=True)
class SignalForecast:
    """A forecast (rows: target hours, columns: signals) and how each signal was forecast."""

    values: pd.DataFrame
    methods: dict[str, str]  # signal -> MODEL | PROFILE | LAST_GOOD | PRIOR
    short_history: bool  # some signal had too little history for its model

    @property
    def fallback(self) -> dict[str, str]:
        """The signals not forecast by the model, with their method."""
        return {s: m for s, m in self.methods.items() if m != MODEL}


def prior_profiles(region_id: str, signals: tuple[str, ...]) -> dict[str, np.ndarray]:
    """[12 months, 24 UTC hours] mean of each signal in the region: the embedded default's
    statistics (slit.data.embedded), the prior when nothing has been observed. Wet-bulb is
    that of the mean temperature and humidity (an approximation of the mean wet-bulb)."""
    from slit.data.embedded import region_stats
    from slit.data.signals import SIGNAL_COLUMNS
    from slit.footprint.wetbulb import wet_bulb_c

    mean = region_stats(region_id).mean
    out = {}
    for signal in signals:
        if signal == WET_BULB:
            out[signal] = wet_bulb_c(mean[:, :, SIGNAL_COLUMNS.index(TEMP)],
                                     mean[:, :, SIGNAL_COLUMNS.index(RH)])
        else:
            out[signal] = mean[:, :, SIGNAL_COLUMNS.index(signal)].copy()
    return out


class HourlyForecaster:
    """Common part: holds the observed history (NaN where an hour is missing), fills its gaps
    causally, and turns issue times into array positions."""

    def __init__(self, signals: tuple[str, ...] = FORECAST_SIGNALS, timezone: str = "UTC",
                 prior: dict[str, np.ndarray] | None = None) -> None:
        self.signals = tuple(signals)
        self.timezone = timezone
        # signal -> [12 months, 24 UTC hours] prior mean (prior_profiles); None: no prior.
        self.prior = prior
        self._history: pd.DataFrame | None = None
        self._hidden: pd.DataFrame | None = None
        # Target hour -> signal -> method of the last forecast of that hour (flags for reports).
        self.methods_by_target: dict[pd.Timestamp, dict[str, str]] = {}
        self.short_history = False

    def hide(self, unavailable: pd.DataFrame) -> Self:
        """Hours x signals (True) this forecaster never sees, whatever fit() or observe() is
        given: the planner's view of a data gap (a ``SignalGap`` event)."""
        self._hidden = unavailable.astype(bool)
        if self._history is not None:
            self._history = self._masked(self._history)
        return self

    def fit(self, history: pd.DataFrame) -> Self:
        """Learn from ``history`` (hourly UTC index, one column per signal, NaN where missing)
        and keep it."""
        self._history = self._masked(_checked(history, self.signals, "forecast history"))
        self._train(self._history)
        return self

    def observe(self, rows: pd.DataFrame) -> Self:
        """Append newly completed hours (after the last one held) without retraining; missing
        hours are NaN rows."""
        held = self._fitted_history()
        rows = _checked(rows, self.signals, "forecast observations")
        rows = rows[rows.index > held.index[-1]]
        if len(rows) and rows.index[0] != held.index[-1] + HOUR:
            raise SlitInputError("forecast observations",
                                 f"start at {rows.index[0]}, leaving a gap after "
                                 f"{held.index[-1]}", "pass every completed hour in order "
                                 "(missing hours as NaN rows)")
        self._history = pd.concat([held, self._masked(rows)])
        return self

    def predict(self, issue_time_utc: pd.Timestamp | str, horizon_h: int = MAX_HORIZON_H
                ) -> pd.DataFrame:
        """Forecast for the ``horizon_h`` hours from ``floor(issue_time, hour)``.

        Returns a frame indexed by target hour (UTC) with one column per signal.
        """
        return self.forecast(issue_time_utc, horizon_h).values

    def forecast(self, issue_time_utc: pd.Timestamp | str, horizon_h: int = MAX_HORIZON_H
                 ) -> SignalForecast:
        """``predict`` with, per signal, the method used (model or a flagged fallback)."""
        held = self._fitted_history()
        if not 1 <= horizon_h <= MAX_HORIZON_H:
            raise SlitInputError("forecast horizon", f"{horizon_h} h is outside 1..{MAX_HORIZON_H}",
                                 f"ask for 1 to {MAX_HORIZON_H} hours")
        issue = to_utc(issue_time_utc).floor("h")
        position = int((issue - held.index[0]) / HOUR)
        if position > len(held):
            raise SlitInputError("forecast", f"no observations between {held.index[-1]} and the "
                                 f"issue time {issue}", "observe() every completed hour first")
        if position < 1:
            raise SlitInputError("forecast", f"issue time {issue} is not after the history's "
                                 f"first hour {held.index[0]}", "fit on hours before the issue")
        out, methods, short = {}, {}, False
        for signal in self.signals:
            raw = held[signal].to_numpy(dtype=float)[:position]
            observed = ~np.isnan(raw)
            prior = self._prior_at(signal, held.index[0])
            if not observed[-1]:
                # The feed is down: the fallback issued when it went down (never later data).
                begin = _gap_start(observed)
                method = FALLBACK.get(signal, PROFILE)
                filled = self._filled(signal, raw[:begin], held.index[0])
                values = _fallback(filled, observed[:begin], begin, position - begin + horizon_h,
                                   method, prior)[-horizon_h:]
                method = _label(method, observed[:begin], prior is not None)
            elif not self._can_forecast(signal, position):
                short, method = True, PROFILE
                filled = self._filled(signal, raw, held.index[0])
                values = _fallback(filled, observed, position, horizon_h, PROFILE, prior)
                method = _label(PROFILE, observed, prior is not None)
            else:
                method = MODEL
                filled = self._filled(signal, raw, held.index[0])
                values = self.forecast_positions(signal, filled, held.index[0],
                                                 np.array([position]), horizon_h)[0]
            out[signal] = values
            methods[signal] = method
        index = pd.date_range(issue, periods=horizon_h, freq="h", name="time_utc")
        for target in index:
            self.methods_by_target[target] = dict(methods)
        self.short_history = self.short_history or short
        return SignalForecast(pd.DataFrame(out, index=index), methods, short)

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        """Forecasts [len(positions), horizon_h] issued at each position of ``values``.

        ``values[i]`` is the hour ``start_utc + i h`` (no NaN); the forecast at position ``p``
        reads only ``values[:p]``, so one array can serve many issue times without leaking the
        future.
        """
        raise NotImplementedError

    def _can_forecast(self, signal: str, position: int) -> bool:
        """Whether the method's own rule has what it reads at ``position``."""
        return position >= 1

    def _train(self, history: pd.DataFrame) -> None:
        """Baselines have nothing to learn."""

    def _filled(self, signal: str, raw: np.ndarray, start_utc: pd.Timestamp) -> np.ndarray:
        return fill_causally(raw, FALLBACK.get(signal, PROFILE),
                             self._prior_at(signal, start_utc))

    def _prior_at(self, signal: str, start_utc: pd.Timestamp
                  ) -> Callable[[np.ndarray], np.ndarray] | None:
        """Positions -> the prior's value at those hours (None without a prior)."""
        if self.prior is None or signal not in self.prior:
            return None
        table = self.prior[signal]

        def at(positions: np.ndarray) -> np.ndarray:
            stamps = pd.DatetimeIndex(start_utc + pd.to_timedelta(positions, unit="h"))
            return table[stamps.month.to_numpy() - 1, stamps.hour.to_numpy()]
        return at

    def _masked(self, rows: pd.DataFrame) -> pd.DataFrame:
        if self._hidden is None:
            return rows
        hidden = self._hidden.reindex(index=rows.index, columns=rows.columns, fill_value=False)
        return rows.mask(hidden.fillna(False).astype(bool))

    def _fitted_history(self) -> pd.DataFrame:
        if self._history is None:
            raise RuntimeError(f"{type(self).__name__}.fit() must be called before use")
        return self._history


def _label(method: str, observed: np.ndarray, has_prior: bool) -> str:
    """What a fallback issued after ``observed`` really rests on: with no reading to average
    (none at all, or none in the profile's window) it is the prior's values, else the last
    reading held."""
    window = observed[-PROFILE_DAYS * 24:] if method in (PROFILE, ANCHORED) else observed
    if window.any():
        return method
    return PRIOR if has_prior else LAST_GOOD


def _gap_start(observed: np.ndarray) -> int:
    """Index of the first hour of the trailing run of missing hours (0 if all missing)."""
    seen = np.flatnonzero(observed)
    return int(seen[-1]) + 1 if len(seen) else 0


def _fallback(filled: np.ndarray, observed: np.ndarray, begin: int, n: int, method: str,
              prior_at: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Forecast of the ``n`` hours from position ``begin``, issued at ``begin`` from
    ``filled[:begin]`` (gap-free) and ``observed[:begin]`` (which of them are readings).

    ``profile``: per UTC hour of day, the mean of the readings at that hour in the
    ``PROFILE_DAYS`` days before ``begin``; an hour of day without a reading takes the prior,
    else the last reading. ``anchored_profile``: the profile plus the last reading's departure
    from its own hour's profile, halved every ``ANCHOR_HALFLIFE_H``. ``last_good``: the last
    reading. ``prior``: the prior's values. With
    no reading and no prior there is nothing to forecast from: refused, never zero.
    """
    targets = begin + np.arange(n)
    seen = np.flatnonzero(observed[:begin])
    if method == PRIOR or not len(seen):
        if prior_at is None:
            raise SlitInputError("forecast", "a signal has no observed hour and no prior",
                                 "give the forecaster a history with readings, or a prior "
                                 "(prior_profiles)")
        return prior_at(targets)
    last = filled[seen[-1]]
    if method == LAST_GOOD:
        return np.full(n, last)
    window = np.arange(max(0, begin - PROFILE_DAYS * 24), begin)
    keep = observed[window]
    sums = np.bincount(window[keep] % 24, weights=filled[window[keep]], minlength=24)
    counts = np.bincount(window[keep] % 24, minlength=24)

    def profile_at(positions: np.ndarray) -> np.ndarray:
        hour_of_day = positions % 24
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = sums[hour_of_day] / counts[hour_of_day]
        empty = counts[hour_of_day] == 0
        if empty.any():
            profile[empty] = prior_at(positions[empty]) if prior_at is not None else last
        return profile

    profile = profile_at(targets)
    if method == ANCHORED:
        # Start from the last reading's departure from its hour's profile, fading out.
        offset = last - profile_at(np.array([seen[-1]]))[0]
        profile = profile + offset * 0.5 ** ((targets - seen[-1]) / ANCHOR_HALFLIFE_H)
    return profile


def fill_causally(raw: np.ndarray, method: str,
                  prior_at: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """``raw`` with each run of NaN replaced by ``method``'s fallback issued at the run's start
    (so a filled hour depends only on hours before its gap). A leading run, with nothing before
    it, takes the prior, else the first reading held backwards (history only: no issue time
    precedes it)."""
    observed = ~np.isnan(raw)
    if observed.all() or not observed.any():
        if observed.any() or prior_at is None:
            return raw.copy()
        return prior_at(np.arange(len(raw))).astype(float)
    filled = raw.copy()
    for begin, length in _runs(~observed):
        if begin == 0:
            first = filled[length]
            filled[:length] = prior_at(np.arange(length)) if prior_at is not None else first
        else:
            filled[begin:begin + length] = _fallback(filled, observed, begin, length, method,
                                                     prior_at)
    return filled


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True in ``mask``."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class PersistenceForecaster(HourlyForecaster):
    """Last completed hour, held for every horizon."""

    def forecast_positions(self, signal: str, values: np.ndarray, start_utc: pd.Timestamp,
                           positions: np.ndarray, horizon_h: int) -> np.ndarray:
        return np.repeat(values[positions - 1][:, None], horizon_h, axis=1)


class SeasonalNaiveForecaster(HourlyForecaster):
    """Same hour the day before."""

    def _can_forecast(self, signal: str, position: int) -> bool:
        return position >= 24

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
                 seed: int = 0, settings: LgbmSettings = LgbmSettings(),
                 prior: dict[str, np.ndarray] | None = None,
                 min_train_issues: int = MIN_TRAIN_ISSUES) -> None:
        super().__init__(signals, timezone, prior)
        self.seed = seed
        self.min_train_issues = min_train_issues
        self.settings = settings
        self._models: dict[str, lgb.LGBMRegressor] = {}

    def _train(self, history: pd.DataFrame) -> None:
        """One model per signal on issue times whose last hour and targets are readings (gaps
        filled causally for the features); a signal with fewer than ``min_train_issues`` such
        issue times gets no model and is forecast by its profile (flagged short history)."""
        n = len(history)
        first = max(LOOKBACK_H + 1, n - MAX_HORIZON_H + 1 - self.settings.train_window_days * 24)
        candidates = np.arange(first, n - MAX_HORIZON_H + 1, self.settings.issue_stride_h)
        self._models = {}
        for signal in self.signals:
            raw = history[signal].to_numpy(dtype=float)
            observed = ~np.isnan(raw)
            positions = candidates
            if not observed.all() and len(candidates):
                targets = candidates[:, None] + np.arange(MAX_HORIZON_H)[None, :]
                positions = candidates[observed[candidates - 1] & observed[targets].all(axis=1)]
            if len(positions) < self.min_train_issues:
                continue
            values = self._filled(signal, raw, history.index[0])
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

    def _can_forecast(self, signal: str, position: int) -> bool:
        return signal in self._models and position >= LOOKBACK_H + 1

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
    """Consecutive UTC hours with the forecast signals (NaN where an hour is missing)."""
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
        raise SlitInputError(where, "rows are not consecutive hours",
                             "give every hour a row (NaN where it is missing)")
    return out

