"""Hourly signal history of a region, from real data or the embedded default, with wet-bulb."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pandas as pd

from slit.data.signals import RH, TEMP, load_region_signals
from slit.errors import SlitInputError
from slit.footprint.wetbulb import wet_bulb_c

WET_BULB = "wet_bulb_c"


def add_wet_bulb(hourly: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``wet_bulb_c`` (Stull 2011, via slit.footprint) from temp_c and rh_pct."""
    out = hourly.copy()
    out[WET_BULB] = wet_bulb_c(out[TEMP].to_numpy(), out[RH].to_numpy())
    return out


def load_history(data_dir: Path | None, region_id: str, start_utc: pd.Timestamp | str,
                 end_utc: pd.Timestamp | str, seed: int = 0) -> pd.DataFrame:
    """Hourly signals over [start, end) plus wet-bulb.

    Uses ``slit.data.source.get_signals`` (real data or embedded default) when that module is
    installed; otherwise reads real data with ``load_region_signals``, one calendar year at a time.
    """
    start, end = pd.Timestamp(start_utc), pd.Timestamp(end_utc)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    if importlib.util.find_spec("slit.data.source") is not None:
        source = importlib.import_module("slit.data.source")
        hourly = source.get_signals(data_dir, region_id, start, end, seed=seed)
    elif data_dir is None:
        raise SlitInputError("--data-dir", "no embedded signal data in this build (slit.data."
                             "source is missing)", "pass --data-dir ../shared/data")
    else:
        last = end - pd.Timedelta(hours=1)
        years = [load_region_signals(Path(data_dir), region_id, year).hourly
                 for year in range(start.year, last.year + 1)]
        hourly = pd.concat(years)
        hourly = hourly[(hourly.index >= start) & (hourly.index < end)]
    return add_wet_bulb(hourly)
