"""The plan as the stable JSON document of docs/plan.md, and the state a previous plan leaves.

``schema_version`` changes only when a field changes meaning or disappears.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from slit.errors import SlitInputError
from slit.experiment.scenario import Scenario
from slit.optimise.horizon import HorizonProblem, evaluate_horizon
from slit.optimise.problem import OBJECTIVES, SHARE_EPS
from slit.plan.interval import FleetDecision, LoadedState
from slit.serving.lifecycle import load_time_s

# Schema 4: the decision is SLIT's receding-horizon step (replicas of all models on the pools
# with the lifecycle); ``expected`` is the committed plan (loading included), ``front[].chosen``
# the per-interval search's pick (not necessarily committed), ``timing.decision_s`` one number.
PLAN_SCHEMA_VERSION = 4
# Schema 2 had ``issued_at`` at the top level, schema 3 no ``loaded_since_utc``; their
# ``models[].sites[].replicas`` read the same (for --current).
READABLE_SCHEMA_VERSIONS = (2, 3, PLAN_SCHEMA_VERSION)
SHARE_UNITS = 1_000_000  # JSON shares are multiples of 1e-6 that sum to exactly 1
LOOK_AHEAD_STATUS = "planned, not committed"


def plan_document(decision: FleetDecision) -> dict:
    """The decision as the stable JSON document of docs/plan.md."""
    scenario, problem = decision.scenario, decision.problem
    start = scenario.start_utc
    end = start + pd.Timedelta(seconds=scenario.interval_s)
    committed = decision.replicas[0]
    models = [_model_section(decision, m) for m in range(len(scenario.model_names))]
    pools = []
    for s, site in enumerate(scenario.sites):
        wanted = dict(zip(scenario.model_names, map(int, committed[s]), strict=True))
        used = site.gpus_used(wanted)
        if not site.fits(wanted):  # the horizon search keeps every plan within the pools
            raise RuntimeError(f"plan at {site.region_id} needs {used} GPUs, the pool has "
                               f"{site.gpus}")
        pools.append({"id": site.region_id, "gpus": dict(site.gpus),
                      "gpus_used": {g: int(used.get(g, 0)) for g in site.gpus}})
    state = decision.state
    pref = scenario.preference
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        # Wall-clock values, apart: everything outside ``timing`` is byte-identical between
        # two plans of the same scenario, seed, interval and current plan.
        "timing": {
            "issued_at": pd.Timestamp.now(tz="UTC").floor("s").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "decision_s": float(decision.decision_s),
        },
        "scenario": {"name": scenario.name, "seed": scenario.seed,
                     "data": str(scenario.data_dir) if scenario.data_dir else "embedded"},
        "interval": {"start_utc": iso_utc(start), "end_utc": iso_utc(end),
                     "seconds": scenario.interval_s},
        "slo": {"ttft_s": scenario.slo_ttft_s, "percentile": scenario.slo_percentile},
        "preference": {"mode": pref.mode, "weights": dict(zip(OBJECTIVES, pref.weights,
                                                              strict=True)),
                       "ttft_cap_s": pref.ttft_cap_s, "minimise": pref.minimise},
        "min_up_s": scenario.min_up_s,
        "loaded_now": {
            "source": state.source,
            "plan_start_utc": None if state.current_start_utc is None
            else iso_utc(state.current_start_utc),
        },
        "look_ahead": {
            "intervals": problem.n_steps,
            "starts_utc": [iso_utc(start + pd.Timedelta(seconds=k * scenario.interval_s))
                           for k in range(problem.n_steps)],
            "status": LOOK_AHEAD_STATUS,
        },
        "pools": pools,
        "models": models,
    }


def _model_section(decision: FleetDecision, m: int) -> dict:
    scenario, problem, state = decision.scenario, decision.problem, decision.state
    name = scenario.model_names[m]
    p = problem.steps[0][m]
    routing = decision.routing[0, m]
    replicas = decision.replicas[:, :, m]
    committed = replicas[0]
    load_rps = p.demand_rps @ routing
    # The fewest replicas carrying this interval's routed load within the SLO (the sizing rule):
    # loads beyond them serve a later interval (loading now for a peak to come).
    need = p.awake_for_load(load_rps[None], p.worst_rtt_s(routing[None]))[0]
    loading_kwh = problem.loading_kwh()[:, m]
    start = scenario.start_utc
    origins = []
    for o, origin in enumerate(p.origin_ids):
        units = integer_weights(routing[o], SHARE_UNITS)
        origins.append({
            "id": origin,
            "forecast_rps": float(p.demand_rps[o]),
            "routes": {p.site_ids[s]: units[s] / SHARE_UNITS for s in np.flatnonzero(units)},
        })
    sites = []
    for s, site in enumerate(scenario.sites):
        spec = site.replica_for[name]
        target, now = int(committed[s]), int(state.replicas[s, m])
        load = max(0, target - now)
        since = start if load > 0 else state.loaded_since_utc[s][m] if target > 0 else None
        sites.append({
            "id": site.region_id, "gpu": spec.gpu, "tp": spec.tp,
            "replicas": target, "load": load, "release": max(0, now - target),
            "load_ahead": min(load, max(0, target - int(need[s]))),
            "loaded_since_utc": None if since is None else iso_utc(since),
            "load_time_s": load_time_s(spec),
            "loading_energy_kwh": float(load * loading_kwh[s]),
            "expected_load_rps": float(load_rps[s]),
            "planned_replicas": [int(n) for n in replicas[:, s]],
        })
    search = decision.step.decisions[m]
    front = [
        {**_objectives(search.front_objectives[i], search.front_violation_s[i]),
         "chosen": bool(i == search.chosen)}
        for i in np.argsort(search.front_objectives[:, 0], kind="stable")
    ]
    from_front = bool(np.allclose(routing, search.routing, rtol=0.0, atol=1e-12))
    served = scenario.models[m]
    return {"name": name, "demand_share": served.demand_share, "sites": sites,
            "origins": origins,
            "forecast_rps_ahead": [float(row[m].demand_rps.sum()) for row in problem.steps],
            "expected": _committed_objectives(problem, m, committed, routing),
            "routing_source": "front" if from_front else "horizon",
            "front": front}


def _committed_objectives(problem: HorizonProblem, m: int, replicas: np.ndarray,
                          routing: np.ndarray) -> dict:
    """The committed interval's objectives for model ``m``'s requests under the planning model
    (``evaluate_horizon`` on interval 0 and this model alone: its serving energy on the
    committed replicas plus the energy of loading those loaded now), and the worst routed
    pair's tail TTFT on the committed replicas against the SLO."""
    cut = slice(m, m + 1)
    one = replace(problem, model_names=problem.model_names[cut],
                  steps=(problem.steps[0][cut],), gpu_type=problem.gpu_type[:, cut],
                  gpus_per_replica=problem.gpus_per_replica[:, cut],
                  initial_replicas=problem.initial_replicas[:, cut],
                  initial_up_s=problem.initial_up_s[:, cut],
                  load_time_s=problem.load_time_s[:, cut],
                  loading_power_w=problem.loading_power_w[:, cut])
    ev = evaluate_horizon(one, replicas[None, :, None], routing[None, None])
    p = problem.steps[0][m]
    load = p.demand_rps @ routing
    violation = -np.inf
    for s, table in enumerate(p.tables):
        routed = routing[:, s] > SHARE_EPS
        if not routed.any():
            continue
        _, tail, _ = table.lookup(np.array([load[s]]), np.array([int(replicas[s])]))
        violation = max(violation, float((p.rtt_s[routed, s] + tail[0]).max())
                        - p.planning_slo_ttft_s)
    doc = _objectives(ev.objectives, violation)
    # A site short of capacity (loading replicas carry less) misses the SLO whatever its tail.
    doc["meets_slo"] = bool(doc["meets_slo"] and ev.capacity_shortfall_rps <= 0)
    return doc


