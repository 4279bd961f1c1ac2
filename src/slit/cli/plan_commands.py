"""``slit plan``: SLIT's decision at one interval (replicas to load and release, routes per
model, the look-ahead), as JSON or as Envoy routes for a load balancer.

The plan itself (the receding-horizon step, document, routes, integer weights) is made by
``slit.plan``; this module reads the arguments, checks them before any work and writes the
result.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from slit.cli.options import DataDirOption
from slit.cli.progress import stage_progress
from slit.config import load_scenario, parse_time_argument
from slit.data.signals import resolve_data_dir
from slit.errors import SlitInputError
from slit.experiment.scenario import Scenario, default_scenario
from slit.fileio import check_output_file, write_text_atomically
from slit.plan import (
    envoy_yaml,
    plan_document,
    plan_next_interval,
    plan_scenario,
    state_from_document,
)


class PlanFormat(StrEnum):
    json = "json"
    envoy = "envoy"


def plan(
    at: Annotated[str, typer.Option(
        "--at", help='Start of the interval to plan, "YYYY-MM-DDTHH:MM" (UTC unless it has an '
        "offset).", show_default=False)],
    scenario_file: Annotated[Path | None, typer.Option(
        "--scenario", help="Scenario YAML giving sites, workload, SLO and preference "
        "(default: the embedded default scenario).", show_default=False)] = None,
    data_dir: DataDirOption = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="json: the plan document (docs/plan.md); envoy: weighted-cluster "
        "routes (RDS resource YAML).")] = PlanFormat.json.value,
    domain_template: Annotated[str, typer.Option(
        "--envoy-domain", help="Envoy virtual-host domain per origin; {origin} is the origin "
        "id in lower case.")] = "{origin}.*",
    output: Annotated[Path | None, typer.Option(
        "--output", help="Write to this file (atomically) instead of printing.",
        show_default=False)] = None,
    current: Annotated[Path | None, typer.Option(
        "--current", help="The previous plan's JSON: the replicas loaded now and since when, "
        "the state the plan starts from (default: nothing loaded, a cold start).",
        show_default=False)] = None,
) -> None:
    """Plan the interval at --at as SLIT's receding-horizon step (as `slit run` does): per
    model, the replicas to load and release per site and each origin's traffic shares per
    site, planned 2 h ahead from the replicas loaded now."""
    fmt = _format(output_format)
    if "{origin}" not in domain_template:
        raise SlitInputError("--envoy-domain", f"{domain_template!r} has no {{origin}}",
                             "include {origin}, e.g. '{origin}.llm.example.com'")
    start = _interval_start(at)
    if output is not None:
        check_output_file(output, "--output")
    previous = None if current is None else _read_json(current)
    scenario = plan_scenario(_base_scenario(scenario_file, resolve_data_dir(data_dir), start),
                             start)
    state = None if previous is None else state_from_document(previous, scenario, start)
    with stage_progress(Console(stderr=True), first="load",
                        order=("load", "surrogate", "plan")) as report:
        decision = plan_next_interval(scenario, state, report)
    document = plan_document(decision)
    text = (json.dumps(document, indent=2, allow_nan=False) + "\n" if fmt is PlanFormat.json
            else envoy_yaml(document, domain_template))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomically(output, text)
        typer.echo(f"wrote {output}", err=True)


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SlitInputError("--current", f"cannot read {path}: {err}",
                             "give the JSON file an earlier `slit plan` wrote") from None
    if not isinstance(document, dict) or "models" not in document:
        raise SlitInputError("--current", f"{path} is not a plan document",
                             "give the JSON file an earlier `slit plan` wrote")
    return document


def _base_scenario(scenario_file: Path | None, data_dir: Path | None,
                   start: pd.Timestamp) -> Scenario:
    # Default fleets are sized on the week from --at's day (the plan's own period).
    if scenario_file is None:
        return default_scenario(data_dir, start_utc=start)
    return load_scenario(scenario_file, data_dir=data_dir, start_utc=start)


def _format(text: str) -> PlanFormat:
    try:
        return PlanFormat(text)
    except ValueError:
        raise SlitInputError("--format", f"unknown format {text!r}",
                             f"use one of: {', '.join(f.value for f in PlanFormat)}") from None


def _interval_start(text: str) -> pd.Timestamp:
    start = parse_time_argument(text, "--at")
    if start != start.floor("min"):
        raise SlitInputError("--at", f"{text!r} has seconds", 'give "YYYY-MM-DDTHH:MM"')
    return start
