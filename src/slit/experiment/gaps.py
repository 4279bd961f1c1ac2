"""Data gaps in a run: what the planner cannot see, what the judge interpolates, and the flags.

Two kinds of missing hours, both over the signal groups of ``events.SIGNAL_NAMES``:

- hours the data does not hold (``slit.data.source.missing_hours``: a gap longer than the
  readers interpolate, a file stopping short of its year, a year absent from the data dir): the
  planner sees nothing; the judge uses the linear interpolation between the readings around the
  gap (held at the ends) and results.json flags those hours;
- a ``SignalGap`` event: the planner sees nothing; the judge uses the real values.

While a signal is missing its forecast falls back (``slit.forecast.signals.FALLBACK``); every
interval and region whose forecast is not the model's is listed in results.json
(``data_gaps.planner_fallbacks``) and in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from slit.data.signals import CARBON_DIRECT, CARBON_LCA, PRICE, RH, TEMP
from slit.data.source import DataSource, missing_hours
from slit.experiment.events import SIGNAL_NAMES, Event, signal_gaps
from slit.forecast.history import WET_BULB
from slit.forecast.signals import MODEL, SignalForecaster

# The columns of each signal group a SignalGap names.
SIGNAL_GROUPS: dict[str, tuple[str, ...]] = {
    "carbon": (CARBON_DIRECT, CARBON_LCA),
    "price": (PRICE,),
    "weather": (TEMP, RH, WET_BULB),
}
assert tuple(SIGNAL_GROUPS) == SIGNAL_NAMES
COLUMNS: tuple[str, ...] = tuple(c for group in SIGNAL_GROUPS.values() for c in group)
REASON_EVENT, REASON_DATA, REASON_HISTORY = "signal_gap", "data_missing", "short_history"


def group_of(column: str) -> str:
    return next(g for g, columns in SIGNAL_GROUPS.items() if column in columns)


def event_mask(events: Sequence[Event], region: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    """[hours, COLUMNS] True where a ``SignalGap`` of ``region`` hides a column (the hour's
    start inside the gap's window)."""
    out = pd.DataFrame(False, index=index, columns=list(COLUMNS))
    for gap in signal_gaps(events, region):
        inside = (index >= gap.start_utc) & (index < gap.end_utc)
        for group in gap.signals:
            out.loc[inside, list(SIGNAL_GROUPS[group])] = True
    return out


def data_mask(missing: pd.DataFrame) -> pd.DataFrame:
    """``missing_hours`` (data columns) widened to COLUMNS: wet-bulb is missing with either of
    temperature and humidity."""
    out = missing.reindex(columns=list(COLUMNS), fill_value=False).astype(bool)
    out[WET_BULB] = missing[TEMP] | missing[RH]
    return out


def judge_interpolated(source: DataSource, region_ids: Sequence[str],
                       start_utc: pd.Timestamp, end_utc: pd.Timestamp) -> dict[str, dict]:
    """Per region with any: per signal group, the hours of the period the data lacks, for
    which the judge uses the interpolation (count and first/last hour)."""
    out: dict[str, dict] = {}
    first, end = start_utc.floor("h"), end_utc.ceil("h")
    for region in region_ids:
        mask = data_mask(missing_hours(source, region, first, end))
        groups = {}
        for group, columns in SIGNAL_GROUPS.items():
            hours = mask.index[mask[list(columns)].any(axis=1).to_numpy()]
            if len(hours):
                groups[group] = {"hours": int(len(hours)), "first_utc": _iso(hours[0]),
                                 "last_utc": _iso(hours[-1]), "judge_uses": "interpolation"}
        if groups:
            out[region] = groups
    return out


def planner_fallbacks(start_utc: pd.Timestamp, interval_s: float, n_intervals: int,
                      forecasters: Mapping[str, SignalForecaster],
                      events: Sequence[Event], missing: Mapping[str, pd.DataFrame]
                      ) -> list[dict]:
    """One row per interval and region whose signal forecast was not the model's: the method
    of each signal group (``profile``, ``last_good``, ``prior``) and why."""
    rows = []
    for k in range(n_intervals):
        t = start_utc + pd.Timedelta(seconds=k * interval_s)
        hour = t.floor("h")
        last = pd.DatetimeIndex([hour - pd.Timedelta(hours=1)])
        for region, forecaster in forecasters.items():
            methods = forecaster.methods_by_target.get(hour)
            if methods is None:
                continue
            hidden_event = event_mask(events, region, last).iloc[0]
            lacking = missing.get(region)
            hidden_data = (lacking.reindex(last).fillna(False).astype(bool).iloc[0]
                           if lacking is not None else None)
            groups: dict[str, dict[str, str]] = {}
            for column, method in methods.items():
                if method == MODEL:
                    continue
                if hidden_event.get(column, False):
                    reason = REASON_EVENT
                elif hidden_data is not None and bool(hidden_data.get(column, False)):
                    reason = REASON_DATA
                else:
                    reason = REASON_HISTORY
                groups.setdefault(group_of(column), {"method": method, "reason": reason})
            if groups:
                rows.append({"interval": k, "start_utc": _iso(t), "region": region,
                             "signals": groups})
    return rows


def _iso(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