def state_from_document(document: dict, scenario: Scenario, at: pd.Timestamp) -> LoadedState:
    """The replicas a previous plan left loaded at ``at`` (its ``replicas``: loading or
    serving), and when the youngest of each (site, model) was loaded: the plan's
    ``loaded_since_utc`` (schema 4), else its interval's start, the latest its replicas can have
    been loaded (so the minimum up-time is never cut short). Refused, one line, when the plan
    is of other sites or models, of a later interval, or holds more than a pool."""
    version = document.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise SlitInputError("--current", f"schema_version {version!r}",
                             f"give a plan written by this version (schema "
                             f"{PLAN_SCHEMA_VERSION})")
    try:
        plan_start = pd.Timestamp(document["interval"]["start_utc"])
        entries = {(site["id"], model["name"]): site for model in document["models"]
                   for site in model["sites"]}
        sites = list(dict.fromkeys(site for site, _ in entries))
        models = [model["name"] for model in document["models"]]
    except (KeyError, TypeError, ValueError) as err:
        raise SlitInputError("--current", f"is not a plan document ({err!s})",
                             "give the JSON file an earlier `slit plan` wrote") from None
    if sorted(sites) != sorted(scenario.site_ids) or sorted(models) != sorted(
            scenario.model_names):
        raise SlitInputError(
            "--current", f"is a plan of sites {' '.join(sites)} and models "
            f"{' '.join(models)}; the scenario has sites {' '.join(scenario.site_ids)} and "
            f"models {' '.join(scenario.model_names)}", "give a plan of this scenario")
    at = pd.Timestamp(at).tz_convert("UTC")
    plan_start = plan_start.tz_convert("UTC") if plan_start.tzinfo else plan_start.tz_localize(
        "UTC")
    if plan_start > at:
        raise SlitInputError("--current", f"is the plan of {iso_utc(plan_start)}, after --at "
                             f"{iso_utc(at)}", "give the plan in force at --at")
    n_s, n_m = len(scenario.sites), len(scenario.model_names)
    replicas = np.zeros((n_s, n_m), dtype=np.int64)
    up_s = np.zeros((n_s, n_m))
    since: list[list[pd.Timestamp | None]] = [[None] * n_m for _ in range(n_s)]
    for s, site_id in enumerate(scenario.site_ids):
        for m, model in enumerate(scenario.model_names):
            entry = entries.get((site_id, model))
            n = _whole(entry.get("replicas", 0) if entry else 0)
            replicas[s, m] = n
            if n == 0:
                continue
            stamp = entry.get("loaded_since_utc") if entry else None
            loaded = _utc(stamp) if stamp else plan_start
            youngest = min(loaded, at)
            since[s][m] = youngest
            up_s[s, m] = (at - youngest).total_seconds()
    for s, site in enumerate(scenario.sites):
        wanted = dict(zip(scenario.model_names, map(int, replicas[s]), strict=True))
        if not site.fits(wanted):
            raise SlitInputError("--current", f"loads {wanted} at {site.region_id}, beyond its "
                                 f"pool {site.gpus}", "give a plan of this scenario's fleet")
    return LoadedState(replicas, up_s, tuple(tuple(row) for row in since), "current plan",
                       plan_start)


def loaded_from_document(document: dict) -> dict[str, dict[str, int]]:
    """Site id -> model -> replicas of a plan document of schema 2, 3 or 4 (what it had
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


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
            or value != int(value):
        raise SlitInputError("--current", f"replicas {value!r} is not a whole count",
                             "give the JSON file an earlier `slit plan` wrote")
    return int(value)


def _utc(text: object) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(str(text))
    except ValueError:
        raise SlitInputError("--current", f"loaded_since_utc {text!r} is not a time",
                             "give the JSON file an earlier `slit plan` wrote") from None
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


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
