"""The one way the rest of SLIT gets hourly signals: real data if given, else the embedded default.

``get_signals(data_dir, region, start, end, seed)`` returns the hourly UTC table
``[start, end)`` with columns ``slit.data.signals.SIGNAL_COLUMNS``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from slit.data.embedded import embedded_signals
from slit.data.regions import get_region
from slit.data.signals import available_years, load_region_signals
from slit.errors import SlitInputError

HOUR = pd.Timedelta(hours=1)


def get_signals(
    data_dir: Path | None,
    region_id: str,
    start_utc: pd.Timestamp,
    end_utc: pd.Timestamp,
    seed: int = 0,
) -> pd.DataFrame:
    """Hourly signals of a region on [start_utc, end_utc), index ``time_utc`` (tz UTC).

    Timestamps without a zone are taken as UTC; both must fall on whole hours. With a
    ``data_dir`` the real data is used and hours outside its years are refused; with None the
    embedded default is synthesised for any period, the same value for the same
    (region, hour, seed) whatever window is asked for. ``seed`` only affects the embedded default.
    """
    region = get_region(region_id)
    start = _utc_hour(start_utc, "start")
    end = _utc_hour(end_utc, "end")
    if end <= start:
        raise SlitInputError("period", f"end {end} is not after start {start}",
                             "give an end later than the start (the end is exclusive)")
    if data_dir is None:
        if not isinstance(seed, int) or seed < 0:
            raise SlitInputError("seed", f"{seed!r} is not a non-negative integer",
                                 "use a seed such as 0")
        return embedded_signals(region.id, start, end, seed)
    return _real_signals(Path(data_dir), region.id, start, end)


def _utc_hour(value: pd.Timestamp | str, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise SlitInputError(name, f"{value!r} is not a date/time",
                             "use ISO 8601, e.g. 2023-07-01 or 2023-07-01T13:00Z") from None
    if stamp is pd.NaT:
        raise SlitInputError(name, "is missing", "give a date such as 2023-07-01")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp != stamp.floor("h"):
        raise SlitInputError(name, f"{stamp} is not on a whole hour",
                             "signals are hourly: give a time on the hour")
    return stamp


def _real_signals(
    data_dir: Path, region_id: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    last = end - HOUR
    years = available_years(data_dir, region_id)
    wanted = range(start.year, last.year + 1)
    if not years or any(y not in years for y in wanted):
        folder = data_dir / "regions" / region_id
        have = (", ".join(_year_range(y) for y in years)) if years else "no year"
        raise SlitInputError(
            str(folder), f"has no data for {start} to {end} (available: {have})",
            "ask for hours inside the available range, or add that year's files",
        )
    parts = [_cached_year(str(data_dir.resolve()), region_id, y).loc[start:last]
             for y in wanted]
    return pd.concat(parts).copy()


def _year_range(year: int) -> str:
    return f"{year}-01-01 00:00 to {year + 1}-01-01 00:00 UTC"


@lru_cache(maxsize=64)
def _cached_year(data_dir: str, region_id: str, year: int) -> pd.DataFrame:
    # Reading and validating a region-year costs ~30 ms; simulations ask for it many times.
    return load_region_signals(Path(data_dir), region_id, year).hourly
