"""Commands about serving inside a site: calibrate the step-time model, simulate one site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from slit.cli.options import RequiredDataDirOption
from slit.data.signals import resolve_data_dir
from slit.errors import SlitInputError
from slit.serving.calibrate import calibrate as fit_calibration
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import make_replica
from slit.simulate.arrivals import poisson_from_trace
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
    """Fit the step-time model's efficiency factors on the Vidur layer timings."""
    reports, median = fit_calibration(_need_data_dir(
        data_dir, "slit calibrate --data-dir ../shared/data"))
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


def simulate_site(
    model: Annotated[str, typer.Option(help="Model name from the catalog.")] = "Llama-3.1-70B",
    gpu: Annotated[str, typer.Option(help="GPU name from the catalog.")] = "H100-SXM5-80GB",
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree.")] = 4,
    replicas: Annotated[int, typer.Option(help="Replicas installed and awake.")] = 4,
    trace: Annotated[str, typer.Option(help="Token sizes from this trace: conv or code.")] = "conv",
    load: Annotated[float, typer.Option(help="Offered load / analytic capacity.")] = 0.5,
    duration_s: Annotated[float, typer.Option(help="Seconds of Poisson arrivals.")] = 900.0,
    chunked: Annotated[bool, typer.Option(help="Chunked prefill.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    data_dir: RequiredDataDirOption = None,
) -> None:
    """Simulate one site on Poisson arrivals with token sizes resampled from an Azure trace."""
    replica = make_replica(model, gpu, tp)
    source = load_trace(_need_data_dir(
        data_dir, "slit simulate-site --data-dir ../shared/data --replicas 4 --load 0.5"), trace)
    capacity = max_throughput_rps(replica, float(np.mean(source.prompt_tokens)),
                                  float(np.mean(source.output_tokens)))
    rate = load * capacity * replicas
    requests = poisson_from_trace(source, rate, duration_s, seed)
    site = SiteConfig(replica, replicas, chunked_prefill=chunked,
                      max_batch_tokens=2048 if chunked else 8192)
    result = simulate_one_site(requests, site, replicas, seed=seed)
    typer.echo(f"{model} on {tp}x {gpu}, {replicas} replicas, {trace} trace: capacity "
               f"{capacity:.2f} req/s per replica, offered {rate:.2f} req/s")
    for key, value in result.summary().items():
        typer.echo(f"{key}={value:.6g}")
    typer.echo(result.conservation_statement())
