"""``slit plan``: the plan for one interval, as JSON or as Envoy routes for a load balancer.

The JSON document is described, field by field, in docs/plan.md; ``schema_version`` changes
only when a field changes meaning or disappears.
"""

from __future__ import annotations

import json
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
import yaml
from rich.console import Console

from slit.cli.app import app
from slit.cli.options import DataDirOption
from slit.cli.progress import stage_progress
from slit.cli.run_commands import write_text_atomically
from slit.config import load_scenario, parse_time_argument
from slit.data.signals import available_years, resolve_data_dir
from slit.errors import SlitInputError
from slit.experiment.run import interval_problem, prepare
from slit.experiment.scenario import Scenario, default_scenario
from slit.optimise.metaheuristic import Decision, plan_interval
from slit.optimise.policies import interval_seeds
from slit.optimise.problem import OBJECTIVES, IntervalProblem, evaluate_plans

PLAN_SCHEMA_VERSION = 1
SHARE_UNITS = 1_000_000  # JSON shares are multiples of 1e-6 that sum to exactly 1
ENVOY_TOTAL_WEIGHT = 10_000
ENVOY_ROUTE_CONFIG = "slit"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


class PlanFormat(StrEnum):
    json = "json"
    envoy = "envoy"


@app.command()
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
) -> None:
    """Plan the next interval: each origin's traffic shares per site and the awake replicas."""
    fmt = _format(output_format)
    if "{origin}" not in domain_template:
        raise SlitInputError("--envoy-domain", f"{domain_template!r} has no {{origin}}",
                             "include {origin}, e.g. '{origin}.llm.example.com'")
    start = _interval_start(at)
    if output is not None and not output.resolve().parent.is_dir():
        raise SlitInputError(f"--output {output}", "its folder does not exist", "create it first")
    scenario = plan_scenario(scenario_file, resolve_data_dir(data_dir), start)
    problem, decision = plan_next_interval(scenario)
    document = plan_document(scenario, problem, decision)
    text = (json.dumps(document, indent=2, allow_nan=False) + "\n" if fmt is PlanFormat.json
            else envoy_yaml(document, domain_template))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomically(output, text)
        typer.echo(f"wrote {output}", err=True)


def plan_scenario(scenario_file: Path | None, data_dir: Path | None, start: pd.Timestamp
                  ) -> Scenario:
    """The scenario reduced to the one interval starting at ``start``."""
    if scenario_file is None:
        base = default_scenario(data_dir)  # fleets sized on the default week, whatever --at
    else:
        base = load_scenario(scenario_file, data_dir=data_dir)
    scenario = replace(base, start_utc=start, hours=base.interval_s / 3600.0)
    _check_data_covers(scenario)
    return scenario


def plan_next_interval(scenario: Scenario) -> tuple[IntervalProblem, Decision]:
    """Forecast the interval, search its Pareto front, pick by the scenario's preference."""
    console = Console(stderr=True)
    with stage_progress(console) as report:
        prepared = prepare(scenario, report)
    problem = interval_problem(prepared, 0)
    # The seed interval 0 of ``slit run`` would plan with: the scenario's one seed.
    seed = interval_seeds(scenario.seed, 1)[0]
    return problem, plan_interval(problem, scenario.preference, scenario.search, seed=seed)


def plan_document(scenario: Scenario, problem: IntervalProblem, decision: Decision) -> dict:
    """The plan as the stable JSON document of docs/plan.md."""
    ev = evaluate_plans(problem, decision.routing)
    end = scenario.start_utc + pd.Timedelta(seconds=scenario.interval_s)
    origins = []
    for o, origin in enumerate(problem.origin_ids):
        units = integer_weights(decision.routing[o], SHARE_UNITS)
        origins.append({
            "id": origin,
            "forecast_rps": float(problem.demand_rps[o]),
            "routes": {problem.site_ids[s]: units[s] / SHARE_UNITS
                       for s in np.flatnonzero(units)},
        })
    sites = [{
        "id": site.region_id, "model": site.replica.model, "gpu": site.replica.gpu,
        "tp": site.replica.tp, "awake_replicas": int(decision.awake[s]),
        "installed_replicas": int(site.installed),
        "expected_load_rps": float(ev.load_rps[0, s]),
    } for s, site in enumerate(scenario.sites)]
    front = [
        {**_objectives(decision.front_objectives[i], decision.front_violation_s[i]),
         "chosen": bool(i == decision.chosen)}
        for i in np.argsort(decision.front_objectives[:, 0], kind="stable")
    ]
    pref = scenario.preference
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "issued_at": pd.Timestamp.now(tz="UTC").floor("s").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenario": {"name": scenario.name, "seed": scenario.seed,
                     "data": str(scenario.data_dir) if scenario.data_dir else "embedded"},
        "interval": {"start_utc": _iso(scenario.start_utc), "end_utc": _iso(end),
                     "seconds": scenario.interval_s},
        "slo": {"ttft_s": scenario.slo_ttft_s, "percentile": scenario.slo_percentile},
        "preference": {"mode": pref.mode, "weights": dict(zip(OBJECTIVES, pref.weights,
                                                              strict=True)),
                       "ttft_cap_s": pref.ttft_cap_s, "minimise": pref.minimise},
        "sites": sites,
        "origins": origins,
        "expected": _objectives(decision.objectives, decision.slo_violation_s),
        "front": front,
    }


