"""Hourly signal history of a region, from real data or the embedded default, with wet-bulb."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slit.data.signals import RH, TEMP
from slit.data.source import get_signals
from slit.footprint.wetbulb import wet_bulb_c

WET_BULB = "wet_bulb_c"


def add_wet_bulb(hourly: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``wet_bulb_c`` (Stull 2011, via slit.footprint) from temp_c and rh_pct."""
    out = hourly.copy()
    out[WET_BULB] = wet_bulb_c(out[TEMP].to_numpy(), out[RH].to_numpy())
    return out


def load_history(data_dir: Path | None, region_id: str, start_utc: pd.Timestamp | str,
                 end_utc: pd.Timestamp | str, seed: int = 0) -> pd.DataFrame:
    """Hourly signals over [start, end) plus wet-bulb: real data, or the embedded default when
    ``data_dir`` is None (``seed`` then picks the synthetic year)."""
    return add_wet_bulb(get_signals(data_dir, region_id, pd.Timestamp(start_utc),
                                    pd.Timestamp(end_utc), seed=seed))
