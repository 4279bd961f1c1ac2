"""The one way the rest of SLIT gets hourly signals: real data if given, else the embedded default.

``DataSource`` names where data comes from (a data directory, or the embedded default) and is
the one type every reader takes. ``get_signals(source, region, start, end, seed)`` returns the
hourly UTC table ``[start, end)`` with columns ``slit.data.signals.SIGNAL_COLUMNS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.embedded import embedded_signals
from slit.data.regions import get_region
from slit.data.signals import (
    SIGNAL_COLUMNS,
    RegionSignals,
    available_years,
    load_region_signals,
    missing_files,
    resolve_data_dir,
)
from slit.errors import SlitInputError
from slit.timeutil import to_utc

HOUR = pd.Timedelta(hours=1)
EMBEDDED_KEY = "embedded"


@dataclass(frozen=True, slots=True)
class DataSource:
    """Where signals, traces and token sizes come from: the folder ``data_dir`` (in the layout
    of shared/data) or, when it is None, the embedded default shipped with the package."""

    data_dir: Path | None = None

    @property
    def is_embedded(self) -> bool:
        return self.data_dir is None

    @property
    def key(self) -> str:
        """A stable string naming the source, for cache keys: ``embedded`` or the folder."""
        return EMBEDDED_KEY if self.data_dir is None else str(self.data_dir)

    @staticmethod
    def from_key(key: str) -> DataSource:
        """The source a ``key`` names (the inverse of ``key``)."""
        return EMBEDDED if key == EMBEDDED_KEY else DataSource(Path(key))

    @staticmethod
    def resolve(data_dir: Path | str | None) -> DataSource:
        """The source a command line or scenario asks for: the folder if given, else
        ``$SLIT_DATA_DIR``, else the embedded default (the folder is checked)."""
        return DataSource(resolve_data_dir(data_dir))

    def __str__(self) -> str:
        return "embedded default" if self.data_dir is None else str(self.data_dir)


EMBEDDED = DataSource()


def get_signals(
    source: DataSource,
    region_id: str,
    start_utc: pd.Timestamp,
    end_utc: pd.Timestamp,
    seed: int = 0,
) -> pd.DataFrame:
    """Hourly signals of a region on [start_utc, end_utc), index ``time_utc`` (tz UTC).

    Timestamps without a zone are taken as UTC; both must fall on whole hours. With a
    data directory the real data is used and hours outside its years are refused; from the
    embedded source the default is synthesised for any period, the same value for the same
    (region, hour, seed) whatever window is asked for. ``seed`` only affects the embedded default.
    """
    region = get_region(region_id)
    start = _utc_hour(start_utc, "start")
    end = _utc_hour(end_utc, "end")
    if end <= start:
        raise SlitInputError("period", f"end {end} is not after start {start}",
                             "give an end later than the start (the end is exclusive)")
    if not isinstance(source, DataSource):
        raise TypeError(f"get_signals takes a DataSource, not {type(source).__name__}")
    if source.data_dir is None:
        if not isinstance(seed, int) or seed < 0:
            raise SlitInputError("seed", f"{seed!r} is not a non-negative integer",
                                 "use a seed such as 0")
        return embedded_signals(region.id, start, end, seed)
    return _real_signals(source.data_dir, region.id, start, end)


def _utc_hour(value: pd.Timestamp | str, name: str) -> pd.Timestamp:
    try:
        stamp = to_utc(value)
    except (ValueError, TypeError):
        raise SlitInputError(name, f"{value!r} is not a date/time",
                             "use ISO 8601, e.g. 2023-07-01 or 2023-07-01T13:00Z") from None
    if stamp is pd.NaT:
        raise SlitInputError(name, "is missing", "give a date such as 2023-07-01")
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
        for year in wanted:
            # A year whose folder exists but lacks a file: name the file, not "no year".
            missing = missing_files(data_dir, region_id, year)
            if missing and (folder / str(year)).is_dir():
                raise SlitInputError(
                    str(folder / str(year)), f"has no {' or '.join(missing)}",
                    f"add {missing[0]} for {region_id} {year} (see shared/data/README.md)")
        have = (", ".join(_year_range(y) for y in years)) if years else "no year"
        raise SlitInputError(
            str(folder), f"has no data for {start} to {end} (available: {have})",
            "ask for hours inside the available range, or add that year's files",
        )
    parts = [_cached_year(str(data_dir.resolve()), region_id, y).hourly.loc[start:last]
             for y in wanted]
    return pd.concat(parts).copy()


def get_observed(
    source: DataSource,
    region_id: str,
    start_utc: pd.Timestamp,
    end_utc: pd.Timestamp,
    seed: int = 0,
) -> pd.DataFrame:
    """The hourly signals as recorded, what a planner can know: like ``get_signals`` but NaN
    for every hour the data does not hold, i.e. the gaps the readers keep (``RegionSignals.
    missing``) and every hour of a year absent from the data directory (a window reaching
    before the first year is not refused). The embedded default misses no hour."""
    region = get_region(region_id)
    start = _utc_hour(start_utc, "start")
    end = _utc_hour(end_utc, "end")
    if end <= start:
        raise SlitInputError("period", f"end {end} is not after start {start}",
                             "give an end later than the start (the end is exclusive)")
    if source.data_dir is None:
        return get_signals(source, region.id, start, end, seed)
    index = pd.date_range(start, end, freq="h", inclusive="left", name="time_utc")
    out = pd.DataFrame(np.nan, index=index, columns=list(SIGNAL_COLUMNS))
    years = available_years(source.data_dir, region.id)
    for year in range(start.year, (end - HOUR).year + 1):
        if year not in years:
            continue
        loaded = _cached_year(str(source.data_dir.resolve()), region.id, year)
        hourly = loaded.hourly.loc[start:end - HOUR]
        if loaded.missing is not None:
            hourly = hourly.mask(loaded.missing.loc[start:end - HOUR])
        out.loc[hourly.index] = hourly.to_numpy()
    return out


def missing_hours(source: DataSource, region_id: str, start_utc: pd.Timestamp,
                  end_utc: pd.Timestamp) -> pd.DataFrame:
    """[hours, SIGNAL_COLUMNS] True where the data holds no reading (``get_signals`` then
    gives the interpolation the judge uses). All False for the embedded default."""
    start = _utc_hour(start_utc, "start")
    end = _utc_hour(end_utc, "end")
    index = pd.date_range(start, end, freq="h", inclusive="left", name="time_utc")
    out = pd.DataFrame(False, index=index, columns=list(SIGNAL_COLUMNS))
    if source.data_dir is None:
        return out
    years = available_years(source.data_dir, get_region(region_id).id)
    for year in range(start.year, (end - HOUR).year + 1):
        if year not in years:
            out.loc[(index.year == year)] = True
            continue
        loaded = _cached_year(str(source.data_dir.resolve()), get_region(region_id).id, year)
        if loaded.missing is not None:
            part = loaded.missing.loc[start:end - HOUR]
            out.loc[part.index] = part.to_numpy()
    return out


def _year_range(year: int) -> str:
    return f"{year}-01-01 00:00 to {year + 1}-01-01 00:00 UTC"


@lru_cache(maxsize=64)
def _cached_year(data_dir: str, region_id: str, year: int) -> RegionSignals:
    # Reading and validating a region-year costs ~30 ms; simulations ask for it many times.
    return load_region_signals(Path(data_dir), region_id, year)
