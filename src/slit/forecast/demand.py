"""Next-interval demand per origin, learned only from request counts observed before it.

No oracle: the forecaster never sees the ``DemandModel`` that generates the stream. It is fitted
on observed history (``observed_history``: the counts of the ``history_days`` days before the
start, drawn from the same stream model and seed as the run, as an operator would have them from
the logs) and then told of each interval as it completes.

The forecast is a seasonal profile with an exponentially smoothed level (a multiplicative
Holt-Winters forecaster with the season fixed from history)::

    ref_i,o   = mean over d = 1..D of obs_(i - d*day),o         (same time of day, D days back)
    level_o   = (sum_k w_k obs_ko + 1) / (sum_k w_k ref_ko + 1),  w_k = 0.5 ** (age_k / halflife)
    forecast_o = level_o * ref_next,o

Averaging D days smooths the Poisson noise of any one day; the level follows weekday/weekend
and other departures from the profile within a few intervals. The +1 (one request) keeps quiet
origins from dividing by zero without biasing busy ones. ``slit forecast-eval`` reports its
error beside persistence and the one-day seasonal naive (docs/forecast.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from slit.errors import SlitInputError
from slit.workload.demand import DemandModel

DAY_S = 86400.0
DEFAULT_HISTORY_DAYS = 7
# The level looks back this many half-lives; older intervals weigh < 2 % together.
LEVEL_WINDOW_HALFLIVES = 6
# Counts of the history use their own child of the scenario's seed, apart from the period's.
HISTORY_STREAM = 1


def observed_history(demand: DemandModel, start_utc: pd.Timestamp, days: int,
                     interval_s: float, seed: int) -> np.ndarray:
    """Counts [days * intervals per day, n_origins] observed in the ``days`` days before
    ``start_utc``: a Poisson stream of ``demand`` (its draw, not its expectation)."""
    n = intervals_per_day(interval_s) * days
    begin = pd.Timestamp(start_utc) - pd.Timedelta(seconds=n * interval_s)
    child = int(np.random.SeedSequence([seed, HISTORY_STREAM]).generate_state(1)[0])
    return demand.observed_counts(begin, n, interval_s, child)


def intervals_per_day(interval_s: float) -> int:
    return max(1, int(round(DAY_S / interval_s)))


@dataclass
class DemandForecaster:
    """Expected requests per origin in the interval after the observed ones."""

    interval_s: float = 900.0
    halflife_intervals: float = 4.0
    max_days: int = DEFAULT_HISTORY_DAYS  # days of the seasonal profile
    _history: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def fit(self, history_counts: np.ndarray) -> DemandForecaster:
        """Learn from counts [H, n_origins] of the H intervals just before the first forecast
        (at least one day of them)."""
        history = np.asarray(history_counts, dtype=float)
        if history.ndim != 2 or len(history) < intervals_per_day(self.interval_s):
            raise SlitInputError("demand forecast", "needs at least one day of observed counts "
                                 "[intervals, origins] before the start",
                                 "fit it on the observed history (observed_history)")
        self._history = history
        return self

    def predict_next(self, observed_counts: np.ndarray) -> np.ndarray:
        """Forecast [n_origins] for interval ``K`` from counts [K, n_origins] of intervals
        ``0..K-1`` since the start (K may be 0)."""
        if self._history.size == 0:
            raise SlitInputError("demand forecast", "is not fitted", "call fit(history) first")
        counts = np.asarray(observed_counts, dtype=float).reshape(-1, self._history.shape[1])
        series = np.concatenate([self._history, counts])
        n = len(series)
        per_day = intervals_per_day(self.interval_s)
        window = int(LEVEL_WINDOW_HALFLIVES * self.halflife_intervals)
        first = max(per_day, n - window)  # points with at least one day behind them
        reference = np.stack([self._reference(series, i, per_day) for i in range(first, n + 1)])
        age = np.arange(n - first - 1, -1, -1, dtype=float)
        weight = 0.5 ** (age / self.halflife_intervals)
        level = (weight @ series[first:n] + 1.0) / (weight @ reference[:-1] + 1.0)
        return level * reference[-1]

    def predict_ahead(self, observed_counts: np.ndarray, steps: int) -> np.ndarray:
        """Forecasts [steps, n_origins] for intervals ``K .. K + steps - 1`` from counts
        [K, n_origins] of intervals ``0..K-1``: each the seasonal profile at its time of day
        times the level known now (the level is not extrapolated: it is what the observed
        intervals say, and later intervals are not observed yet). ``steps = 1`` is
        ``predict_next``."""
        if steps < 1:
            raise SlitInputError("demand forecast", f"{steps} steps ahead", "ask for >= 1")
        first = self.predict_next(observed_counts)
        if steps == 1:
            return first[None]
        counts = np.asarray(observed_counts, dtype=float).reshape(-1, self._history.shape[1])
        series = np.concatenate([self._history, counts])
        n = len(series)
        per_day = intervals_per_day(self.interval_s)
        reference_next = self._reference(series, n, per_day)
        # level = first / reference_next, kept as a ratio so quiet origins (reference 0) follow
        # their own profile (0) rather than dividing by zero.
        level = np.where(reference_next > 0, first / np.maximum(reference_next, 1e-12), 1.0)
        out = [first]
        for i in range(n + 1, n + steps):
            out.append(level * self._reference(series, i, per_day, observed=n))
        return np.stack(out)

    def _reference(self, series: np.ndarray, i: int, per_day: int,
                   observed: int | None = None) -> np.ndarray:
        """Mean count at the time of day of index ``i`` over the days before it (of the first
        ``observed`` points, by default all)."""
        limit = len(series) if observed is None else observed
        back = i - per_day * np.arange(1, self.max_days + 1)
        return series[back[(back >= 0) & (back < limit)]].mean(axis=0)


def persistence_forecast(series: np.ndarray, i: int) -> np.ndarray:
    """The last observed interval's counts."""
    return np.asarray(series[i - 1], dtype=float)


def seasonal_naive_forecast(series: np.ndarray, i: int, interval_s: float) -> np.ndarray:
    """The counts of the same interval one day earlier."""
    return np.asarray(series[i - intervals_per_day(interval_s)], dtype=float)
