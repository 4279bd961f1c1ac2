"""Faults and overload in the report (issue 13): the scenario's events as a timeline, what
happened to every policy's requests (served, late, shed, handed off, redirected, rejected, lost)
and the intervals whose demand exceeded the fleet, for report.html and results.json."""

from __future__ import annotations

from html import escape

from slit.experiment.events import Derate, Event, Outage, Partition, SignalGap
from slit.experiment.run import ExperimentResult
from slit.experiment.scenario import Scenario

# Per-policy request outcomes: (metric or property, header).
OUTCOMES: tuple[tuple[str, str], ...] = (
    ("requests", "requests"), ("served", "served"), ("late", "late (after the SLO)"),
    ("shed", "shed"), ("handed_off", "handed off"), ("redirected", "redirected"),
    ("rejected", "rejected"), ("in_flight", "in flight at the end"), ("lost", "lost"),
)
SHORTFALL_ROWS = 12  # the report lists the worst intervals; results.json has all


def describe(event: Event) -> tuple[str, str]:
    """(kind, what) of an event, in words."""
    if isinstance(event, Outage):
        return "outage", f"{event.site} loses all its GPUs"
    if isinstance(event, Derate):
        return "derate", f"{event.site} keeps {100 * event.gpu_fraction:g} % of its GPUs"
    if isinstance(event, Partition):
        return "partition", f"{event.origin} cannot reach {event.site}"
    assert isinstance(event, SignalGap)
    return "signal_gap", f"{event.region}: no {', '.join(event.signals)} data for the planner"


def events_document(scenario: Scenario) -> list[dict]:
    """The events for results.json, in time order."""
    out = []
    for event in scenario.events:
        kind, what = describe(event)
        row: dict = {"kind": kind, "start_utc": str(event.start_utc),
                     "end_utc": str(event.end_utc), "what": what}
        for name in ("site", "origin", "region", "gpu_fraction", "signals"):
            if hasattr(event, name):
                value = getattr(event, name)
                row[name] = list(value) if isinstance(value, tuple) else value
        out.append(row)
    return out


def outcomes(result: ExperimentResult) -> dict[str, dict[str, int]]:
    """policy -> request outcome -> count."""
    return {policy: {key: int(getattr(m, key)) for key, _ in OUTCOMES}
            for policy, m in result.metrics.items()}


def faults_document(result: ExperimentResult) -> dict:
    """The results.json entries of this module: events, outcomes per policy, shortfalls."""
    return {"events": events_document(result.scenario), "request_outcomes": outcomes(result),
            "shortfalls": [s.as_dict() for s in result.shortfalls]}


def faults_html(result: ExperimentResult) -> str:
    """The report's section: events timeline, request outcomes per policy, shortfalls."""
    sc = result.scenario
    parts = ["<h2>Faults, overload and request outcomes</h2>"]
    if sc.events:
        rows = "".join(
            f"<tr><td>{escape(kind)}</td><td>{escape(what)}</td>"
            f"<td>{e.start_utc:%Y-%m-%d %H:%M}</td><td>{e.end_utc:%Y-%m-%d %H:%M}</td>"
            f"<td>{(e.end_utc - e.start_utc).total_seconds() / 3600:g}</td></tr>"
            for e in sc.events for kind, what in [describe(e)])
        parts.append("<table><tr><th>event</th><th>what</th><th>from (UTC)</th>"
                     f"<th>to (UTC)</th><th>hours</th></tr>{rows}</table>")
    else:
        parts.append('<p class="note">No faults in this scenario.</p>')
    head = "".join(f"<th>{escape(h)}</th>" for _, h in OUTCOMES)
    body = ""
    for policy, counts in outcomes(result).items():
        css = ' class="slit"' if policy == "slit" else ""
        cells = "".join(f"<td>{counts[key]:,}</td>" for key, _ in OUTCOMES)
        body += f"<tr{css}><td>{escape(policy)}</td>{cells}</tr>"
    parts.append(f"<table><tr><th>policy</th>{head}</tr>{body}</table>")
    parts.append(
        '<p class="note">Served: completed (late: first token after the SLO). Shed: rejected '
        "on arrival by a site's admission control. Handed off: lost their replica to an outage "
        "or derate and re-sent to the fallback site. Redirected: found their site down or cut "
        "off and went to the fallback at once. Rejected: no site to go to. Lost: rejected or "
        "still in flight at the end.</p>")
    if result.shortfalls:
        worst = sorted(result.shortfalls, key=lambda s: -s.unmet_pct)[:SHORTFALL_ROWS]
        rows = "".join(
            f"<tr><td>{s.interval}</td><td>{escape(s.start_utc)}</td><td>{s.demand_rps:.1f}</td>"
            f"<td>{s.unmet_rps:.1f}</td><td>{s.unmet_pct:.1f}</td>"
            f"<td>{escape(', '.join(f'{o} {v:.1f}' for o, v in s.unmet_rps_by_origin.items()))}"
            "</td></tr>" for s in worst)
        parts.append(
            f'<p class="note">Forecast demand exceeds what the fleet serves within the SLO in '
            f"{len(result.shortfalls)} of {sc.n_intervals} intervals (worst shown; all in "
            "results.json).</p><table><tr><th>interval</th><th>start (UTC)</th><th>demand "
            "req/s</th><th>unmet req/s</th><th>unmet %</th><th>short origins (req/s)</th></tr>"
            f"{rows}</table>")
    return "\n".join(parts)
