"""Commands that show the data SLIT works from: the region catalog and hourly signals."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from slit.cli.app import app
from slit.cli.options import DataDirOption
from slit.data.regions import REGIONS
from slit.data.signals import available_years, resolve_data_dir


@app.command()
def regions(data_dir: DataDirOption = None) -> None:
    """List the region catalog: id, name, location, time zone and years of data found."""
    directory = resolve_data_dir(data_dir)
    table = Table(title="SLIT regions" + (f" (data: {directory})" if directory else
                                          " (embedded default)"))
    for column in ("id", "name", "lat", "lon", "time zone", "years"):
        table.add_column(column)
    for region in REGIONS.values():
        if directory is None:
            years = "embedded typical year"
        else:
            found = available_years(directory, region.id)
            years = " ".join(str(y) for y in found) if found else "none"
        table.add_row(region.id, region.name, f"{region.lat_deg:.3f}", f"{region.lon_deg:.3f}",
                      region.timezone, years)
    Console(width=120).print(table)
