"""``slit run``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from slit.cli.app import app
from slit.cli.options import DataDirOption
from slit.data.signals import resolve_data_dir
from slit.errors import SlitInputError
from slit.experiment.run import POLICIES, run_experiment
from slit.experiment.scenario import DEFAULT_GLOBAL_RATE_RPS, default_scenario
from slit.report.table import comparison_table, dominating, reductions_vs, write_json

STAGES = {"surrogate": "training the serving surrogate (simulations)",
          "plan": "planning intervals", "simulate": "simulating sites"}


@app.command()
def run(
    data_dir: DataDirOption = None,
    hours: Annotated[float, typer.Option(help="Length of the simulated period (hours).")] = 24.0,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    rate: Annotated[float, typer.Option(
        "--rate", help="Mean global request rate (requests per second).")
    ] = DEFAULT_GLOBAL_RATE_RPS,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the figures, keyed by policy and metric, to this JSON file.")
    ] = None,
) -> None:
    """Simulate a day with SLIT and every baseline; print the comparison table."""
    if not hours > 0:
        raise SlitInputError("--hours", f"{hours} is not positive", "give a period in hours")
    if not rate > 0:
        raise SlitInputError("--rate", f"{rate} is not positive", "give requests per second")
    scenario = default_scenario(resolve_data_dir(data_dir), hours=hours, seed=seed,
                                global_rate_rps=rate)
    console = Console(width=200)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = run_experiment(scenario, POLICIES, report)
    metrics = result.metrics
    console.print(comparison_table(
        metrics, f"{scenario.name}: {hours:g} h from {scenario.start_utc:%Y-%m-%d %H:%M} UTC, "
        f"{len(scenario.sites)} sites, {metrics['slit'].requests:,} requests, "
        f"SLO TTFT <= {scenario.slo_ttft_s:g} s"))
    cut = reductions_vs(metrics, "slit", "latency_first")
    beaten_by = dominating(metrics, "slit")
    decision = sorted(result.decision_s)[len(result.decision_s) // 2]
    console.print(
        f"SLIT vs latency_first: carbon -{cut['carbon_kg']:.1f} %, water -{cut['water_l']:.1f} %,"
        f" cost -{cut['cost_usd']:.1f} %, energy -{cut['energy_kwh']:.1f} %; "
        f"dominated by: {', '.join(beaten_by) if beaten_by else 'none'}; "
        f"median decision {decision:.2f} s"
    )
    acc = result.surrogate_accuracy
    console.print(
        "surrogate held-out MAPE (operating range): "
        + ", ".join(f"{k} {v:.1f} %" for k, v in acc.mape_operating_pct.items())
    )
    if json_path is not None:
        write_json(json_path, {
            "scenario": {"name": scenario.name, "start_utc": str(scenario.start_utc),
                         "hours": hours, "seed": seed, "global_rate_rps": rate,
                         "slo_ttft_s": scenario.slo_ttft_s,
                         "data_dir": str(scenario.data_dir) if scenario.data_dir else None},
            "policies": {p: m.as_dict() for p, m in metrics.items()},
            "slit_vs_latency_first_reduction_pct": cut,
            "slit_dominated_by": beaten_by,
            "median_decision_s": decision,
            "surrogate_mape_pct": acc.mape_pct,
            "surrogate_mape_operating_pct": acc.mape_operating_pct,
        })
        console.print(f"wrote {json_path}")
