"""The comparison table of a run, for the terminal and for JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from slit.experiment.metrics import PolicyMetrics
from slit.experiment.run import ExperimentResult
from slit.fileio import write_text_atomically
from slit.optimise.preference import Preference, preference_score

# (metric, column header, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ttft_p50_s", "TTFT p50 s", "{:.3f}"),
    ("ttft_p95_s", "p95 s", "{:.3f}"),
    ("ttft_p99_s", "p99 s", "{:.3f}"),
    ("slo_attainment_pct", "SLO %", "{:.2f}"),
    ("completed", "served", "{:,}"),
    ("late", "late", "{:,}"),
    ("shed", "shed", "{:,}"),
    ("energy_kwh", "energy kWh", "{:,.0f}"),
    ("carbon_kg", "carbon kg", "{:,.0f}"),
    ("water_onsite_l", "water on-site L", "{:,.0f}"),
    ("water_offsite_l", "water off-site L", "{:,.0f}"),
    ("cost_usd", "cost USD", "{:,.0f}"),
    ("wh_per_request", "Wh/req", "{:.3f}"),
    ("g_co2_per_request", "gCO2/req", "{:.3f}"),
    ("ml_water_per_request", "mL/req", "{:.2f}"),
    ("load_delayed_requests", "load-delayed", "{:,.0f}"),
    ("loading_energy_kwh", "loading kWh", "{:,.1f}"),
    ("preference_score", "score", "{:.4f}"),
)
# Narrower layouts for narrow terminals, widest first; each keeps the SLO and the footprint.
# The full table is always in results.json and report.html.
COMPACT_COLUMNS: tuple[tuple[tuple[str, str, str], ...], ...] = (
    (("ttft_p99_s", "p99 s", "{:.2f}"), ("slo_attainment_pct", "SLO %", "{:.2f}"),
     ("late", "late", "{:,}"), ("shed", "shed", "{:,}"),
     ("energy_kwh", "kWh", "{:,.0f}"), ("carbon_kg", "CO2 kg", "{:,.0f}"),
     ("water_l", "water L", "{:,.0f}"), ("cost_usd", "USD", "{:,.0f}"),
     ("wh_per_request", "Wh/req", "{:.3f}"), ("load_delayed_requests", "delayed", "{:,.0f}"),
     ("loading_energy_kwh", "load kWh", "{:,.1f}"), ("preference_score", "score", "{:.4f}")),
    (("ttft_p99_s", "p99 s", "{:.2f}"), ("slo_attainment_pct", "SLO %", "{:.2f}"),
     ("energy_kwh", "kWh", "{:,.0f}"), ("carbon_kg", "CO2 kg", "{:,.0f}"),
     ("water_l", "water L", "{:,.0f}"), ("cost_usd", "USD", "{:,.0f}"),
     ("preference_score", "score", "{:.4f}")),
    (("slo_attainment_pct", "SLO %", "{:.2f}"), ("carbon_kg", "CO2 kg", "{:,.0f}"),
     ("water_l", "water L", "{:,.0f}"), ("cost_usd", "USD", "{:,.0f}"),
     ("preference_score", "score", "{:.4f}")),
)
UNBOUNDED_WIDTH = 10_000
# The four objectives on which dominance is judged (all minimised).
DOMINANCE_METRICS = ("ttft_mean_s", "carbon_kg", "water_l", "cost_usd")
# The simulated outcomes in the planner's OBJECTIVES order (mean TTFT s, carbon kg, water L,
# cost USD), which the preference scores.
OUTCOME_METRICS = DOMINANCE_METRICS


def row_values(m: PolicyMetrics, score: float | None) -> dict[str, float]:
    """A policy's figures for a table row: its metrics and its preference score (NaN when the
    run has none)."""
    values = m.as_dict()
    values["preference_score"] = float("nan") if score is None else score
    return values


def comparison_table(metrics: dict[str, PolicyMetrics], title: str,
                     columns: tuple[tuple[str, str, str], ...] = COLUMNS,
                     scores: dict[str, float] | None = None) -> Table:
    table = Table(title=title)
    table.add_column("policy")
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for policy, m in metrics.items():
        values = row_values(m, (scores or {}).get(policy))
        table.add_row(policy, *[fmt.format(values[key]) for key, _, fmt in columns])
    return table


def fitted_comparison_table(metrics: dict[str, PolicyMetrics], title: str, console: Console,
                            scores: dict[str, float] | None = None) -> tuple[Table, bool]:
    """The widest layout of the comparison table that fits ``console`` without wrapping a
    cell, and whether it is the full one."""
    return widest_fitting(console, [comparison_table(metrics, title, columns, scores)
                                    for columns in (COLUMNS, *COMPACT_COLUMNS)])


def preference_scores(metrics: dict[str, PolicyMetrics], preference: Preference,
                      scales: np.ndarray) -> dict[str, float]:
    """Each policy's ``preference_score``: the scenario's preference applied to its simulated
    outcomes (mean TTFT with network, carbon, water, cost), every policy divided by the same
    ``scales`` (fixed by the forecast problems, never by the outcomes); lower is better."""
    policies = list(metrics)
    outcomes = np.array([[getattr(metrics[p], name) for name in OUTCOME_METRICS]
                         for p in policies])
    scores = preference_score(outcomes, preference, scales)
    return {p: float(v) for p, v in zip(policies, scores, strict=True)}


def widest_fitting(console: Console, layouts: Sequence[Table]) -> tuple[Table, bool]:
    """The first of ``layouts`` (widest first) that ``console`` shows without wrapping a cell,
    or the last; and whether it is the first."""
    for n, table in enumerate(layouts):
        if natural_width(console, table) <= console.width:
            return table, n == 0
    return layouts[-1], False


def natural_width(console: Console, table: Table) -> int:
    """Columns ``table`` needs to draw every cell on one line (measured as if the terminal
    were unbounded: a measurement never exceeds the width it is given)."""
    unbounded = console.options.update(max_width=UNBOUNDED_WIDTH)
    return Measurement.get(console, unbounded, table).maximum


def result_scores(result: ExperimentResult) -> dict[str, float]:
    """Each policy's preference_score (``report.table.preference_scores``), empty when the run
    kept no normalisation."""
    if result.preference_scales is None or not result.metrics:
        return {}
    return preference_scores(result.metrics, result.scenario.preference,
                             result.preference_scales)


def reductions_vs(metrics: dict[str, PolicyMetrics], policy: str, reference: str
                  ) -> dict[str, float]:
    """Percent reduction of carbon, water and cost of ``policy`` against ``reference``."""
    out = {}
    for key in ("carbon_kg", "water_l", "cost_usd", "energy_kwh"):
        ref = getattr(metrics[reference], key)
        out[key] = 100.0 * (ref - getattr(metrics[policy], key)) / ref if ref else math.nan
    return out


def dominating(metrics: dict[str, PolicyMetrics], policy: str) -> list[str]:
    """Policies at least as good as ``policy`` on all four objectives and better on one."""
    mine = [getattr(metrics[policy], k) for k in DOMINANCE_METRICS]
    out = []
    for other, m in metrics.items():
        theirs = [getattr(m, k) for k in DOMINANCE_METRICS]
        if other != policy and all(t <= v for t, v in zip(theirs, mine, strict=True)) and \
                any(t < v for t, v in zip(theirs, mine, strict=True)):
            out.append(other)
    return out


def write_json(path: Path, document: dict) -> None:
    """``document`` as JSON into ``path``, whole or not at all (NaN written as null)."""
    text = json.dumps(_finite(document), indent=2, sort_keys=True, allow_nan=False,
                      default=_jsonable)
    write_text_atomically(Path(path), text + "\n")


def _finite(value: object) -> object:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
