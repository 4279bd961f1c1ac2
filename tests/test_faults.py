"""Faults during a run (issue 13): events in the scenario file, the simulation losing capacity,
hand-offs to fallback sites, partitions, admission control, and the conservation check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

import slit.experiment.run as run
import slit.simulate.site as site_module
from slit.errors import SlitInputError
from slit.experiment.events import Derate, Outage, Partition, SignalGap
from slit.experiment.run import (
    Failover,
    FleetPlan,
    ModelFaults,
    judge_model,
    judge_plans,
    loaded_schedule,
    plan_view,
    prepare,
    redirect_unavailable,
    route_requests,
)
from slit.experiment.scenario import scenario_from_settings
from slit.experiment.settings import validate_settings
from slit.serving.catalog import make_replica
from slit.simulate.kernel import O_DONE
from slit.simulate.site import SiteConfig, simulate_site
from slit.workload.requests import RequestBatch

H100_70B = make_replica("Llama-3.1-70B", "H100-SXM5-80GB", 4)
SITES = ("US-CAL-CISO", "DE-LU", "SG")
SG = 2

FAULT_YAML = """\
name: faults
seed: 0
model: Llama-3.1-70B
sites:
  - {region: US-CAL-CISO, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3}
  - {region: DE-LU, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3}
  - {region: SG, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3}
workload:
  origins: [US-CAL-CISO, DE-LU, SG]
  global_rate_rps: 8
period: {start_utc: "2023-07-12T12:00", hours: 1}
interval_s: 900
search: {population: 16, generations: 5}
"""


def _settings(extra: str = "") -> dict:
    return yaml.safe_load(FAULT_YAML + extra)


def _batch(arrival: np.ndarray, prompt: int = 1000, output: int = 200) -> RequestBatch:
    n = len(arrival)
    return RequestBatch(np.asarray(arrival, float), np.full(n, prompt, np.int32),
                        np.full(n, output, np.int32), np.zeros(n, np.int16))


# --- schema ------------------------------------------------------------------------------------
def test_events_convert_to_the_scenario_in_time_order():
    settings = validate_settings(_settings("""\
events:
  - {kind: derate, site: DE-LU, gpu_fraction: 0.5, start_utc: "2023-07-12T12:30",
     end_utc: "2023-07-12T13:00"}
  - {kind: outage, site: SG, start_utc: "2023-07-12T12:15", end_utc: "2023-07-12T12:45"}
  - {kind: partition, origin: SG, site: US-CAL-CISO, start_utc: "2023-07-12T12:00",
     end_utc: "2023-07-12T12:10"}
  - {kind: signal_gap, region: SG, signals: [carbon], start_utc: "2023-07-12T12:00",
     end_utc: "2023-07-12T18:00"}
"""))
    events = scenario_from_settings(settings).events
    assert [type(e) for e in events] == [Partition, SignalGap, Outage, Derate]
    assert events[2].site == "SG" and events[2].start_utc.hour == 12 \
        and events[2].start_utc.minute == 15
    assert events[3].gpu_fraction == 0.5
    assert events[1].signals == ("carbon",)
    gap = validate_settings(_settings("""\
events:
  - {kind: signal_gap, region: SG, start_utc: "2023-07-12T12:00", end_utc: "2023-07-12T13:00"}
