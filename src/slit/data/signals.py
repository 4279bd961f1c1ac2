"""Read a region's real hourly grid and weather data into one validated, UTC-indexed table.

Layout of a data directory (the formats of ``shared/data``)::

    DATA_DIR/regions/REGION/YEAR/carbon_intensity.csv   Electricity Maps hourly export
    DATA_DIR/regions/REGION/YEAR/electricity_price.csv  prices standardised to UTC and USD/MWh
    DATA_DIR/regions/REGION/YEAR/weather.json           Open-Meteo hourly, local-time stamps

Time handling. Carbon and price stamps are UTC. Open-Meteo stamps are local wall-clock times;
the files hold one stamp per hour with no daylight-saving gap or repeat, i.e. the series was
produced at one fixed offset, which the file states as ``utc_offset_seconds``. We subtract that
offset. Because the weather year is shifted by that offset against the UTC year, the first or
last few UTC hours (at most |offset|) have no weather reading; they are held from the nearest
reading and counted in ``filled_hours``. Where the offset is not whole hours (India, UTC+5:30;
its price file is stamped at HH:30 UTC too) rows are interpolated onto whole UTC hours.

Gaps. Missing hours are data, not malformation. Interior gaps of up to ``MAX_FILLED_GAP_HOURS``
consecutive hours are filled by linear interpolation in time and counted in ``filled_hours``
(cleaning). Longer gaps, and a file stopping short of the year, are kept: ``missing`` marks those
hours and ``hourly`` holds, for them, the linear interpolation between the readings on either
side (the nearest reading held at the ends), which is what the judge uses; the planner sees them
as missing (``slit.data.source.get_observed``). NaN cells, duplicate or non-monotonic stamps and
physically impossible values are refused (malformed files). Negative prices and price spikes are
real market outcomes and pass through untouched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.regions import Region, get_region
from slit.errors import SlitInputError

MAX_FILLED_GAP_HOURS = 3

CARBON_FILE = "carbon_intensity.csv"
PRICE_FILE = "electricity_price.csv"
WEATHER_FILE = "weather.json"

CARBON_TIME_COL = "Datetime (UTC)"
CARBON_DIRECT_COL = "Carbon Intensity gCO\u2082eq/kWh (direct)"
CARBON_LCA_COL = "Carbon Intensity gCO\u2082eq/kWh (LCA)"
PRICE_TIME_COL = "Datetime (UTC)"
PRICE_COL = "Price (USD/MWh)"

# Canonical column names of the hourly signal table, units in the names.
CARBON_DIRECT = "carbon_direct_g_per_kwh"
CARBON_LCA = "carbon_lca_g_per_kwh"
PRICE = "price_usd_per_mwh"
TEMP = "temp_c"
RH = "rh_pct"
SIGNAL_COLUMNS: tuple[str, ...] = (CARBON_DIRECT, CARBON_LCA, PRICE, TEMP, RH)

# Physical ranges outside which a value is a data error, not an oddity.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    CARBON_DIRECT: (0.0, 2000.0),
    CARBON_LCA: (0.0, 2000.0),
    TEMP: (-60.0, 60.0),
    RH: (0.0, 100.0),
}

DATA_DIR_ENV = "SLIT_DATA_DIR"


@dataclass(slots=True)
class RegionSignals:
    """One region's hourly signals: UTC DatetimeIndex, columns ``SIGNAL_COLUMNS``."""

    region: Region
    hourly: pd.DataFrame
    filled_hours: dict[str, int] = field(default_factory=dict)
    source: str = ""
    # Hours the files do not hold (gaps longer than MAX_FILLED_GAP_HOURS, a file stopping short
    # of the year), per column: ``hourly`` interpolates them for the judge, the planner must not
    # see them (``slit.data.source.get_observed``). None: nothing missing.
    missing: pd.DataFrame | None = None


def resolve_data_dir(data_dir: Path | str | None) -> Path | None:
    """The data directory to use: the argument, else ``$SLIT_DATA_DIR``, else None (embedded)."""
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get(DATA_DIR_ENV, "")
        if not env:
            return None
        data_dir = env
    path = Path(data_dir)
    if not path.is_dir():
        raise SlitInputError(
            f"--data-dir {path}", "is not a directory",
            "point --data-dir (or SLIT_DATA_DIR) at a folder holding regions/REGION/YEAR/",
        )
    if not (path / "regions").is_dir():
        raise SlitInputError(
            f"--data-dir {path}", "has no regions/ folder",
            "point --data-dir at the folder that contains regions/REGION/YEAR/ "
            "(e.g. ../shared/data)",
        )
    return path