def envoy_yaml(document: dict, domain_template: str = "{origin}.*") -> str:
    """Envoy RDS resource: one virtual host per origin, routing to per-site clusters with
    integer weights that sum to ``ENVOY_TOTAL_WEIGHT``."""
    hosts = []
    for origin in document["origins"]:
        sites = list(origin["routes"])
        weights = integer_weights(np.array([origin["routes"][s] for s in sites]),
                                  ENVOY_TOTAL_WEIGHT)
        hosts.append({
            "name": f"origin-{origin['id'].lower()}",
            "domains": [domain_template.format(origin=origin["id"].lower())],
            "routes": [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                {"name": cluster_name(site), "weight": int(w)}
                for site, w in zip(sites, weights, strict=True) if w > 0]}}}],
        })
    interval = document["interval"]
    header = (f"# SLIT plan for {interval['start_utc']} to {interval['end_utc']} "
              f"(issued {document['issued_at']}); clusters are named slit-site-<site id>.\n")
    body = {"version_info": interval["start_utc"], "resources": [{
        "@type": ROUTE_CONFIG_TYPE, "name": ENVOY_ROUTE_CONFIG, "virtual_hosts": hosts}]}
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def cluster_name(site_id: str) -> str:
    return f"slit-site-{site_id.lower()}"


def integer_weights(shares: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integers proportional to ``shares`` that sum to exactly ``total``
    (largest remainder; ties to the lower index, so the result is deterministic)."""
    shares = np.clip(np.asarray(shares, dtype=float), 0.0, None)
    positive = shares > 0
    if not positive.any():
        raise ValueError("no positive share to round")
    exact = shares / shares.sum() * total
    out = np.floor(exact).astype(np.int64)
    remainder = np.where(positive, exact - out, -1.0)
    order = np.lexsort((np.arange(len(shares)), -remainder))
    out[order[: total - int(out.sum())]] += 1
    return out


def _objectives(values: np.ndarray, violation_s: float) -> dict:
    doc = {name: float(v) for name, v in zip(OBJECTIVES, values, strict=True)}
    doc["meets_slo"] = bool(violation_s <= 0)
    # Headroom of the worst routed origin-site pair's tail TTFT under the SLO (negative: over).
    doc["slo_margin_s"] = float(-violation_s) if np.isfinite(violation_s) else None
    return doc


def _iso(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _check_data_covers(scenario: Scenario) -> None:
    """With real data, the interval and the history the forecasters learn from must be in it."""
    if scenario.data_dir is None:
        return
    begin = scenario.start_utc.floor("h") - pd.Timedelta(days=scenario.history_days)
    last = scenario.end_utc.ceil("h") - pd.Timedelta(hours=1)
    needed = range(begin.year, last.year + 1)
    for site in scenario.sites:
        have = available_years(scenario.data_dir, site.region_id)
        if any(year not in have for year in needed):
            span = f"{min(have)}-{max(have)}" if have else "no year"
            raise SlitInputError(
                "--at", f"{scenario.start_utc:%Y-%m-%dT%H:%M} needs {site.region_id} signals from "
                f"{begin:%Y-%m-%d} (the {scenario.history_days}-day history) to "
                f"{scenario.end_utc:%Y-%m-%d %H:%M}, but {scenario.data_dir} has {span}",
                f"plan a time at least {scenario.history_days} days into the data's years")
