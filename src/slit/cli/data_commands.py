"""Commands that show the data SLIT works from: the region catalog and hourly signals."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from slit.cli.options import DataDirOption
from slit.data.embedded import embedded_info
from slit.data.regions import REGIONS, get_region
from slit.data.signals import PRICE, RH, TEMP, available_years, resolve_data_dir
from slit.data.source import DataSource, get_signals
from slit.errors import SlitInputError
from slit.fileio import check_output_file, write_atomically
from slit.footprint import (
    CarbonBasis,
    CoolingType,
    SiteFootprintParams,
    carbon_column,
    hourly_coefficients,
)
from slit.report.table import widest_fitting

# Beyond this many hours the table shows the first and last days only; --csv has them all.
MAX_TABLE_ROWS = 48


def regions(data_dir: DataDirOption = None) -> None:
    """List the region catalog: id, name, location, time zone and the data behind each."""
    directory = resolve_data_dir(data_dir)
    if directory is None:
        info = embedded_info()
        source = ", ".join(str(y) for y in info.source_years)
        title = f"SLIT regions (embedded default: typical year from {source} statistics)"
    else:
        title = f"SLIT regions (data: {directory})"
    rows = []
    for region in REGIONS.values():
        if directory is None:
            years = (f"any period, from {source}" if region.id in info.regions
                     else "none (needs --data-dir)")
        else:
            found = available_years(directory, region.id)
            years = " ".join(str(y) for y in found) if found else "none"
        ewif = SiteFootprintParams.for_region(region.id).ewif_l_per_kwh
        rows.append({"id": region.id, "name": region.name, "lat": f"{region.lat_deg:.3f}",
                     "lon": f"{region.lon_deg:.3f}", "time zone": region.timezone,
                     "data": years, "EWIF L/kWh": f"{ewif:.2f}"})
    console = Console()
    # Narrow terminals lose the coordinates first, then the time zone; last, long names wrap.
    layouts = [_table(title, rows, [c for c in rows[0] if c not in dropped])
               for dropped in ((), ("lat", "lon"), ("lat", "lon", "time zone"))]
    table, _ = widest_fitting(console, layouts)
    console.print(table)


def _table(title: str, rows: list[dict[str, str]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column != "name")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def signals(
    region: Annotated[str, typer.Argument(help="Region id, e.g. SG (see `slit regions`).")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD (UTC).")],
    end: Annotated[str, typer.Option(help="Day after the last, YYYY-MM-DD (UTC, exclusive).")],
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Write every hour to this CSV file.", show_default=False)] = None,
    data_dir: DataDirOption = None,
    carbon_basis: Annotated[CarbonBasis, typer.Option(
        help="Electricity Maps carbon intensity: direct emissions or life-cycle.")
    ] = CarbonBasis.DIRECT,
    cooling: Annotated[CoolingType, typer.Option(
        help="Site cooling, for PUE and on-site water.")] = CoolingType.EVAPORATIVE,
    seed: Annotated[int, typer.Option(
        help="Seed of the embedded default's day-to-day variation.", min=0)] = 0,
) -> None:
    """Hourly signals the scheduler would use at a site: carbon, price, weather, PUE, water."""
    site = SiteFootprintParams.for_region(get_region(region, "REGION").id, cooling)
    start_day, end_day = _day(start, "--start"), _day(end, "--end")
    if end_day <= start_day:
        raise SlitInputError("--end", f"{end} is not after --start {start}",
                             "--end is exclusive: one day is --start D --end D+1")
    if csv is not None:
        check_output_file(csv, "--csv")
    directory = resolve_data_dir(data_dir)
    hourly = get_signals(DataSource(directory), site.region_id, pd.Timestamp(start_day, tz="UTC"),
                         pd.Timestamp(end_day, tz="UTC"), seed)
    table = signal_table(hourly, site, carbon_basis)
    if csv is not None:
        _write_csv_atomically(table, csv)
    _print(table, carbon_column(carbon_basis), site, directory, csv)


def signal_table(
    hourly: pd.DataFrame, site: SiteFootprintParams, carbon_basis: CarbonBasis
) -> pd.DataFrame:
    """All signals plus the footprint multipliers derived from them, one row per hour."""
    return pd.concat([hourly, hourly_coefficients(hourly, site, carbon_basis)], axis=1)


def _day(text: str, option: str) -> date:
    # Only the extended form: fromisoformat would also take "20230701" or week dates.
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise SlitInputError(option, f"{text!r} is not a date YYYY-MM-DD", "e.g. 2023-07-01")


def _write_csv_atomically(table: pd.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: table.to_csv(
        tmp, index_label="time_utc", date_format="%Y-%m-%dT%H:%M:%SZ", encoding="utf-8"))


def _print(
    table: pd.DataFrame, carbon: str, site: SiteFootprintParams, directory: Path | None,
    csv: Path | None,
) -> None:
    shown = {
        carbon: ("gCO2/kWh", "{:.0f}"),
        PRICE: ("USD/MWh", "{:.2f}"),
        TEMP: ("dry °C", "{:.1f}"),
        RH: ("RH %", "{:.0f}"),
        "wet_bulb_c": ("wet-bulb °C", "{:.1f}"),
        "pue": ("PUE", "{:.3f}"),
        "wue_onsite_l_per_kwh": ("WUE L/kWh", "{:.2f}"),
        "ewif_l_per_kwh": ("EWIF L/kWh", "{:.2f}"),
    }
    source = f"data: {directory}" if directory else "embedded default"
    title = f"{site.region_id} hourly signals, {site.cooling.value} cooling ({source})"
    n = len(table)

    def layout(columns: dict[str, tuple[str, str]]) -> Table:
        out = Table(title=title)
        out.add_column("UTC", no_wrap=True)
        for label, _ in columns.values():
            out.add_column(label, justify="right")

        def add(stamp: str, row: pd.Series | None) -> None:
            out.add_row(stamp, *(fmt.format(row[c]) if row is not None else "…"
                                 for c, (_, fmt) in columns.items()))

        head = table if n <= MAX_TABLE_ROWS else table.iloc[: MAX_TABLE_ROWS // 2]
        for stamp, row in head.iterrows():
            add(f"{stamp:%Y-%m-%d %H:%M}", row)
        if n > MAX_TABLE_ROWS:
            add(f"({n - MAX_TABLE_ROWS} hours)", None)
            for stamp, row in table.iloc[-MAX_TABLE_ROWS // 2:].iterrows():
                add(f"{stamp:%Y-%m-%d %H:%M}", row)
        add("mean", table.mean())
        return out

    console = Console()
    # Narrow terminals lose the weather inputs first (wet-bulb, derived from them, stays),
    # then the PUE; every column is in --csv.
    narrow = {c: v for c, v in shown.items() if c not in (TEMP, RH)}
    narrowest = {c: v for c, v in narrow.items() if c != "pue"}
    out, full = widest_fitting(console, [layout(shown), layout(narrow), layout(narrowest)])
    console.print(out)
    if not full:
        console.print(f"(compact table for {console.width} columns; --csv FILE has every "
                      "column)")
    if csv is not None:
        console.print(f"wrote {n} hours to {csv}")
    elif n > MAX_TABLE_ROWS:
        console.print("use --csv FILE for every hour")
