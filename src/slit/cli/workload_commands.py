"""Commands about users and forecasts: network round trips and forecast accuracy."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from slit.cli.options import DataDirOption
from slit.cli.progress import stage_progress
from slit.data.regions import DEFAULT_REGION_IDS
from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.forecast.evaluate import (
    METHODS,
    EvalConfig,
    evaluate,
    evaluate_demand,
    regions_beating_persistence,
)
from slit.forecast.signals import MAX_HORIZON_H
from slit.report.table import natural_width
from slit.workload.network import DEFAULT_NETWORK, rtt_ms_matrix


def latency() -> None:
    """Print the origin x site round-trip table (ms) of the distance-based network model."""
    ids = DEFAULT_REGION_IDS
    rtt = rtt_ms_matrix(ids, ids)
    console = Console()
    title = (f"RTT origin -> site, ms (route inflation {DEFAULT_NETWORK.route_inflation}, "
             f"overhead {DEFAULT_NETWORK.overhead_ms:g} ms)")
    parts = site_column_groups(console, ids, rtt, title)
    if len(parts) == 1:
        console.print(_latency_table(ids, rtt, parts[0], title))
        return
    console.print(title, highlight=False)
    for sites in parts:
        console.print(_latency_table(ids, rtt, sites,
                                     f"sites {sites[0] + 1}-{sites[-1] + 1} of {len(ids)}"))


def site_column_groups(console: Console, ids: tuple[str, ...], rtt: np.ndarray, title: str
                       ) -> list[list[int]]:
    """Site columns split into as few consecutive groups as fit the terminal, each one table:
    a 15-site matrix is 157 columns wide, an 80-column terminal shows five sites at a time."""
    groups: list[list[int]] = [[]]
    for s in range(len(ids)):
        trial = [*groups[-1], s]
        if groups[-1] and natural_width(console, _latency_table(ids, rtt, trial, title)) \
                > console.width:
            groups.append([s])
        else:
            groups[-1] = trial
    return groups


def _latency_table(ids: tuple[str, ...], rtt: np.ndarray, sites: list[int], title: str
                   ) -> Table:
    table = Table(title=title)
    table.add_column("from \\ to")
    for s in sites:
        table.add_column(ids[s], justify="right")
    for i, origin in enumerate(ids):
        table.add_row(origin, *(f"{rtt[i, s]:.0f}" for s in sites))
    return table


def _parse_horizons(text: str) -> list[int]:
    if text.strip() == "all":
        return list(range(1, MAX_HORIZON_H + 1))
    try:
        horizons = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        horizons = []
    if not horizons or horizons[0] < 1 or horizons[-1] > MAX_HORIZON_H:
        raise SlitInputError("--horizons", f"{text!r} is not a list of hours in 1..24",
                             "use e.g. 1,6,12,24 or all")
    return horizons


def forecast_eval(
    data_dir: DataDirOption = None,
    horizons: Annotated[str, typer.Option(
        help="Horizons (h) listed per region: comma-separated, or 'all'.")] = "1,3,6,12,24",
    regions: Annotated[str, typer.Option(
        help="Comma-separated region ids (default: all 15).")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the model (and of the embedded data).")] = 0,
) -> None:
    """Rolling-origin evaluation over the latest year of the data: LightGBM vs persistence vs
    seasonal-naive."""
    shown = _parse_horizons(horizons)
    region_ids = tuple(r.strip() for r in regions.split(",") if r.strip()) or DEFAULT_REGION_IDS
    config = EvalConfig(regions=region_ids, seed=seed)
    console = Console()
    began = time.perf_counter()
    with stage_progress(console, first="forecast") as report:
        report("forecast", 0, len(region_ids))
        done: list[str] = []

        def region_done(region_id: str) -> None:
            done.append(region_id)
            report("forecast", len(done), len(region_ids))

        errors = evaluate(DataSource.resolve(data_dir), config, progress=region_done)
    for signal in config.signals:
        _print_signal_table(console, errors[errors["signal"] == signal], signal, shown)
    _print_summary(console, errors)
    demand = evaluate_demand(seed=seed)
    mean_count = demand.pop("mean_count")
    console.print("Next-interval demand (15 min intervals) on 7 held-out days of the default "
                  "workload, fitted on the 7 days before; MAE in requests per origin")
    table = Table(title="Demand forecast")
    table.add_column("method")
    table.add_column("MAE", justify="right")
    table.add_column("% of mean count", justify="right")
    for name, mae in demand.items():
        table.add_row(name, f"{mae:.1f}", f"{100 * mae / mean_count:.1f}")
    console.print(table)
    console.print(f"elapsed {time.perf_counter() - began:.0f} s")
    beating = regions_beating_persistence(errors)
    typer.echo(f"regions_beating_persistence={len(beating)}/{len(region_ids)}")


def _print_signal_table(console: Console, errors: pd.DataFrame, signal: str,
                        shown: list[int]) -> None:
    table = Table(title=f"{signal}: MAE and MAPE (%, |actual| above floor) by region and horizon")
    table.add_column("region")
    table.add_column("h", justify="right")
    for method in METHODS:
        table.add_column(f"MAE {method}", justify="right")
    for method in METHODS:
        table.add_column(f"MAPE {method}", justify="right")
    pivot = errors.pivot_table(index=["region", "horizon_h"], columns="method",
                               values=["mae", "mape_pct"])
    for region in errors["region"].unique():
        for label, rows in [*((str(h), [h]) for h in shown),
                            ("1-24", list(range(1, MAX_HORIZON_H + 1)))]:
            part = pivot.loc[[(region, h) for h in rows]].mean()
            table.add_row(region, label,
                          *(f"{part[('mae', m)]:.2f}" for m in METHODS),
                          *(_pct(part[("mape_pct", m)]) for m in METHODS),
                          end_section=label == "1-24")
    console.print(table)


def _print_summary(console: Console, errors: pd.DataFrame) -> None:
    table = Table(title="Mean over regions and horizons 1-24")
    table.add_column("signal")
    for method in METHODS:
        table.add_column(f"MAE {method}", justify="right")
    for method in METHODS:
        table.add_column(f"MAPE {method}", justify="right")
    mean = errors.groupby(["signal", "method"])[["mae", "mape_pct"]].mean()
    for signal in errors["signal"].unique():
        table.add_row(signal, *(f"{mean.loc[(signal, m), 'mae']:.2f}" for m in METHODS),
                      *(_pct(mean.loc[(signal, m), "mape_pct"]) for m in METHODS))
    console.print(table)


def _pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1f}"
