"""The results folder of a run: report.html, the PNGs and results.json, written all or nothing.

Everything is built in a temporary folder beside the target and renamed into place at the end,
so a run that fails leaves neither a half-written folder nor a temporary one behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from slit.errors import SlitInputError
from slit.experiment.run import ExperimentResult
from slit.fileio import can_create_in
from slit.report.faults import faults_document
from slit.report.html import render_html
from slit.report.plots import FIGURES
from slit.report.table import dominating, reductions_vs, result_scores, write_json

REPORT_FILE = "report.html"
RESULTS_FILE = "results.json"
# What a results folder holds; an existing folder with anything else is not replaced.
OWN_FILES = frozenset({REPORT_FILE, RESULTS_FILE} | {spec.file for spec in FIGURES})


def results_document(result: ExperimentResult) -> dict:
    """The machine-readable results: scenario, per-policy figures, comparisons, accuracy, the
    data gaps (flagged fallbacks), and, apart in ``timing``, the wall-clock decision times."""
    sc = result.scenario
    metrics = result.metrics
    doc: dict = {
        "scenario": {"name": sc.name, "start_utc": str(sc.start_utc), "hours": sc.hours,
                     "interval_s": sc.interval_s, "seed": sc.seed,
                     "global_rate_rps": sc.demand.global_rate_rps,
                     "slo_ttft_s": sc.slo_ttft_s, "slo_percentile": sc.slo_percentile,
                     "sites": list(sc.site_ids), "origins": list(sc.demand.origins),
                     "models": {m.name: m.demand_share for m in sc.models},
                     "min_up_s": sc.min_up_s,
                     "data_dir": str(sc.data_dir) if sc.data_dir else None},
        "policies": {p: m.as_dict() for p, m in metrics.items()},
        "surrogate_mape_pct": result.surrogate_accuracy.mape_pct,
        "surrogate_mape_operating_pct": result.surrogate_accuracy.mape_operating_pct,
    }
    doc.update(faults_document(result))
    scores = result_scores(result)
    if scores and result.preference_scales is not None:
        # One normalisation for every policy: the forecast problems' scales.
        doc["preference"] = {"mode": sc.preference.mode,
                             "weights": list(sc.preference.effective_weights),
                             "scales": [float(x) for x in result.preference_scales]}
        # Beside "policies" (whose entries are PolicyMetrics fields, read back as such).
        doc["preference_score"] = scores
        if "slit" in scores:
            doc["slit_score_better_than_pct"] = {
                p: 100.0 * (v - scores["slit"]) / abs(v) if v else float("nan")
                for p, v in scores.items() if p != "slit"}
    if result.model_metrics:
        doc["models"] = {p: {m: mm.as_dict() for m, mm in by_model.items()}
                         for p, by_model in result.model_metrics.items()}
    if result.fleet_plans:
        doc["failovers"] = {p: [{"interval": f.k, "at_s": f.at_s} for f in plan.failovers]
                            for p, plan in result.fleet_plans.items() if plan.failovers}
    if result.data_gaps:
        doc["data_gaps"] = result.data_gaps
    # Wall-clock values, the only part of the document that differs between two runs of the
    # same scenario and seed: everything outside ``timing`` is byte-identical.
    timing: dict = {"decision_s": {p: [float(x) for x in plan.decision_s]
                                   for p, plan in result.plans.items()}}
    if result.decision_s:
        timing["median_decision_s"] = sorted(result.decision_s)[len(result.decision_s) // 2]
    decision = {p: float(np.median(plan.decision_s)) for p, plan in result.plans.items()
                if len(plan.decision_s)}
    if decision:
        timing["median_decision_s_by_policy"] = decision
    doc["timing"] = timing
    if "slit" in metrics:
        doc["slit_dominated_by"] = dominating(metrics, "slit")
        if "latency_first" in metrics:
            doc["slit_vs_latency_first_reduction_pct"] = reductions_vs(
                metrics, "slit", "latency_first")
    return doc


def check_out_dir(out_dir: Path, option: str = "--out") -> Path:
    """Refuse, before any work is done, a target the run could not (or must not) replace."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SlitInputError(f"{option} {out_dir}", "is a file, not a folder",
                             "give a folder for the report and results")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OWN_FILES)
        if foreign:
            raise SlitInputError(f"{option} {out_dir}", f"holds other files ({foreign[0]}, ...)"
                                 , "give a new or empty folder, or an earlier results folder")
    # The folder is built beside its target and renamed into place: the nearest existing
    # ancestor of the target must be a folder the user can create entries in.
    parent = out_dir.resolve().parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise SlitInputError(f"{option} {out_dir}", f"{folder} is a file",
                                     "give a folder path under a folder")
            if not can_create_in(folder):
                raise SlitInputError(f"{option} {out_dir}", f"folder {folder} is not writable",
                                     "give a path in a folder you can write to")
            break
    return out_dir


def write_results_dir(out_dir: Path, result: ExperimentResult) -> list[Path]:
    """Write the report, figures and results.json to ``out_dir`` (replacing an earlier results
    folder there); returns the files written."""
    out_dir = check_out_dir(Path(out_dir))
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    try:
        # mkdtemp makes it private; results are for sharing, as far as the umask allows.
        staging.chmod(0o777 & ~_umask())
        figures = []
        for spec in FIGURES:
            png = spec.draw(result)
            (staging / spec.file).write_bytes(png)
            figures.append((spec, png))
        (staging / REPORT_FILE).write_text(render_html(result, figures), encoding="utf-8")
        write_json(staging / RESULTS_FILE, results_document(result))
        _swap_in(staging, out_dir.resolve())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out_dir / name for name in (REPORT_FILE, RESULTS_FILE, *(s.file for s in FIGURES))]


def _umask() -> int:
    mask = os.umask(0)  # the umask can only be read by setting it; set it straight back
    os.umask(mask)
    return mask


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an earlier results folder is moved aside first and
    deleted only once the new one is in place."""
    if not target.exists():
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
