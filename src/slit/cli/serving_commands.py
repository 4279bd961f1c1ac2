"""Commands about serving inside a site: calibrate the step-time model, simulate one site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slit.cli.options import RequiredDataDirOption
from slit.data.signals import resolve_data_dir
from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.serving.calibrate import calibrate as fit_calibration
from slit.serving.catalog import make_replica
from slit.serving.communication import NETWORK_FOLDER, calibrate_allreduce, shipped_tables
from slit.simulate.arrivals import poisson_from_trace
from slit.simulate.capacity import slo_capacity_rps
from slit.simulate.site import SiteConfig
from slit.simulate.site import simulate_site as simulate_one_site
from slit.workload.traces import load_trace


def _need_data_dir(data_dir: Path | None, example: str) -> Path:
    directory = resolve_data_dir(data_dir)
    if directory is None:
        raise SlitInputError("--data-dir", "this command needs the real data (the embedded "
                             "default has no raw traces or layer timings)",
                             f"pass --data-dir or set SLIT_DATA_DIR, e.g. {example}")
    return directory


def calibrate(data_dir: RequiredDataDirOption = None) -> None:
    """Fit the step-time model on the Vidur layer timings and NCCL all-reduce times."""
    directory = _need_data_dir(data_dir, "slit calibrate --data-dir ../shared/data")
    reports, median = fit_calibration(directory)
    table = Table(title="Step-time calibration (model 'all' = pooled fit shipped in the package; "
                  "per model: own fit, errors of the pooled fit)")
    for column in ("GPU", "model", "compute eff", "memory eff", "launch us", "median rel err",
                   "p90 rel err", "rows"):
        table.add_column(column)
    for r in reports:
        table.add_row(r.gpu, r.model, f"{r.efficiency.compute:.4f}", f"{r.efficiency.memory:.4f}",
                      f"{r.efficiency.launch_s * 1e6:.3f}", f"{r.median_rel_error:.3f}",
                      f"{r.p90_rel_error:.3f}", str(r.n_rows))
    Console().print(table)
    typer.echo(f"median_rel_error={median:.4f}")
    if not (directory / NETWORK_FOLDER).is_dir():
        typer.echo(f"no {NETWORK_FOLDER} in {directory}: all-reduce table not checked")
        return
    comm, _, comm_median = calibrate_allreduce(directory, shipped_tables())
    table = Table(title="Tensor-parallel all-reduce: shipped table vs measured NCCL times "
                  "(messages of 8 KiB and more); held out: fitted on even rows, scored on odd")
    for column in ("GPU", "tp", "median rel err", "p90 rel err", "held-out median", "rows"):
        table.add_column(column)
    for c in comm:
        table.add_row(c.gpu, str(c.tp), f"{c.median_rel_error:.3f}", f"{c.p90_rel_error:.3f}",
                      f"{c.held_out_median_rel_error:.3f}", str(c.n_rows))
    Console().print(table)
    typer.echo(f"allreduce_median_rel_error={comm_median:.4f}")


def simulate_site(
    model: Annotated[str, typer.Option(help="Model name from the catalog.")] = "Llama-3.1-70B",
    gpu: Annotated[str, typer.Option(help="GPU name from the catalog.")] = "H100-SXM5-80GB",
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree.")] = 4,
    replicas: Annotated[int, typer.Option(help="Replicas installed and awake.")] = 4,
    trace: Annotated[str, typer.Option(help="Token sizes from this trace: conv or code.")] = "conv",
    load: Annotated[float, typer.Option(
        help="Offered load / simulated capacity at the SLO (p99 TTFT <= 1.35 s).")] = 0.5,
    duration_s: Annotated[float, typer.Option(help="Seconds of Poisson arrivals.")] = 900.0,
    chunked: Annotated[bool, typer.Option(help="Chunked prefill.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    data_dir: RequiredDataDirOption = None,
) -> None:
    """Simulate one site on Poisson arrivals with token sizes resampled from an Azure trace."""
    replica = make_replica(model, gpu, tp)
    directory = _need_data_dir(
        data_dir, "slit simulate-site --data-dir ../shared/data --replicas 4 --load 0.5")
    source = load_trace(directory, trace)
    if trace not in ("conv", "code"):
        raise SlitInputError("--trace", f"unknown trace {trace!r}", "use conv or code")
    capacity = slo_capacity_rps(replica, 1.0 if trace == "code" else 0.0,
                                token_source=DataSource(directory).key)
    rate = load * capacity * replicas
    requests = poisson_from_trace(source, rate, duration_s, seed)
    site = SiteConfig(replica, replicas, chunked_prefill=chunked,
                      max_batch_tokens=2048 if chunked else 8192)
    result = simulate_one_site(requests, site, replicas, seed=seed)
    typer.echo(f"{model} on {tp}x {gpu}, {replicas} replicas, {trace} trace: capacity "
               f"{capacity:.2f} req/s per replica at the SLO, offered {rate:.2f} req/s")
    for key, value in result.summary().items():
        typer.echo(f"{key}={value:.6g}")
    typer.echo(result.conservation_statement())
