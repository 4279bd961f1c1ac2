"""The sweep's HTML report: SLIT's savings vs each baseline over the cells, their spread by month
and by variant (box plots), and the worst cells. One self-contained page like the run report."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: draw to memory, never to a window
import matplotlib.pyplot as plt
import pandas as pd

from slit.fileio import write_text_atomically
from slit.report.html import STYLE
from slit.report.plots import _png

# What a saving is measured on; a positive saving means SLIT used less than the baseline.
SAVING_METRICS = {"carbon_kg": "carbon", "water_l": "water", "cost_usd": "energy cost",
                  "energy_kwh": "energy", "preference_score": "preference score"}
WORST_CELLS = 10


def savings(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (done cell, baseline): SLIT's saving in % of the baseline's figure per metric
    ((baseline - slit) / baseline x 100), with SLIT's SLO attainment and the baseline's."""
    done = table[table["status"] == "done"]
    if done.empty:
        return pd.DataFrame()
    keys = ["cell_id", "day", "month", "variant", "slo_ttft_s", "seed"]
    slit = done[done["policy"] == "slit"].set_index("cell_id")
    rows = []
    for _, base in done[done["policy"] != "slit"].iterrows():
        if base["cell_id"] not in slit.index:
            continue
        ours = slit.loc[base["cell_id"]]
        row = {k: base[k] for k in keys}
        row["baseline"] = base["policy"]
        for metric in SAVING_METRICS:
            # Cells written before a metric was recorded (a resumed sweep) have no value: NaN.
            theirs, mine = base.get(metric, float("nan")), ours.get(metric, float("nan"))
            row[f"saving_{metric}_pct"] = ((theirs - mine) / theirs * 100.0
                                           if theirs > 0 else float("nan"))
        row["slit_slo_attainment_pct"] = ours["slo_attainment_pct"]
        row["baseline_slo_attainment_pct"] = base["slo_attainment_pct"]
        rows.append(row)
    return pd.DataFrame(rows)


def _box_figure(frame: pd.DataFrame, by: str, metric: str, title: str) -> bytes:
    baselines = sorted(frame["baseline"].unique())
    groups = sorted(frame[by].unique())
    fig, axes = plt.subplots(1, len(baselines), figsize=(4.2 * len(baselines), 3.6),
                             squeeze=False, sharey=True)
    for ax, baseline in zip(axes[0], baselines, strict=True):
        sub = frame[frame["baseline"] == baseline]
        data = [sub.loc[sub[by] == g, metric].dropna().to_numpy() for g in groups]
        ax.boxplot(data, tick_labels=[str(g) for g in groups], showmeans=True)
        ax.axhline(0.0, color="#999", lw=0.8)
        ax.set_title(f"vs {baseline}", fontsize=10)
        ax.set_xlabel(by)
        ax.tick_params(axis="x", rotation=45 if len(groups) > 4 else 0)
    axes[0][0].set_ylabel(f"SLIT saving, % ({title})")
    fig.tight_layout()
    return _png(fig)


def render_sweep_html(name: str, table: pd.DataFrame) -> str:
    """The report page of a sweep's ``table``."""
    frame = savings(table)
    cells = table["cell_id"].nunique() if not table.empty else 0
    failed = table[table["status"] == "failed"] if not table.empty else table
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>SLIT sweep: {escape(name)}</title><style>{STYLE}</style></head><body>",
             f"<h1>SLIT sweep: {escape(name)}</h1>",
             f'<p class="note">{cells} cells, {len(failed)} failed. A saving is (baseline - '
             "SLIT) / baseline x 100 over the whole cell: positive means SLIT used less. Boxes: "
             "quartiles, whiskers 1.5 IQR, triangle the mean.</p>"]
    codes = _cells_by_code(table)
    if len(codes) > 1:  # a resume after the code changed: say so where the figures are read
        listed = ", ".join(f"{escape(code)}: {n}" for code, n in codes.items())
        parts.append(f'<p class="note">Cells come from {len(codes)} versions of slit\'s code '
                     f"(cells per version: {listed}); compare within one version.</p>")
    if frame.empty:
        parts.append("<p>No cell finished.</p>")
    else:
        parts += ["<h2>Median saving per baseline</h2>", _median_table(frame)]
        for metric, label in SAVING_METRICS.items():
            column = f"saving_{metric}_pct"
            for by in ("month", "variant"):
                if frame[by].nunique() < 1:
                    continue
                png = base64.b64encode(_box_figure(frame, by, column, label)).decode("ascii")
                parts += [f"<h2>{escape(label.capitalize())} saving by {by}</h2>",
                          f'<figure><img src="data:image/png;base64,{png}" '
                          f'alt="{escape(label)} saving by {by}"></figure>']
        parts += [f"<h2>Worst cells (lowest carbon saving, {WORST_CELLS} at most)</h2>",
                  _worst_table(frame)]
    if len(failed):
        parts += ["<h2>Failed cells</h2>", _table(failed[["cell_id", "error"]])]
    parts += ["</body></html>", ""]
    return "\n".join(parts)


def _cells_by_code(table: pd.DataFrame) -> dict[str, int]:
    """Cells per code version (``not recorded`` for rows written before rows carried it)."""
    if table.empty:
        return {}
    code = (table["code"].astype("string") if "code" in table
            else pd.Series(pd.NA, index=table.index, dtype="string"))
    per_cell = code.fillna("not recorded").groupby(table["cell_id"]).first()
    return {str(k): int(v) for k, v in per_cell.value_counts().sort_index().items()}


def write_sweep_report(path: Path, name: str, table: pd.DataFrame) -> None:
    write_text_atomically(path, render_sweep_html(name, table))


def _median_table(frame: pd.DataFrame) -> str:
    columns = [f"saving_{m}_pct" for m in SAVING_METRICS]
    med = frame.groupby("baseline")[columns].median().round(1)
    med.columns = [f"{SAVING_METRICS[m]} %" for m in SAVING_METRICS]
    return _table(med.reset_index())


def _worst_table(frame: pd.DataFrame) -> str:
    worst = frame.sort_values("saving_carbon_kg_pct").head(WORST_CELLS)
    keep = ["cell_id", "baseline", *[f"saving_{m}_pct" for m in SAVING_METRICS],
            "slit_slo_attainment_pct", "baseline_slo_attainment_pct"]
    return _table(worst[keep].round(2))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
