"""Demand beyond the fleet (issue 13): intervals where the forecast demand exceeds what the
fleet can serve within the SLO, which origins go short and by how much.

Per interval, on what the planner knows at its start (forecast demand per origin and model,
the outages, derates and partitions active then), a linear program (HiGHS through
``scipy.optimize.linprog``) routes as much of the demand as the fleet carries within the SLO:
``x[m, o, s]`` requests per second of model m from origin o served at site s, where origin o may
use site s only if the round trip leaves room in the SLO (the planner's reachability rule), its
pins allow it and no partition cuts it; each replica carries at most its SLO capacity for that
origin's round trip (``SiteServingTable.slo_capacity_rps`` with the SLO less the round trip),
and the replicas the load needs are bounded by the site's GPUs of each type (times the known
derate) and, per model, by the replicas its planner may load (the model's serving table: its
reserved share of the pool, as long as each model is planned on its own share). Replicas are
fractional here, so the bound is optimistic: a shortfall it finds is certain. The unmet demand
of an origin is its demand less what the program routes; when several origins compete for the
same sites the split among them is one of the optimal ones.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from slit.experiment.events import known_gpu_fraction, known_reachable
from slit.experiment.scenario import Scenario

# Report an interval when the unmet demand exceeds this share of its demand: below it, the
# Poisson noise around the forecast and the planning margin absorb the difference.
REPORT_SHARE = 0.01
# Origins listed per interval (largest shortfall first).
TOP_ORIGINS = 5


@dataclass(frozen=True)
class Shortfall:
    """One interval whose forecast demand the fleet cannot serve within the SLO."""

    interval: int
    start_utc: str
    demand_rps: float
    unmet_rps: float
    unmet_pct: float
    unmet_rps_by_origin: dict[str, float]  # the origins that go short, largest first

    def as_dict(self) -> dict:
        return asdict(self)


def per_replica_capacity_rps(scenario: Scenario, prepared_by_model: list, rtt_s: np.ndarray
                             ) -> np.ndarray:
    """[M, O, S] requests per second one replica of model m at site s carries with its SLO
    percentile of TTFT within the SLO less origin o's round trip (0: not reachable)."""
    n_m, (n_o, n_s) = len(prepared_by_model), rtt_s.shape
    out = np.zeros((n_m, n_o, n_s))
    for m, prepared in enumerate(prepared_by_model):
        for s, table in enumerate(prepared.tables):
            targets = scenario.planning_slo_ttft_s - rtt_s[:, s]
            for target in np.unique(targets):
                if target <= 0.0:
                    continue
                total = table.slo_capacity_rps(float(target))
                out[m, targets == target, s] = total[-1] / table.installed
    return out


def fleet_shortfalls(scenario: Scenario, prepared_by_model: list) -> list[Shortfall]:
    """The intervals whose forecast demand exceeds what the fleet serves within the SLO (see the
    module's account), in time order. ``prepared_by_model``: ``run.prepare`` of each model's
    view, in ``scenario.model_names`` order."""
    first = prepared_by_model[0]
    origins, site_ids = tuple(scenario.demand.origins), scenario.site_ids
    rtt_s = first.rtt_s
    capacity = per_replica_capacity_rps(scenario, prepared_by_model, rtt_s)
    installed = np.array([[table.installed for table in p.tables] for p in prepared_by_model])
    names = scenario.model_names
    out = []
    for k in range(scenario.n_intervals):
        t = scenario.start_utc + pd.Timedelta(seconds=k * scenario.interval_s)
        demand = np.stack([p.demand_forecaster.predict_next(p.counts[:k]) / scenario.interval_s
                           for p in prepared_by_model])  # [M, O]
        fraction = known_gpu_fraction(scenario.events, site_ids, t)
        usable = known_reachable(scenario.events, origins, site_ids, t) & first.pinned
        unmet = _unmet_rps(scenario, names, demand, capacity, installed, usable, fraction)
        total = float(demand.sum())
        short = float(unmet.sum())
        if total > 0 and short > REPORT_SHARE * total:
            order = np.argsort(-unmet)
            worst = {origins[o]: round(float(unmet[o]), 3) for o in order[:TOP_ORIGINS]
                     if unmet[o] > 1e-6}
            out.append(Shortfall(k, str(t), round(total, 3), round(short, 3),
                                 round(100.0 * short / total, 2), worst))
    return out