def available_years(data_dir: Path, region_id: str) -> list[int]:
    """Years for which the region has a complete set of the three files."""
    folder = Path(data_dir) / "regions" / region_id
    if not folder.is_dir():
        return []
    years = []
    for sub in folder.iterdir():
        if sub.is_dir() and sub.name.isdigit() and all(
            (sub / f).is_file() for f in (CARBON_FILE, PRICE_FILE, WEATHER_FILE)
        ):
            years.append(int(sub.name))
    return sorted(years)


def missing_files(data_dir: Path, region_id: str, year: int) -> list[str]:
    """Which of the three files a region-year lacks (all three when its folder is absent)."""
    folder = Path(data_dir) / "regions" / region_id / str(year)
    return [f for f in (CARBON_FILE, PRICE_FILE, WEATHER_FILE) if not (folder / f).is_file()]


def load_region_signals(data_dir: Path, region_id: str, year: int | None = None) -> RegionSignals:
    """Load and validate one region-year (the latest year found if ``year`` is None)."""
    region = get_region(region_id)
    years = available_years(data_dir, region_id)
    if year is None:
        if not years:
            folder = Path(data_dir) / "regions" / region_id
            raise SlitInputError(
                str(folder), "holds no YEAR/ folder with carbon_intensity.csv, "
                "electricity_price.csv and weather.json",
                "add the three files for at least one year",
            )
        year = years[-1]
    folder = Path(data_dir) / "regions" / region_id / str(year)
    for name in (CARBON_FILE, PRICE_FILE, WEATHER_FILE):
        if not (folder / name).is_file():
            raise SlitInputError(
                str(folder / name), "file not found",
                f"add {name} for {region_id} {year} (see shared/data/README.md for the format)",
            )

    carbon = _read_carbon(folder / CARBON_FILE)
    price = _read_price(folder / PRICE_FILE)
    weather, offset_hours = _read_weather(folder / WEATHER_FILE)

    index = pd.date_range(
        pd.Timestamp(year=year, month=1, day=1, tz="UTC"),
        pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC"),
        freq="h", inclusive="left", name="time_utc",
    )
    filled: dict[str, int] = {}
    parts, missing = [], {}
    for path, frame, edge_hold in (
        (folder / CARBON_FILE, carbon, 0),
        (folder / PRICE_FILE, price, 0),
        (folder / WEATHER_FILE, weather, abs(offset_hours)),
    ):
        frame = _on_whole_hours(frame)
        frame = frame[(frame.index >= index[0]) & (frame.index <= index[-1])]
        if frame.empty:
            raise SlitInputError(
                str(path), f"has no rows inside {year} (UTC)",
                "check the timestamps, or pass the year the file covers",
            )
        part, lacking = _fill_gaps(frame.reindex(index), edge_hold, filled)
        parts.append(part)
        for column in part.columns:
            missing[column] = lacking
    hourly = pd.concat(parts, axis=1)[list(SIGNAL_COLUMNS)]
    return RegionSignals(region=region, hourly=hourly, filled_hours=filled, source=str(folder),
                         missing=pd.DataFrame(missing, index=index)[list(SIGNAL_COLUMNS)])


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise SlitInputError(str(path), "is not UTF-8 text", "re-export the file as UTF-8 CSV") \
            from None
    except pd.errors.EmptyDataError:
        raise SlitInputError(str(path), "is empty", "export the hourly data again") from None
    except pd.errors.ParserError as err:
        first = str(err).splitlines()[0]
        raise SlitInputError(str(path), f"is not valid CSV ({first})",
                             "fix the malformed line") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SlitInputError(
            str(path), f"missing column {missing[0]!r}",
            f"the file needs columns {', '.join(repr(c) for c in required)}",
        )
    if frame.empty:
        raise SlitInputError(str(path), "has a header but no rows", "export the hourly data again")
    return frame


