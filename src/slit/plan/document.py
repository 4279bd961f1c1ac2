"""The plan as the stable JSON document of docs/plan.md.

``schema_version`` changes only when a field changes meaning or disappears.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slit.experiment.scenario import Scenario
from slit.optimise.metaheuristic import Decision
from slit.optimise.problem import OBJECTIVES, IntervalProblem, evaluate_plans

PLAN_SCHEMA_VERSION = 1
SHARE_UNITS = 1_000_000  # JSON shares are multiples of 1e-6 that sum to exactly 1


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
        "interval": {"start_utc": iso_utc(scenario.start_utc), "end_utc": iso_utc(end),
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


def iso_utc(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _objectives(values: np.ndarray, violation_s: float) -> dict:
    doc: dict = {name: float(v) for name, v in zip(OBJECTIVES, values, strict=True)}
    doc["meets_slo"] = bool(violation_s <= 0)
    # Headroom of the worst routed origin-site pair's tail TTFT under the SLO (negative: over).
    doc["slo_margin_s"] = float(-violation_s) if np.isfinite(violation_s) else None
    return doc