def _unmet_rps(scenario: Scenario, names: tuple[str, ...], demand: np.ndarray,
               capacity: np.ndarray, installed: np.ndarray, usable: np.ndarray,
               fraction: np.ndarray) -> np.ndarray:
    """[O] demand the fleet cannot route within the SLO (the LP of the module's account)."""
    n_m, n_o, n_s = capacity.shape
    pairs = [(m, o, s) for m in range(n_m) for o in range(n_o) for s in range(n_s)
             if usable[o, s] and capacity[m, o, s] > 0 and fraction[s] > 0 and demand[m, o] > 0]
    unmet = demand.sum(axis=0).astype(float)
    if not pairs:
        return unmet
    n_x = len(pairs)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    bounds: list[float] = []
    # Each (model, origin) serves at most its demand.
    demand_row: dict[tuple[int, int], int] = {}
    for i, (m, o, _) in enumerate(pairs):
        r = demand_row.setdefault((m, o), len(demand_row))
        rows.append(r)
        cols.append(i)
        vals.append(1.0)
    bounds += [float(demand[m, o]) for (m, o) in demand_row]
    # Replicas of each model at each site: at most what its planner may load (the installed
    # replicas of the model's serving table: its reserved share of the pool).
    replica_row: dict[tuple[int, int], int] = {}
    for i, (m, o, s) in enumerate(pairs):
        if (m, s) not in replica_row:
            replica_row[(m, s)] = len(bounds)
            bounds.append(float(installed[m, s]))
        rows.append(replica_row[(m, s)])
        cols.append(i)
        vals.append(1.0 / capacity[m, o, s])
    # GPUs of each type at each site: replicas the load needs x their GPUs.
    gpu_row: dict[tuple[int, str], int] = {}
    for i, (m, o, s) in enumerate(pairs):
        spec = scenario.sites[s].replica_for[names[m]]
        key = (s, spec.gpu)
        if key not in gpu_row:
            gpu_row[key] = len(bounds)
            bounds.append(float(np.floor(scenario.sites[s].gpus.get(spec.gpu, 0) * fraction[s]
                                         + 1e-9)))
        rows.append(gpu_row[key])
        cols.append(i)
        vals.append(spec.tp / capacity[m, o, s])
    a_ub = np.zeros((len(bounds), n_x))
    np.add.at(a_ub, (np.array(rows), np.array(cols)), np.array(vals))
    result = linprog(-np.ones(n_x), A_ub=a_ub, b_ub=np.array(bounds), bounds=(0, None),
                     method="highs")
    if result.status != 0:  # cannot happen for a bounded feasible LP; never hide it
        raise RuntimeError(f"fleet capacity LP failed: {result.message}")
    served = np.zeros(n_o)
    for i, (_, o, _) in enumerate(pairs):
        served[o] += result.x[i]
    return np.maximum(unmet - served, 0.0)


def shortfall_warning(shortfalls: list[Shortfall], n_intervals: int) -> str | None:
    """One line for the run's output, or None when the fleet is large enough."""
    if not shortfalls:
        return None
    worst = max(shortfalls, key=lambda s: s.unmet_pct)
    origins = ", ".join(worst.unmet_rps_by_origin)
    return (f"warning: forecast demand exceeds what the fleet serves within the SLO in "
            f"{len(shortfalls)} of {n_intervals} intervals; worst: interval {worst.interval} "
            f"({worst.start_utc}), {worst.unmet_rps:g} of {worst.demand_rps:g} req/s "
            f"({worst.unmet_pct:g} %) unmet, short origins: {origins} (results.json: "
            f"shortfalls)")


def check_fleet_capacity(scenario: Scenario, prepared_by_model: list) -> list[Shortfall]:
    """The shortfalls of a run, with the warning line printed to stderr when there are any (the
    one call ``run_experiment`` makes)."""
    shortfalls = fleet_shortfalls(scenario, prepared_by_model)
    line = shortfall_warning(shortfalls, scenario.n_intervals)
    if line is not None:
        print(line, file=sys.stderr)
    return shortfalls
