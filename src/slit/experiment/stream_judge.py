"""The judge of a large day in bounded memory: arrivals streamed one planning interval at a time.

``run.judge_plans`` builds each (site, model)'s requests for the whole day and simulates them in
one call: memory grows with the day (the requests, the per-request results). Here, per policy and
model, interval k's requests are drawn (``RequestStream``: the same requests, bit for bit), routed
with the same uniform numbers and fallback draws (each drawn in sequence, chunk after chunk, as
the whole-day judge draws them at once), and fed to every site's ``SiteStream``, which carries
the requests still in the site to the next interval and hands back those that left. Those are
reduced at once to what the metrics read:

- counts (completed, refused, shed, handed off, in flight), exact;
- TTFT with network of each completed request as one float32 (4 bytes a request: the only
  per-request state kept; the percentiles and the CDF sample need the order statistics, and a
  float32 is within 6e-8 relative of the float64, far below what is reported), plus its float64
  sum and the count within the SLO (exact, compared in float64 as they finish);
- TPOT as a float64 sum and count;
- energy per interval from each site's bins at its end, exactly as the whole-day judge.

Peak memory: one interval's requests and per-request results, the requests in the sites, and
4 bytes per completed request of the policy being judged (8 at its end, when a two-model run
concatenates its models' TTFTs). A model whose plan loses capacity at a site (an outage or a
derate: requests handed off between sites, which the whole-day judge orders site by site over
the whole day) is judged by the whole-day judge on the streamed requests joined into one batch.
Site simulations run here one after the other (no Ray tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from slit.experiment import run
from slit.experiment.metrics import PolicyMetrics, TtftSummary, metrics_from_parts
from slit.experiment.scenario import Scenario
from slit.simulate.site import SiteOutcomes, SiteSimResult, SiteStream, SiteTotals
from slit.workload.requests import RequestBatch
from slit.workload.stream import RequestStream


@dataclass
class _Reduction:
    """One model's requests under one policy, reduced as they leave the sites."""

    slo_s: float
    rows: int = 0  # requests at the sites (a hand-off counts at each site it reaches)
    completed: int = 0
    refused: int = 0
    shed: int = 0
    handed_off: int = 0
    in_flight: int = 0
    preemptions: int = 0
    loads: int = 0
    load_delayed: int = 0
    within_slo: int = 0
    late: int = 0
    ttft_sum_s: float = 0.0
    tpot_sum_s: float = 0.0
    tpot_n: int = 0
    ttft32: list[np.ndarray] = field(default_factory=list)
    hourly_kwh: list[np.ndarray] = field(default_factory=list)  # per site
    loading_j: list[float] = field(default_factory=list)  # per site, in site order

    def add(self, out: SiteOutcomes | SiteSimResult) -> None:
        done = out.completed
        ttft = out.ttft_with_network_s[done]
        self.rows += len(out.ttft_s)
        self.completed += int(done.sum())
        self.refused += int(0 if out.refused is None else out.refused.sum())
        self.shed += int(0 if out.shed is None else out.shed.sum())
        self.handed_off += int(0 if out.handed_off is None else out.handed_off.sum())
        self.within_slo += int((ttft <= self.slo_s).sum())
        self.late += int((ttft > self.slo_s).sum())
        self.ttft_sum_s += float(ttft.sum())
        tpot = out.tpot_s[done]
        self.tpot_sum_s += float(np.nansum(tpot))
        self.tpot_n += int((~np.isnan(tpot)).sum())
        self.ttft32.append(ttft.astype(np.float32))

    def add_totals(self, totals: SiteTotals | SiteSimResult, in_flight: int,
                   scenario: Scenario) -> None:
        self.in_flight += in_flight
        self.preemptions += totals.n_preemptions
        self.loads += totals.n_loads
        self.load_delayed += totals.n_load_delayed
        loading = totals.loading_energy_j_per_interval
        self.loading_j.append(0.0 if loading is None else loading.sum())
        self.hourly_kwh.append(run.hourly_energy_kwh(totals.it_energy_j_per_interval,
                                                     totals.interval_s, scenario))

    def ttft(self) -> np.ndarray:
        """The completed requests' TTFTs (float32), sorted; the parts are dropped."""
        joined = self.ttft32[0] if len(self.ttft32) == 1 else np.concatenate(self.ttft32)
        self.ttft32 = [joined]
        joined.sort()
        return joined


