"""Hourly signal history of a region, from real data or the embedded default, with wet-bulb."""

from __future__ import annotations

import pandas as pd

from slit.data.signals import RH, TEMP
from slit.data.source import DataSource, get_observed, get_signals
from slit.errors import SlitInputError
from slit.footprint.wetbulb import wet_bulb_c

WET_BULB = "wet_bulb_c"


def add_wet_bulb(hourly: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``wet_bulb_c`` (Stull 2011, via slit.footprint) from temp_c and rh_pct."""
    out = hourly.copy()
    out[WET_BULB] = wet_bulb_c(out[TEMP].to_numpy(), out[RH].to_numpy())
    return out


def load_history(source: DataSource, region_id: str, start_utc: pd.Timestamp | str,
                 end_utc: pd.Timestamp | str, seed: int = 0, history_days: int = 0,
                 observed: bool = False) -> pd.DataFrame:
    """Hourly signals over [start, end) plus wet-bulb: real data, or the embedded default
    (``seed`` then picks the synthetic year).

    ``observed``: as a planner knows them (``slit.data.source.get_observed``): NaN for hours the
    data does not hold, including hours before its first year, which are then not refused;
    otherwise as the judge uses them (gaps interpolated, hours outside the data refused).

    ``history_days`` says that the window starts that many days before the period asked for
    (the forecasters' training history), so an error about a window outside the data says why
    it starts earlier than the user's start.
    """
    read = get_observed if observed else get_signals
    try:
        hourly = read(source, region_id, pd.Timestamp(start_utc), pd.Timestamp(end_utc),
                      seed=seed)
    except SlitInputError as err:
        if history_days <= 0:
            raise
        period = pd.Timestamp(start_utc) + pd.Timedelta(days=history_days)
        raise SlitInputError(
            err.where, f"{err.problem}; the window starts {history_days} days before the period "
            f"start {period:%Y-%m-%d %H:%M} because the forecasters learn from {history_days} "
            "days of history", f"{err.fix}, or start the period at least {history_days} days "
            "into the data") from None
    return add_wet_bulb(hourly)
