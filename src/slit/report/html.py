"""The HTML report: one self-contained file (inline CSS, PNGs as data URIs, no scripts), so it
opens offline and can be mailed or archived as is."""

from __future__ import annotations

import base64
from html import escape

from slit.experiment.run import ExperimentResult
from slit.report.faults import faults_html
from slit.report.plots import FigureSpec
from slit.report.table import COLUMNS, dominating, reductions_vs, result_scores, row_values

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.slit td { font-weight: 600; background: #eef4ff; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
.note { font-size: 0.9rem; color: #444; }
"""


def render_html(result: ExperimentResult, figures: list[tuple[FigureSpec, bytes]]) -> str:
    """The report page for ``result`` with ``figures`` (spec, PNG bytes) embedded."""
    sc = result.scenario
    metrics = result.metrics
    slit = metrics.get("slit")
    title = f"SLIT report: {sc.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(_summary(result))}</p>',
        "<h2>Comparison of policies</h2>",
        _metrics_table(result),
        *_model_tables(result),
    ]
    if slit is not None and "latency_first" in metrics:
        cut = reductions_vs(metrics, "slit", "latency_first")
        beaten_by = dominating(metrics, "slit")
        parts.append(
            f'<p class="note">SLIT against latency_first: carbon {-cut["carbon_kg"]:+.1f} %, '
            f'water {-cut["water_l"]:+.1f} %, energy cost {-cut["cost_usd"]:+.1f} %, energy '
            f'{-cut["energy_kwh"]:+.1f} %. Policies dominating SLIT on mean TTFT, carbon, '
            f'water and cost: {escape(", ".join(beaten_by)) if beaten_by else "none"}.</p>')
    parts.append(faults_html(result))
    for spec, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts += [
            f'<h2 id="{escape(spec.file.removesuffix(".png"))}">{escape(spec.title)}</h2>',
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(spec.title)}">',
            f"<figcaption>{escape(spec.caption)}</figcaption></figure>",
        ]
    parts += _data_gaps_section(result)
    parts += ["<h2>Sites</h2>", _sites_table(result), "<h2>Surrogate accuracy</h2>",
              _accuracy_table(result), "</body></html>", ""]
    return "\n".join(parts)


def _summary(result: ExperimentResult) -> str:
    sc = result.scenario
    requests = next(iter(result.metrics.values())).requests if result.metrics else 0
    data = str(sc.data_dir) if sc.data_dir else "embedded default"
    decision = sorted(result.decision_s)[len(result.decision_s) // 2] \
        if result.decision_s else float("nan")
    return (f"{sc.hours:g} h from {sc.start_utc:%Y-%m-%d %H:%M} UTC in {sc.interval_s:g} s "
            f"intervals; {len(sc.sites)} sites, {len(sc.demand.origins)} origins, "
            f"{requests:,} requests; SLO: p{sc.slo_percentile} TTFT <= {sc.slo_ttft_s:g} s; "
            f"preference: {sc.preference.mode}; carbon basis: {sc.carbon_basis}; data: {data}; "
            f"seed {sc.seed}; median SLIT decision {decision:.2f} s.")


def _metrics_table(result: ExperimentResult) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for _, header, _ in COLUMNS)
    rows = []
    scores = result_scores(result)
    for policy, m in result.metrics.items():
        values = row_values(m, scores.get(policy))
        cells = "".join(f"<td>{fmt.format(values[key])}</td>" for key, _, fmt in COLUMNS)
        css = ' class="slit"' if policy == "slit" else ""
        rows.append(f"<tr{css}><td>{escape(policy)}</td>{cells}</tr>")
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"


def _model_tables(result: ExperimentResult) -> list[str]:
    """Per served model, every policy's figures for that model's requests alone."""
    if len(result.scenario.models) < 2 or not result.model_metrics:
        return []
    columns = [c for c in COLUMNS if c[0] != "preference_score"]
    head = "".join(f"<th>{escape(header)}</th>" for _, header, _ in columns)
    out = []
    for served in result.scenario.models:
        rows = []
        for policy, by_model in result.model_metrics.items():
            values = by_model[served.name].as_dict()
            cells = "".join(f"<td>{fmt.format(values[key])}</td>" for key, _, fmt in columns)
            css = ' class="slit"' if policy == "slit" else ""
            rows.append(f"<tr{css}><td>{escape(policy)}</td>{cells}</tr>")
        out.append(f"<h3>{escape(served.name)} ({100 * served.demand_share:g} % of requests)"
                   f"</h3><table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>")
    return out


def _sites_table(result: ExperimentResult) -> str:
    rows = []
    plan = result.fleet_plans.get("slit")
    for s, site in enumerate(result.scenario.sites):
        pool = ", ".join(f"{n} x {escape(g)}" for g, n in site.gpus.items())
        for m, model in enumerate(result.scenario.model_names):
            spec = site.replica_for[model]
            mean = f"{plan.replicas[:, s, m].mean():.2f}" if plan is not None else ""
            rows.append(
                f"<tr><td>{escape(site.region_id)}</td><td>{pool}</td><td>{escape(model)}</td>"
                f"<td>{escape(spec.gpu)}</td><td>{spec.tp}</td>"
                f"<td>{site.reserved.get(model, site.max_replicas(model))}</td>"
                f"<td>{site.max_replicas(model)}</td><td>{mean}</td>"
                f"<td>{escape(site.footprint.cooling.value)}</td></tr>")
    return ("<table><tr><th>site</th><th>GPU pool</th><th>model</th><th>GPU</th><th>TP</th>"
            "<th>reserved replicas</th><th>pool holds</th><th>mean loaded (SLIT)</th>"
            f"<th>cooling</th></tr>{''.join(rows)}</table>")


def _accuracy_table(result: ExperimentResult) -> str:
    acc = result.surrogate_accuracy
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td>{v:.1f}</td>"
        f"<td>{acc.mape_operating_pct.get(k, float('nan')):.1f}</td></tr>"
        for k, v in acc.mape_pct.items())
    return ("<p class=\"note\">Mean absolute percentage error of the serving surrogate on "
            "held-out discrete-event simulations.</p><table><tr><th>target</th>"
            f"<th>MAPE %</th><th>MAPE % (operating range)</th></tr>{rows}</table>")


def _data_gaps_section(result: ExperimentResult) -> list[str]:
    """Data gaps (slit.experiment.gaps): the planner's flagged fallbacks per interval and
    region, short histories, the hours the judge interpolated; nothing when there were none."""
    gaps = result.data_gaps
    rows = gaps.get("planner_fallbacks", [])
    short = gaps.get("short_history", {})
    judged = gaps.get("judge_interpolated", {})
    if not (rows or short or judged):
        return []
    parts = ["<h2>Data gaps</h2>"]
    if rows:
        parts.append("<p>Intervals planned on a fallback forecast (the signal was missing for "
                     "the planner):</p><table><tr><th>interval</th><th>start (UTC)</th>"
                     "<th>region</th><th>signal: method (reason)</th></tr>")
        for row in rows:
            what = ", ".join(f"{g}: {v['method']} ({v['reason']})"
                             for g, v in row["signals"].items())
            parts.append(f"<tr><td>{row['interval']}</td><td>{escape(row['start_utc'])}</td>"
                         f"<td>{escape(row['region'])}</td><td>{escape(what)}</td></tr>")
        parts.append("</table>")
    if short:
        listed = ", ".join(f"{escape(r)} ({min(v['observed_h'].values())} of {v['wanted_h']} h)"
                           for r, v in short.items())
        parts.append(f"<p>Shorter signal history than the forecasters want (missing hours "
                     f"filled from the region's seasonal prior): {listed}.</p>")
    if judged:
        listed = "; ".join(f"{escape(r)} {escape(g)}: {v['hours']} h from "
                           f"{escape(v['first_utc'])}" for r, groups in judged.items()
                           for g, v in groups.items())
        parts.append(f"<p>Hours the data lacks, judged on the interpolation between the "
                     f"readings around them: {listed}.</p>")
    return parts

