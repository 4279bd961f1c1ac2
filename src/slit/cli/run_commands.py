"""``slit run``: the main job, and ``slit init``: an example scenario file."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from slit.cli.options import DataDirOption, RayAddressOption, check_ray_options
from slit.cli.progress import stage_progress
from slit.config import example_yaml, load_scenario
from slit.data.signals import resolve_data_dir
from slit.errors import SlitInputError
from slit.experiment.run import POLICIES, ExperimentResult, run_experiment
from slit.experiment.scenario import DEFAULT_GLOBAL_RATE_RPS, Scenario, default_scenario
from slit.fileio import check_output_file, write_text_atomically
from slit.parallel import ray_runtime, usable_cpus
from slit.report.bundle import check_out_dir, results_document, write_results_dir
from slit.report.table import (
    dominating,
    fitted_comparison_table,
    reductions_vs,
    result_scores,
    write_json,
)

DEFAULT_OUT = Path("slit-results")


def run(
    scenario_file: Annotated[Path | None, typer.Argument(
        metavar="[SCENARIO]", help="Scenario YAML (see `slit init`); default: the embedded "
        "default scenario.", show_default=False)] = None,
    data_dir: DataDirOption = None,
    hours: Annotated[float | None, typer.Option(
        help="Length of the simulated period in hours (default 24, or the scenario's).",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of every random draw (default 0; a scenario file sets its own).",
        show_default=False)] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help=f"Mean global request rate in requests per second (default "
        f"{DEFAULT_GLOBAL_RATE_RPS:g}; a scenario file sets its own).", show_default=False)
    ] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the figures, keyed by policy and metric, to this JSON file.")
    ] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Folder for report.html, the PNG figures and results.json.")
    ] = DEFAULT_OUT,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Local CPUs to use (default: all this process may run on). Above 1, "
        "Ray starts on this machine and runs the myopic MILP's interval solves, the site "
        "simulations and the surrogate's training runs as tasks, in parallel with SLIT's "
        "planning; 1 runs everything in this process without Ray. Results are identical.",
        show_default=False)] = None,
    address: RayAddressOption = None,
) -> None:
    """Simulate a day with SLIT and every baseline; print the comparison table, write the report."""
    if hours is not None and not hours > 0:
        raise SlitInputError("--hours", f"{hours} is not positive", "give a period in hours")
    if rate is not None and not rate > 0:
        raise SlitInputError("--rate", f"{rate} is not positive", "give requests per second")
    if seed is not None and seed < 0:
        raise SlitInputError("--seed", f"{seed} is negative", "give a seed >= 0")
    check_ray_options(address, workers)
    # Every destination is checked before the minutes of work, not after.
    check_out_dir(out)
    if json_path is not None:
        if out.resolve() in (json_path.resolve(), json_path.resolve().parent):
            raise SlitInputError(f"--json {json_path}", f"is inside the results folder {out}",
                                 "give a path outside --out (results.json is already there)")
        check_output_file(json_path, "--json")
    directory = resolve_data_dir(data_dir)
    # A scenario file is read and checked before progress starts, so its errors stand alone.
    scenario = (None if scenario_file is None
                else build_scenario(scenario_file, directory, hours, seed, rate))
    console = Console()  # the terminal's width, or COLUMNS, or 80 when not a terminal
    runtime = local_runtime(address, workers)
    with runtime, stage_progress(console, first="load",
                                 order=("load", "surrogate", "plan", "simulate")) as report:
        if scenario is None:  # sizing the default fleets takes a second or two: show it
            scenario = build_scenario(None, directory, hours, seed, rate)
        result = run_experiment(scenario, POLICIES, report)
    _print_summary(result, console)
    if json_path is not None:
        write_json(json_path, results_document(result))
    written = write_results_dir(out, result)
    console.print(f"wrote {written[0]} (report), {out / 'results.json'} and "
                  f"{len(written) - 2} figures")
    if json_path is not None:
        console.print(f"wrote {json_path}")


def local_runtime(address: str | None, workers: int | None
                  ) -> AbstractContextManager[None]:
    """Ray for the run: joined at ``address``, or started here on ``workers`` CPUs (default:
    those this process may use) when that is more than one; with one, nothing starts and
    ``parallel_map`` and ``submit_each`` run in this process."""
    if address is not None:
        return ray_runtime(address, None)
    cpus = usable_cpus() if workers is None else workers
    return ray_runtime(None, cpus) if cpus > 1 else nullcontext()


def init(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the scenario.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")
                     ] = False,
) -> None:
    """Write a commented example scenario (the embedded default) that runs as is."""
    if path.exists() and not path.is_file():
        raise SlitInputError(str(path), "is not a file", "give a file name")
    if path.exists() and not force:
        raise SlitInputError(str(path), "already exists",
                             "choose another name, or add --force to overwrite it")
    check_output_file(path, "FILE")
    write_text_atomically(path, example_yaml())
    typer.echo(f"wrote {path}; run it with: slit run {path}")


def build_scenario(scenario_file: Path | None, data_dir: Path | None, hours: float | None,
                   seed: int | None, rate: float | None) -> Scenario:
    """The scenario to run: the file's (with --hours and --data-dir applied) or the default."""
    if scenario_file is None:
        return default_scenario(data_dir, hours=24.0 if hours is None else hours,
                                seed=0 if seed is None else seed,
                                global_rate_rps=DEFAULT_GLOBAL_RATE_RPS if rate is None
                                else rate)
    for option, value, key in (("--seed", seed, "seed"), ("--rate", rate,
                                                           "workload.global_rate_rps")):
        if value is not None:
            raise SlitInputError(option, "is not used with a scenario file",
                                 f"set `{key}` in {scenario_file} instead")
    return load_scenario(scenario_file, data_dir=data_dir, hours=hours)


def _print_summary(result: ExperimentResult, console: Console) -> None:
    scenario, metrics = result.scenario, result.metrics
    scores = result_scores(result)
    table, full = fitted_comparison_table(
        metrics, f"{scenario.name}: {scenario.hours:g} h from "
        f"{scenario.start_utc:%Y-%m-%d %H:%M} UTC, {len(scenario.sites)} sites, "
        f"{metrics['slit'].requests:,} requests, SLO TTFT <= {scenario.slo_ttft_s:g} s",
        console, scores)
    console.print(table)
    if not full:
        console.print(f"(compact table for {console.width} columns; every column is in "
                      "results.json and report.html)")
    cut = reductions_vs(metrics, "slit", "latency_first")
    beaten_by = dominating(metrics, "slit")
    decision = sorted(result.decision_s)[len(result.decision_s) // 2]
    console.print(
        f"SLIT vs latency_first: carbon -{cut['carbon_kg']:.1f} %, water -{cut['water_l']:.1f} %,"
        f" cost -{cut['cost_usd']:.1f} %, energy -{cut['energy_kwh']:.1f} %")
    console.print(f"SLIT dominated by: {', '.join(beaten_by) if beaten_by else 'none'}; "
                  f"median decision {decision:.2f} s")
    if "slit" in scores:
        better = ", ".join(f"{p} {100.0 * (v - scores['slit']) / abs(v):+.1f} %"
                           for p, v in scores.items() if p != "slit" and v)
        console.print(f"SLIT's preference score below each policy's (lower is better): {better}")
    acc = result.surrogate_accuracy
    console.print(
        "surrogate held-out MAPE (operating range): "
        + ", ".join(f"{k} {v:.1f} %" for k, v in acc.mape_operating_pct.items())
    )
