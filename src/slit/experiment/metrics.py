"""The figures a run reports per policy, from simulation results and site footprints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from slit.footprint.grid_water import ewif_l_per_kwh
from slit.simulate.site import SiteSimResult


@dataclass(frozen=True, slots=True)
class PolicyMetrics:
    requests: int
    completed: int
    refused: int  # prompts longer than the replica's context, refused as vLLM does
    preemptions: int  # KV-cache recompute preemptions (a request may count several times)
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    ttft_mean_s: float
    slo_attainment_pct: float  # requests with TTFT (incl. network) within the SLO
    tpot_mean_s: float
    it_energy_kwh: float
    energy_kwh: float  # facility energy
    carbon_kg: float
    water_onsite_l: float
    water_offsite_l: float
    water_l: float
    # The same facility energy charged with hydro-reservoir evaporation in the grid's water
    # intensity (the other convention of docs/footprint.md); plans are made on ``water_l``.
    water_offsite_with_hydro_l: float
    water_with_hydro_l: float
    cost_usd: float
    wh_per_request: float
    g_co2_per_request: float
    ml_water_per_request: float
    # Replica lifecycle (set by the judge): IT energy drawn while loading (churn), replicas
    # loaded and released, arrivals that found no serving replica while one was loading.
    loading_energy_kwh: float = 0.0
    loads: int = 0
    releases: int = 0
    load_delayed_requests: int = 0
    # Overload and faults: served = completed; ``late`` of them after the SLO; ``shed`` rejected
    # on arrival by a site's admission control; ``handed_off`` lost their replica to an outage or
    # derate and were re-dispatched; ``redirected`` found their site down or cut off on arrival
    # and went to its fallback; ``rejected`` had no site to go to; ``in_flight`` were still in a
    # site at the end. Lost = rejected + in flight.
    late: int = 0
    shed: int = 0
    handed_off: int = 0
    redirected: int = 0
    rejected: int = 0
    in_flight: int = 0

    @property
    def served(self) -> int:
        return self.completed

    @property
    def lost(self) -> int:
        return self.rejected + self.in_flight

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def policy_metrics(sims: list[SiteSimResult], site_hourly: pd.DataFrame,
                   slo_ttft_s: float, rejected: int = 0) -> PolicyMetrics:
    """Aggregate one policy's site simulations and footprints; ``rejected``: requests that had
    no site to go to (on arrival or at a hand-off). A request handed off from one site to
    another is one request, counted once."""
    ttft = np.concatenate([r.ttft_with_network_s[r.completed] for r in sims])
    tpot = np.concatenate([r.tpot_s[r.completed] for r in sims])
    handed = int(sum(r.n_handed_off for r in sims))
    # Every hand-off reappears as a row at its fallback or is rejected (the judge checks it).
    requests = int(sum(len(r.ttft_s) for r in sims)) - handed + rejected
    completed = int(sum(r.completed.sum() for r in sims))
    summary = TtftSummary(
        p50_s=_pct(ttft, 50), p95_s=_pct(ttft, 95), p99_s=_pct(ttft, 99),
        mean_s=float(ttft.mean()) if len(ttft) else float("nan"),
        within_slo=int((ttft <= slo_ttft_s).sum()), late=int((ttft > slo_ttft_s).sum()))
    return metrics_from_parts(
        summary, float(np.nanmean(tpot)) if len(tpot) else float("nan"), site_hourly,
        requests=requests, completed=completed, refused=int(sum(r.n_refused for r in sims)),
        preemptions=int(sum(r.n_preemptions for r in sims)),
        shed=int(sum(r.n_shed for r in sims)), handed_off=handed, rejected=int(rejected),
        in_flight=int(sum(r.n_in_flight for r in sims)))


@dataclass(frozen=True, slots=True)
class TtftSummary:
    """What the metrics read of the TTFTs (with network) of the completed requests."""

    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float
    within_slo: int
    late: int


def metrics_from_parts(ttft: TtftSummary, tpot_mean_s: float, site_hourly: pd.DataFrame, *,
                       requests: int, completed: int, refused: int, preemptions: int, shed: int,
                       handed_off: int, rejected: int, in_flight: int) -> PolicyMetrics:
    """``PolicyMetrics`` from request counts, the TTFT summary and the footprints (the streaming
    judge reduces its requests to these as they finish, ``policy_metrics`` from whole arrays)."""
    totals = site_hourly[["it_energy_kwh", "facility_energy_kwh", "carbon_kg", "water_onsite_l",
                          "water_offsite_l", "cost_usd"]].sum()
    water = float(totals["water_onsite_l"] + totals["water_offsite_l"])
    facility_by_site = site_hourly.groupby("site")["facility_energy_kwh"].sum()
    offsite_with_hydro = float(sum(
        kwh * ewif_l_per_kwh(str(site), include_hydro_reservoir=True)
        for site, kwh in facility_by_site.items()))
    # Requests still in flight at the end, shed or rejected count as missing the SLO.
    met = float(ttft.within_slo) / max(requests, 1)
    per_request = max(completed, 1)
    return PolicyMetrics(
        requests=requests,
        completed=completed,
        refused=refused,
        preemptions=preemptions,
        ttft_p50_s=ttft.p50_s,
        ttft_p95_s=ttft.p95_s,
        ttft_p99_s=ttft.p99_s,
        ttft_mean_s=ttft.mean_s,
        slo_attainment_pct=100.0 * met,
        tpot_mean_s=tpot_mean_s,
        it_energy_kwh=float(totals["it_energy_kwh"]),
        energy_kwh=float(totals["facility_energy_kwh"]),
        carbon_kg=float(totals["carbon_kg"]),
        water_onsite_l=float(totals["water_onsite_l"]),
        water_offsite_l=float(totals["water_offsite_l"]),
        water_l=water,
        water_offsite_with_hydro_l=offsite_with_hydro,
        water_with_hydro_l=float(totals["water_onsite_l"]) + offsite_with_hydro,
        cost_usd=float(totals["cost_usd"]),
        wh_per_request=1e3 * float(totals["facility_energy_kwh"]) / per_request,
        g_co2_per_request=1e3 * float(totals["carbon_kg"]) / per_request,
        ml_water_per_request=1e3 * water / per_request,
        late=ttft.late,
        shed=shed,
        handed_off=handed_off,
        rejected=rejected,
        in_flight=in_flight,
    )


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")