def _pct_sorted(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear) of sorted values, in float64."""
    n = len(values)
    if not n:
        return float("nan")
    index = q / 100.0 * (n - 1)
    lo = int(np.floor(index))
    hi = min(lo + 1, n - 1)
    t = index - lo
    a, b = float(values[lo]), float(values[hi])
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t)


def _metrics(parts: list[_Reduction], ttft_sorted: np.ndarray, site_hourly: pd.DataFrame,
             rejected: int) -> PolicyMetrics:
    completed = sum(p.completed for p in parts)
    handed = sum(p.handed_off for p in parts)
    tpot_n = sum(p.tpot_n for p in parts)
    summary = TtftSummary(
        p50_s=_pct_sorted(ttft_sorted, 50), p95_s=_pct_sorted(ttft_sorted, 95),
        p99_s=_pct_sorted(ttft_sorted, 99),
        mean_s=sum(p.ttft_sum_s for p in parts) / completed if completed else float("nan"),
        within_slo=sum(p.within_slo for p in parts), late=sum(p.late for p in parts))
    return metrics_from_parts(
        summary, sum(p.tpot_sum_s for p in parts) / tpot_n if tpot_n else float("nan"),
        site_hourly, requests=sum(p.rows for p in parts) - handed + rejected,
        completed=completed, refused=sum(p.refused for p in parts),
        preemptions=sum(p.preemptions for p in parts), shed=sum(p.shed for p in parts),
        handed_off=handed, rejected=rejected, in_flight=sum(p.in_flight for p in parts))


def _sample(ttft_sorted: np.ndarray) -> np.ndarray:
    """``run._ttft_sample`` of already sorted TTFTs."""
    if len(ttft_sorted) <= run.TTFT_SAMPLE:
        return ttft_sorted.astype(np.float64)
    pick = np.linspace(0, len(ttft_sorted) - 1, run.TTFT_SAMPLE).round().astype(np.int64)
    return ttft_sorted[pick].astype(np.float64)


def judge_model_streaming(scenario: Scenario, prepared: run.Prepared, plan: run.FleetPlan,
                          m: int, policy: str, reduction: _Reduction) -> run.ModelFaults:
    """Model ``m`` under one policy's plan, interval by interval (``run.judge_model``'s
    routing, redirects and site simulations), reduced into ``reduction``."""
    stream = prepared.stream
    assert stream is not None
    view = run.plan_view(scenario, prepared, plan, m)
    uniform_rng = np.random.default_rng(np.random.SeedSequence(prepared.scenario.seed)
                                        .spawn(2)[1])
    n_s = len(scenario.sites)
    if any((view.fraction[:, s] < 1.0).any() for s in range(n_s)):
        return _judge_whole(scenario, prepared, plan, m, policy, reduction, stream, uniform_rng)
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 13, m]))
    sites = []
    for s in range(n_s):
        job = run.site_job(scenario, replace(prepared, requests=RequestBatch.concat([])), plan,
                           m, np.zeros(0, np.int16), policy, view, s)
        sites.append(SiteStream(job.config, job.schedule, run.AWAKE_BIN_S, job.seed, None,
                                job.capacity, job.shed_wait_s))
    faults = run.ModelFaults()
    fed = np.zeros(n_s, np.int64)
    t_stop = 0.0
    for c in range(stream.n_chunks):
        batch = stream.chunk(c)
        uniform = uniform_rng.random(len(batch))
        site_of = run.route_requests(batch, view.routing, scenario.interval_s, uniform,
                                     starts_s=view.starts_s)
        redirected = run.redirect_unavailable(view, batch, site_of, rng)
        faults = replace(faults, redirected=faults.redirected + redirected.redirected,
                         rejected=faults.rejected + redirected.rejected)
        t_stop = max((c + 1) * stream.chunk_s,
                     float(np.nextafter(batch.arrival_s[-1], np.inf)) if len(batch) else 0.0)
        for s, site in enumerate(sites):
            own = batch.take(site_of == s)
            fed[s] += len(own)
            reduction.add(site.feed(own, t_stop, prepared.rtt_s[own.origin, s]))
        del batch, uniform, site_of
    for s, site in enumerate(sites):
        rest, totals = site.finish()
        reduction.add(rest)
        in_flight = int((rest.arrived & ~rest.completed & ~rest.refused & ~rest.handed_off
                         & ~rest.shed).sum())
        if totals.kernel_in_site != in_flight or not rest.arrived.all():
            raise RuntimeError(f"{policy}: {scenario.sites[s].region_id} / "
                               f"{scenario.model_names[m]}: {in_flight} in flight by the rows, "
                               f"{totals.kernel_in_site} by the event loop (of {fed[s]} fed)")
        reduction.add_totals(totals, in_flight, scenario)
    # Every request of the model is accounted for once over the fleet (run.check_conservation).
    n_requests = stream.n_requests
    ok = (reduction.rows + faults.rejected == n_requests
          and n_requests == reduction.completed + reduction.refused + reduction.shed
          + reduction.in_flight + faults.rejected and reduction.handed_off == 0)
    if not ok:
        raise RuntimeError(f"{policy} / {scenario.model_names[m]}: requests not conserved: "
                           f"{n_requests} requests, {reduction.rows} at sites, "
                           f"{reduction.completed} completed, {faults.rejected} rejected")
    return faults


def _judge_whole(scenario: Scenario, prepared: run.Prepared, plan: run.FleetPlan, m: int,
                 policy: str, reduction: _Reduction, stream: RequestStream,
                 uniform_rng: np.random.Generator) -> run.ModelFaults:
    """A plan with capacity losses: the whole-day judge on the streamed requests."""
    requests = RequestBatch.concat([])
    parts = [stream.chunk(c) for c in range(stream.n_chunks)]
    if parts:
        requests = RequestBatch(*(np.concatenate([getattr(b, name) for b in parts])
                                  for name in ("arrival_s", "prompt_tokens", "output_tokens",
                                               "origin")))
    del parts
    whole = replace(prepared, requests=requests)
    sims, faults = run.judge_model(scenario, whole, plan, m, uniform_rng.random(len(requests)),
                                   policy)
    for sim in sims:
        reduction.add(sim)
        reduction.add_totals(sim, sim.n_in_flight, scenario)
    return faults


def judge_plans_streaming(scenario: Scenario, prepared_by_model: list[run.Prepared],
                          fleet: dict[str, run.FleetPlan],
                          progress: Callable[[str, int, int], None] | None = None
                          ) -> run.ExperimentResult:
    """``run.judge_plans`` with every model's requests streamed (``Prepared.stream``)."""
    report = progress or (lambda stage, done, total: None)
    for policy, plan in fleet.items():
        run.check_fleet_plan(scenario, policy, plan)
    actual = prepared_by_model[0].actual
    metrics: dict[str, PolicyMetrics] = {}
    site_hourly: dict[str, pd.DataFrame] = {}
    ttft: dict[str, np.ndarray] = {}
    by_model: dict[str, dict[str, PolicyMetrics]] = {}
    for p_index, (policy, plan) in enumerate(fleet.items()):
        reductions: dict[str, _Reduction] = {}
        rejected_by_model: dict[str, int] = {}
        rejected = redirected = releases = 0
        energy_by_site = [np.zeros(0) for _ in scenario.sites]
        for m, (model, prepared) in enumerate(zip(scenario.model_names, prepared_by_model,
                                                  strict=True)):
            loaded_m = plan.replicas[:, :, m].astype(np.int64)
            releases += int(np.maximum(0, loaded_m[:-1] - loaded_m[1:]).sum())
            reduction = _Reduction(scenario.slo_ttft_s)
            faults = judge_model_streaming(scenario, prepared, plan, m, policy, reduction)
            reductions[model] = reduction
            rejected += faults.rejected
            redirected += faults.redirected
            rejected_by_model[model] = faults.rejected
            for s, hourly in enumerate(reduction.hourly_kwh):
                energy_by_site[s] = hourly if not len(energy_by_site[s]) \
                    else energy_by_site[s] + hourly
        site_hourly[policy] = run.site_hourly_footprint(scenario, actual, energy_by_site)
        by_model[policy] = {}
        for model, reduction in reductions.items():
            model_hourly = run.site_hourly_footprint(scenario, actual, reduction.hourly_kwh)
            by_model[policy][model] = _metrics([reduction], reduction.ttft(), model_hourly,
                                               rejected_by_model[model])
        parts = list(reductions.values())
        joined = parts[0].ttft() if len(parts) == 1 else np.sort(
            np.concatenate([p.ttft() for p in parts]))
        for p in parts:
            p.ttft32 = []
        metrics[policy] = replace(
            _metrics(parts, joined, site_hourly[policy], rejected), redirected=redirected,
            loading_energy_kwh=float(sum(j for p in parts for j in p.loading_j)) / 3.6e6,
            loads=sum(p.loads for p in parts), releases=releases,
            load_delayed_requests=sum(p.load_delayed for p in parts))
        ttft[policy] = _sample(joined)
        del joined, parts, reductions
        report("simulate", p_index + 1, len(fleet))
    first = prepared_by_model[0]
    return run.ExperimentResult(scenario, metrics, {}, [], actual, site_hourly, ttft,
                                first.surrogate_accuracy, [], fleet_plans=fleet,
                                model_metrics=by_model,
                                data_gaps=run.data_gaps(scenario, first))