"""))
    assert scenario_from_settings(gap).events[0].signals == ("carbon", "price", "weather")


@pytest.mark.parametrize(("event", "where"), [
    ('{kind: outage, site: JP-TK, start_utc: "2023-07-12T12:00", end_utc: "2023-07-12T13:00"}',
     "events[0].site"),
    ('{kind: partition, origin: KR, site: SG, start_utc: "2023-07-12T12:00", '
     'end_utc: "2023-07-12T13:00"}', "events[0].origin"),
    ('{kind: signal_gap, region: KR, start_utc: "2023-07-12T12:00", '
     'end_utc: "2023-07-12T13:00"}', "events[0].region"),
    ('{kind: outage, site: SG, start_utc: "2023-07-12T13:00", end_utc: "2023-07-12T12:00"}',
     "events[0].end_utc"),
    ('{kind: derate, site: SG, gpu_fraction: 1.0, start_utc: "2023-07-12T12:00", '
     'end_utc: "2023-07-12T13:00"}', "events[0].gpu_fraction"),
    ('{kind: derate, site: SG, gpu_fraction: -0.1, start_utc: "2023-07-12T12:00", '
     'end_utc: "2023-07-12T13:00"}', "events[0].gpu_fraction"),
    ('{kind: derate, site: SG, start_utc: "2023-07-12T12:00", end_utc: "2023-07-12T13:00"}',
     "events[0].gpu_fraction"),
    ('{kind: outage, site: SG, origin: SG, start_utc: "2023-07-12T12:00", '
     'end_utc: "2023-07-12T13:00"}', "events[0].origin"),
    ('{kind: flood, site: SG, start_utc: "2023-07-12T12:00", end_utc: "2023-07-12T13:00"}',
     "events[0].kind"),
    ('{kind: outage, site: SG, start_utc: "noon", end_utc: "2023-07-12T13:00"}',
     "events[0].start_utc"),
])
def test_bad_events_name_their_field(event, where):
    with pytest.raises(SlitInputError) as err:
        validate_settings(_settings(f"events:\n  - {event}\n"))
    assert err.value.where == where


# --- the simulation of one site ----------------------------------------------------------------
def test_outage_hands_off_what_the_site_holds_and_completes_nothing_while_down():
    rng = np.random.default_rng(3)
    arrival = np.sort(rng.uniform(0.0, 300.0, 400))
    requests = _batch(arrival, 800, 300)
    config = SiteConfig(H100_70B, 4)
    # Down from 100 s to 200 s (10 s bins), back with its replicas reloaded afterwards.
    capacity = np.full(30, 4)
    capacity[10:20] = 0
    result = simulate_site(requests, config, 4, interval_s=10.0, capacity=capacity,
                           network_rtt_s=np.zeros(len(requests)))
    assert result.conservation_ok, result.conservation_statement()
    done_at = result.arrival_s + result.e2e_s
    assert not ((done_at >= 100.0) & (done_at < 200.0)).any()
    handed = result.handed_off
    # Held at the failure: handed off then; arriving while down: handed off on arrival.
    assert (result.handoff_s[handed & (arrival < 100.0)] == 100.0).all()
    during = (arrival >= 100.0) & (arrival < 200.0)
    assert handed[during].all()
    np.testing.assert_array_equal(result.handoff_s[during], arrival[during])
    assert (handed & (arrival < 100.0)).sum() > 0
    assert not handed[arrival >= 200.0].any()
    assert result.completed[arrival >= 200.0].all()
    assert result.n_loads >= 4  # the replicas loaded again after the outage


def test_derate_caps_the_replicas_that_work():
    rng = np.random.default_rng(5)
    arrival = np.sort(rng.uniform(0.0, 600.0, 1500))
    requests = _batch(arrival, 1500, 200)
    full = simulate_site(requests, SiteConfig(H100_70B, 4), 4, interval_s=60.0)
    capacity = np.array([4, 4, 1, 1, 1, 1, 4, 4, 4, 4])
    derated = simulate_site(requests, SiteConfig(H100_70B, 4), 4, interval_s=60.0,
                            capacity=capacity)
    assert derated.conservation_ok, derated.conservation_statement()
    # One replica left: at most 60 busy replica-seconds a minute while derated.
    assert (derated.busy_replica_s_per_interval[3:6] <= 60.0 + 1e-6).all()
    assert (full.busy_replica_s_per_interval[3:6] > 60.0).all()
    assert derated.n_handed_off > 0 and full.n_handed_off == 0
    # Only requests arriving before the derate were held by the replicas lost at 120 s.
    assert (derated.handoff_s[derated.handed_off] == 120.0).all()


def test_admission_control_sheds_instead_of_queueing_without_bound():
    rng = np.random.default_rng(7)
    arrival = np.sort(rng.uniform(0.0, 300.0, 3000))  # ~10 rps on one 70B replica: overload
    requests = _batch(arrival, 1500, 100)
    unbounded = simulate_site(requests, SiteConfig(H100_70B, 1), 1, interval_s=60.0)
    shedding = simulate_site(requests, SiteConfig(H100_70B, 1), 1, interval_s=60.0,
                             shed_wait_s=6.0)
    assert unbounded.n_shed == 0 and shedding.n_shed > 0
    assert shedding.conservation_ok, shedding.conservation_statement()
    assert shedding.n_completed + shedding.n_shed == len(requests)
    served = shedding.ttft_s[shedding.completed]
    assert np.nanmax(unbounded.ttft_s) > 60.0  # the queue grew for minutes
    assert served.max() < 30.0  # admitted requests waited about the limit at most


# --- the judge -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared():
    scenario = scenario_from_settings(validate_settings(_settings()))
    return prepare(scenario)


def _local_plan(n_k: int, replicas: int = 3) -> FleetPlan:
    """Every origin served by its own site."""
    routing = np.zeros((n_k, 1, 3, 3))
    for o in range(3):
        routing[:, 0, o, o] = 1.0
    return FleetPlan(np.full((n_k, 3, 1), replicas), routing)


def _even_plan(n_k: int) -> FleetPlan:
    """Every origin spread evenly over the three sites."""
    return FleetPlan(np.full((n_k, 3, 1), 3), np.full((n_k, 1, 3, 3), 1.0 / 3.0))


def _keep_everything(monkeypatch):
    # The judge drops per-request arrays to bound memory; the tests read them.
    monkeypatch.setattr(run, "_judged", lambda sim, n_received=0: replace(
        sim, n_received=n_received))


def test_outage_redirects_and_hands_off_keeping_the_first_arrival(prepared, monkeypatch):
    _keep_everything(monkeypatch)
    start = prepared.scenario.start_utc
    outage = Outage(start + pd.Timedelta(minutes=15), start + pd.Timedelta(minutes=45), site="SG")
    scenario = replace(prepared.scenario, events=(outage,))
    prepared = replace(prepared, scenario=scenario)
    plan = _even_plan(scenario.n_intervals)
    uniform = np.random.default_rng(0).random(len(prepared.requests))
    sims, faults = judge_model(scenario, prepared, plan, 0, uniform, "local")
    sg = sims[SG]
    done_at = sg.arrival_s + sg.e2e_s
    assert not ((done_at >= 900.0) & (done_at < 2700.0)).any()
    assert faults.handed_off == sg.n_handed_off > 0
    assert (sg.handoff_s[sg.handed_off] == 900.0).all()
    view = plan_view(scenario, prepared, plan, 0)
    site_of = route_requests(prepared.requests, view.routing, scenario.interval_s, uniform,
                             view.starts_s)
    during = (prepared.requests.arrival_s >= 900.0) & (prepared.requests.arrival_s < 2700.0)
    assert faults.redirected == int((during & (site_of == SG)).sum()) > 0
    assert faults.rejected == 0
    # The hand-offs reached a fallback with their first arrival, one round trip later at least.
    lost_at_sg = np.sort(sg.arrival_s[sg.handed_off])
    received = [s for s in sims if s.n_received]
    assert sum(s.n_received for s in received) == len(lost_at_sg)
    fallback = received[0]
    firsts = np.sort(np.concatenate([s.arrival_s for s in received]))
    assert np.isin(lost_at_sg, firsts).all()
    moved = np.isin(fallback.arrival_s, lost_at_sg)
    assert (fallback.ttft_s[moved & fallback.completed]
            >= 900.0 - fallback.arrival_s[moved & fallback.completed]).all()
    # Every request accounted for once.
    total = sum(s.n_completed + s.n_refused + s.n_shed + s.n_in_flight for s in sims)
    assert total + faults.rejected == len(prepared.requests)


def test_partition_keeps_an_origin_away_from_a_site(prepared):
    start = prepared.scenario.start_utc
    cut = Partition(start, start + pd.Timedelta(minutes=30), origin="SG", site="SG")
    scenario = replace(prepared.scenario, events=(cut,))
    prepared = replace(prepared, scenario=scenario)
    plan = _local_plan(scenario.n_intervals)
    view = plan_view(scenario, prepared, plan, 0)
    requests = prepared.requests
    site_of = route_requests(requests, view.routing, scenario.interval_s,
                             np.random.default_rng(0).random(len(requests)), view.starts_s)
    faults = redirect_unavailable(view, requests, site_of, np.random.default_rng(1))
    cut_off = (requests.origin == SG) & (requests.arrival_s < 1800.0)
    assert cut_off.any() and not (site_of[cut_off] == SG).any()
    assert (site_of[cut_off] >= 0).all()
    # SG's row gives the other sites no share: spread by their replicas (three each).
    assert 0.35 < (site_of[cut_off] == 0).mean() < 0.65
    assert (site_of[(requests.origin == SG) & (requests.arrival_s >= 1800.0)] == SG).all()
    assert faults.redirected == int(cut_off.sum())
    result = judge_plans(scenario, [prepared], {"local": plan})
    metrics = result.metrics["local"]
    assert metrics.redirected == int(cut_off.sum()) and metrics.lost == 0
    assert metrics.requests == len(requests)


def test_failover_segments_change_routing_and_replicas_inside_the_interval(prepared):
    scenario = prepared.scenario
    plan = _local_plan(scenario.n_intervals)
    routing = plan.routing[1].copy()
    routing[0, SG] = [0.0, 1.0, 0.0]  # SG's users to DE-LU from 20 min
    replicas = plan.replicas[1].copy()
    replicas[SG, 0] = 0
    replicas[1, 0] = 3
    plan = replace(plan, failovers=(Failover(1, 1200.0, replicas, routing),))
    view = plan_view(scenario, prepared, plan, 0)
    requests = prepared.requests
    site_of = route_requests(requests, view.routing, scenario.interval_s,
                             np.random.default_rng(0).random(len(requests)), view.starts_s)
    sg = requests.origin == SG
    t = requests.arrival_s
    assert (site_of[sg & (t >= 1200.0) & (t < 1800.0)] == 1).all()
    assert (site_of[sg & ((t < 1200.0) | (t >= 1800.0))] == SG).all()
    schedule = loaded_schedule(view.replicas[:, SG], scenario.interval_s, view.starts_s)
    np.testing.assert_array_equal(schedule[:20], 3)
    np.testing.assert_array_equal(schedule[20:30], 0)
    np.testing.assert_array_equal(schedule[30:], 3)


def test_a_derated_site_judged_with_fewer_replicas(prepared):
    start = prepared.scenario.start_utc
    derate = Derate(start, start + pd.Timedelta(minutes=60), site="SG", gpu_fraction=0.34)
    plan = _local_plan(prepared.scenario.n_intervals)
    healthy = judge_plans(prepared.scenario, [prepared], {"local": plan})
    scenario = replace(prepared.scenario, events=(derate,))
    derated = judge_plans(scenario, [replace(prepared, scenario=scenario)], {"local": plan})
    sg_energy = [r.set_index("site").loc["SG", "it_energy_kwh"].sum()
                 for r in (healthy.site_hourly["local"], derated.site_hourly["local"])]
    # 12 GPUs x 0.34 hold one TP4 replica of the three: the site draws far less.
    assert sg_energy[1] < 0.6 * sg_energy[0]
    m = derated.metrics["local"]
    assert m.requests == healthy.metrics["local"].requests
    assert m.completed + m.shed + m.refused + m.lost == m.requests
    # The report lists the event and the outcomes.
    from slit.report.faults import faults_document, faults_html

    html = faults_html(derated)
    assert "SG keeps 34 % of its GPUs" in html and "<td>local</td>" in html
    doc = faults_document(derated)
    assert doc["events"][0]["kind"] == "derate" and doc["events"][0]["gpu_fraction"] == 0.34
    assert doc["request_outcomes"]["local"]["handed_off"] == m.handed_off
    assert doc["request_outcomes"]["local"]["served"] == m.completed


# --- conservation ----------------------------------------------------------------------------
def test_a_site_that_loses_a_request_is_an_error(prepared, monkeypatch):
    real = site_module.simulate_kernel

    def broken(*args):
        out, bins, counters, area, end = real(*args)
        done = np.flatnonzero(~np.isnan(out[:, O_DONE]))
        if len(done):
            out[done[0], O_DONE] = np.nan  # a completion vanishes from the per-request results
        return out, bins, counters, area, end

    monkeypatch.setattr(site_module, "simulate_kernel", broken)
    with pytest.raises(RuntimeError, match="REQUESTS LOST"):
        judge_plans(prepared.scenario, [prepared],
                    {"local": _local_plan(prepared.scenario.n_intervals)})


def test_a_fleet_that_drops_requests_between_sites_is_an_error(prepared, monkeypatch):
    def dropping(view, requests, site_of, rng=None):
        site_of[:5] = -1  # routed nowhere, and not counted as rejected
        return ModelFaults()

    monkeypatch.setattr(run, "redirect_unavailable", dropping)
    with pytest.raises(RuntimeError, match="not conserved"):
        judge_plans(prepared.scenario, [prepared],
                    {"local": _local_plan(prepared.scenario.n_intervals)})


# --- demand beyond the fleet -----------------------------------------------------------------
def test_shortfalls_name_the_intervals_and_origins_a_small_fleet_cannot_serve(prepared):
    from slit.experiment.shortfall import fleet_shortfalls, shortfall_warning

    scenario = prepared.scenario
    assert fleet_shortfalls(scenario, [prepared]) == []
    # One 70B replica in all (at DE-LU) instead of nine: the same demand no longer fits.
    small = replace(scenario, sites=tuple(
        replace(s, gpus={"H100-SXM5-80GB": 4 if s.region_id == "DE-LU" else 0})
        for s in scenario.sites))
    shortfalls = fleet_shortfalls(small, [replace(prepared, scenario=small)])
    assert [s.interval for s in shortfalls] == list(range(scenario.n_intervals))
    for s in shortfalls:
        assert 0.0 < s.unmet_rps < s.demand_rps
        assert s.unmet_rps == pytest.approx(sum(s.unmet_rps_by_origin.values()), abs=0.01)
    line = shortfall_warning(shortfalls, scenario.n_intervals)
    assert line is not None and f"in {scenario.n_intervals} of {scenario.n_intervals}" in line
    # Outages known at the start of an interval take their sites out of its fleet: with one
    # replica per site, SG's alone cannot serve everyone during the first half hour.
    start = scenario.start_utc
    one_each = replace(scenario, sites=tuple(replace(s, gpus={"H100-SXM5-80GB": 4})
                                             for s in scenario.sites))
    assert fleet_shortfalls(one_each, [replace(prepared, scenario=one_each)]) == []
    down = replace(one_each, events=tuple(
        Outage(start, start + pd.Timedelta(minutes=30), site=site)
        for site in ("US-CAL-CISO", "DE-LU")))
    during = fleet_shortfalls(down, [replace(prepared, scenario=down)])
    assert [s.interval for s in during] == [0, 1]
