"""The plan as the stable JSON document of docs/plan.md.

``schema_version`` changes only when a field changes meaning or disappears.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slit.errors import SlitInputError
from slit.experiment.scenario import Scenario
from slit.optimise.problem import OBJECTIVES, evaluate_plans
from slit.plan.interval import ModelPlan
from slit.serving.lifecycle import load_time_s

PLAN_SCHEMA_VERSION = 3
# Schema 2 had ``issued_at`` at the top level; its ``models`` read the same (for --current).
READABLE_SCHEMA_VERSIONS = (2, PLAN_SCHEMA_VERSION)
SHARE_UNITS = 1_000_000  # JSON shares are multiples of 1e-6 that sum to exactly 1


def plan_document(scenario: Scenario, plans: list[ModelPlan],
                  loaded_now: dict[str, dict[str, int]] | None = None) -> dict:
    """The plan as the stable JSON document of docs/plan.md.

    ``loaded_now``: site id -> model -> replicas loaded when the plan is issued (a previous
    plan's ``replicas``); None: nothing loaded (a cold start), so every replica is a load."""
    current = loaded_now or {}
    end = scenario.start_utc + pd.Timedelta(seconds=scenario.interval_s)
    models = [_model_section(scenario, plan, current) for plan in plans]
    pools = []
    for s, site in enumerate(scenario.sites):
        wanted = {m["name"]: m["sites"][s]["replicas"] for m in models}
        used = site.gpus_used(wanted)
        if not site.fits(wanted):  # the per-model plans stay within their reserved shares
            raise SlitInputError(f"plan at {site.region_id}", f"needs {used} GPUs, the pool "
                                 f"has {site.gpus}", "reserve less per model")
        pools.append({"id": site.region_id, "gpus": dict(site.gpus),
                      "gpus_used": {g: int(used.get(g, 0)) for g in site.gpus}})
    pref = scenario.preference
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        # Wall-clock values, apart: everything outside ``timing`` is byte-identical between
        # two plans of the same scenario, seed and interval.
        "timing": {
            "issued_at": pd.Timestamp.now(tz="UTC").floor("s").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "decision_s": [float(plan.decision.decision_s) for plan in plans],  # per model
        },
        "scenario": {"name": scenario.name, "seed": scenario.seed,
                     "data": str(scenario.data_dir) if scenario.data_dir else "embedded"},
        "interval": {"start_utc": iso_utc(scenario.start_utc), "end_utc": iso_utc(end),
                     "seconds": scenario.interval_s},
        "slo": {"ttft_s": scenario.slo_ttft_s, "percentile": scenario.slo_percentile},
        "preference": {"mode": pref.mode, "weights": dict(zip(OBJECTIVES, pref.weights,
                                                              strict=True)),
                       "ttft_cap_s": pref.ttft_cap_s, "minimise": pref.minimise},
        "min_up_s": scenario.min_up_s,
        "pools": pools,
        "models": models,
    }


def _model_section(scenario: Scenario, plan: ModelPlan,
                   current: dict[str, dict[str, int]]) -> dict:
    problem, decision = plan.problem, plan.decision
    ev = evaluate_plans(problem, decision.routing)
    served = scenario.models[scenario.model_names.index(plan.model)]
    origins = []
    for o, origin in enumerate(problem.origin_ids):
        units = integer_weights(decision.routing[o], SHARE_UNITS)
        origins.append({
            "id": origin,
            "forecast_rps": float(problem.demand_rps[o]),
            "routes": {problem.site_ids[s]: units[s] / SHARE_UNITS
                       for s in np.flatnonzero(units)},
        })
    sites = []
    for s, site in enumerate(scenario.sites):
        spec = site.replica_for[plan.model]
        target = int(decision.awake[s])
        now = int(current.get(site.region_id, {}).get(plan.model, 0))
        sites.append({
            "id": site.region_id, "gpu": spec.gpu, "tp": spec.tp,
            "replicas": target, "load": max(0, target - now), "release": max(0, now - target),
            "load_time_s": load_time_s(spec),
            "expected_load_rps": float(ev.load_rps[0, s]),
        })
    front = [
        {**_objectives(decision.front_objectives[i], decision.front_violation_s[i]),
         "chosen": bool(i == decision.chosen)}
        for i in np.argsort(decision.front_objectives[:, 0], kind="stable")
    ]
    return {"name": plan.model, "demand_share": served.demand_share, "sites": sites,
            "origins": origins, "expected": _objectives(decision.objectives,
                                                        decision.slo_violation_s),
            "front": front}


def loaded_from_document(document: dict) -> dict[str, dict[str, int]]:
    """Site id -> model -> replicas of a plan document of schema 2 or 3 (what it had
    loaded)."""
    if document.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise SlitInputError("--current", f"schema_version {document.get('schema_version')!r}",
                             f"give a plan written by this version (schema "
                             f"{PLAN_SCHEMA_VERSION})")
    out: dict[str, dict[str, int]] = {}
    for model in document["models"]:
        for site in model["sites"]:
            out.setdefault(site["id"], {})[model["name"]] = int(site["replicas"])
    return out


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