def _parse_utc(path: Path, values: pd.Series, column: str) -> pd.DatetimeIndex:
    try:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        bad = _first_unparseable(values)
        raise SlitInputError(
            str(path), f"column {column!r} has an unreadable timestamp {bad!r}",
            "use ISO 8601 stamps such as 2023-01-01 00:00:00",
        ) from None
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0]) + 2
        raise SlitInputError(str(path), f"column {column!r} is empty at line {row}",
                             "give every row a timestamp")
    index = pd.DatetimeIndex(stamps)
    _check_order(path, index, column)
    return index


def _first_unparseable(values: pd.Series) -> str:
    for value in values:
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            return str(value)
    return str(values.iloc[0])


def _check_order(path: Path, index: pd.DatetimeIndex, column: str) -> None:
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise SlitInputError(str(path), f"duplicate timestamp {dup} in {column!r}",
                             "keep one row per hour")
    if not index.is_monotonic_increasing:
        pos = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
        raise SlitInputError(
            str(path), f"timestamps go backwards at {index[pos]} in {column!r}",
            "sort the rows by time",
        )


def _numeric(path: Path, values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SlitInputError(
            str(path), f"column {column!r} has a non-number {values.iloc[row]!r} at line {row + 2}",
            "write plain decimal numbers",
        )
    if numbers.isna().any():
        row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise SlitInputError(
            str(path), f"column {column!r} is NaN/empty at line {row + 2}",
            "fill the value or drop the row (short gaps are interpolated)",
        )
    return numbers.to_numpy(dtype=float)


def _check_range(path: Path, frame: pd.DataFrame, source_names: dict[str, str]) -> None:
    for column, (lo, hi) in PHYSICAL_RANGES.items():
        if column not in frame.columns:
            continue
        values = frame[column].to_numpy()
        out = (values < lo) | (values > hi)
        if out.any():
            at = int(np.flatnonzero(out)[0])
            raise SlitInputError(
                str(path),
                f"{source_names[column]!r} = {values[at]:g} at {frame.index[at]} is outside "
                f"the physical range {lo:g}..{hi:g}",
                "check the units and the value",
            )


def _read_carbon(path: Path) -> pd.DataFrame:
    frame = _read_csv(path, [CARBON_TIME_COL, CARBON_DIRECT_COL, CARBON_LCA_COL])
    index = _parse_utc(path, frame[CARBON_TIME_COL], CARBON_TIME_COL)
    out = pd.DataFrame(
        {
            CARBON_DIRECT: _numeric(path, frame[CARBON_DIRECT_COL], CARBON_DIRECT_COL),
            CARBON_LCA: _numeric(path, frame[CARBON_LCA_COL], CARBON_LCA_COL),
        },
        index=index,
    )
    _check_range(path, out, {CARBON_DIRECT: CARBON_DIRECT_COL, CARBON_LCA: CARBON_LCA_COL})
    return out


def _read_price(path: Path) -> pd.DataFrame:
    frame = _read_csv(path, [PRICE_TIME_COL, PRICE_COL])
    index = _parse_utc(path, frame[PRICE_TIME_COL], PRICE_TIME_COL)
    return pd.DataFrame({PRICE: _numeric(path, frame[PRICE_COL], PRICE_COL)}, index=index)


def _read_weather(path: Path) -> tuple[pd.DataFrame, int]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SlitInputError(str(path), f"is not valid JSON ({err})",
                             "re-export the Open-Meteo response") from None
    if not isinstance(doc, dict):
        raise SlitInputError(str(path), "top level is not a JSON object",
                             "use the Open-Meteo response format")
    if "utc_offset_seconds" not in doc:
        raise SlitInputError(str(path), "missing field 'utc_offset_seconds'",
                             "keep the Open-Meteo top-level fields; its 'time' is local time")
    hourly = doc.get("hourly")
    if not isinstance(hourly, dict):
        raise SlitInputError(str(path), "missing object 'hourly'",
                             "use the Open-Meteo hourly response format")
    for key in ("time", "temperature_2m", "relative_humidity_2m"):
        if key not in hourly:
            raise SlitInputError(str(path), f"missing field 'hourly.{key}'",
                                 "request temperature_2m and relative_humidity_2m hourly")
    lengths = {len(hourly[k]) for k in ("time", "temperature_2m", "relative_humidity_2m")}
    if len(lengths) != 1:
        raise SlitInputError(str(path), "hourly arrays have different lengths",
                             "give time, temperature_2m and relative_humidity_2m one entry "
                             "per hour")
    offset_s = doc["utc_offset_seconds"]
    if not isinstance(offset_s, int | float) or abs(offset_s) > 14 * 3600:
        raise SlitInputError(str(path), f"'utc_offset_seconds' = {offset_s!r} is not an offset",
                             "give the offset in seconds, between -50400 and 50400")
    try:
        local = pd.to_datetime(pd.Series(hourly["time"]), format="ISO8601")
    except (ValueError, TypeError):
        bad = _first_unparseable(pd.Series(hourly["time"]))
        raise SlitInputError(str(path), f"'hourly.time' has an unreadable stamp {bad!r}",
                             "use ISO 8601 local stamps such as 2023-01-01T00:00") from None
    if getattr(local.dt, "tz", None) is not None:
        local = local.dt.tz_localize(None)
    index = pd.DatetimeIndex(local - pd.Timedelta(seconds=offset_s)).tz_localize("UTC")
    _check_order(path, index, "hourly.time")
    out = pd.DataFrame(
        {
            TEMP: _numeric(path, pd.Series(hourly["temperature_2m"], dtype=object),
                           "hourly.temperature_2m"),
            RH: _numeric(path, pd.Series(hourly["relative_humidity_2m"], dtype=object),
                         "hourly.relative_humidity_2m"),
        },
        index=index,
    )
    _check_range(path, out, {TEMP: "hourly.temperature_2m", RH: "hourly.relative_humidity_2m"})
    return out, int(round(offset_s / 3600))


def _on_whole_hours(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows stamped off the hour (zones such as UTC+5:30) interpolated onto whole UTC hours.

    For hourly prices (a value per interval) the midpoint of two half-overlapping intervals is
    the time-weighted price of the UTC hour; for weather readings it is linear interpolation.
    A whole hour before the first or after the last row stays missing, for the edge hold.
    """
    index = pd.DatetimeIndex(frame.index)
    if (index == index.floor("h")).all():
        return frame
    hours = pd.date_range(frame.index[0].ceil("h"), frame.index[-1].floor("h"), freq="h")
    both = frame.reindex(frame.index.union(hours)).interpolate(method="time", limit_area="inside")
    out = both.reindex(hours)
    # An hour is a reading only between two rows at most an hour apart: inside a longer gap
    # it stays missing rather than interpolated across the gap.
    rows = index.asi8
    after = np.searchsorted(rows, hours.asi8, side="left")
    nxt = rows[np.minimum(after, len(rows) - 1)]
    span = nxt - rows[np.maximum(after - 1, 0)]
    out[(span > pd.Timedelta(hours=1).value) & (nxt != hours.asi8)] = np.nan
    return out


def _fill_gaps(
    frame: pd.DataFrame, edge_hold_hours: int, filled: dict[str, int]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Interpolate short interior gaps and hold up to ``edge_hold_hours`` at either end; every
    other missing hour stays missing (returned as a mask) and is interpolated for the judge.

    Returns the gap-free frame and the [hours] mask of the hours left missing in the data.
    """
    missing = frame.iloc[:, 0].isna().to_numpy()
    if not missing.any():
        for column in frame.columns:
            filled[column] = 0
        return frame, missing
    present = np.flatnonzero(~missing)
    first, last = present[0], present[-1]
    still_missing = missing.copy()
    # Short runs inside the data are cleaning (interpolated, counted in filled_hours); so are
    # the first/last hours a fixed-offset weather year cannot cover.
    lead_limit = max(edge_hold_hours, MAX_FILLED_GAP_HOURS)
    if first <= lead_limit:
        still_missing[:first] = False
    if len(missing) - 1 - last <= lead_limit:
        still_missing[last + 1:] = False
    for begin, length in _runs(missing[first:last + 1]):
        if length <= MAX_FILLED_GAP_HOURS:
            still_missing[first + begin:first + begin + length] = False
    # What the judge uses for hours the data lacks: linear in time between the readings on
    # either side, the nearest reading held before the first or after the last.
    out = frame.interpolate(method="time", limit_area="inside").ffill().bfill()
    for column in frame.columns:
        filled[column] = int((missing & ~still_missing).sum())
    return out, still_missing


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True in ``mask``."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
