"""``slit plan`` is SLIT's receding-horizon step of ``slit run``: the same decision from the same
state and forecasts, the state read from the previous plan (no churn, minimum up-time), the
look-ahead, determinism, refusals and the pools, on a two-model scenario of shared GPU pools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scenario_helpers import run_slit, write_tiny
from typer.testing import CliRunner

from slit.cli.app import app
from slit.config import load_scenario
from slit.errors import SlitInputError
from slit.experiment.horizon_inputs import HorizonInputs, horizon_problem
from slit.experiment.run import RecedingPlans, plan_receding, prepare_models, slit_step
from slit.experiment.scenario import Scenario
from slit.optimise.policies import interval_seeds
from slit.plan import (
    ENVOY_TOTAL_WEIGHT,
    LOOK_AHEAD_STATUS,
    SHARE_UNITS,
    cluster_name,
    envoy_yaml,
    state_from_document,
)

# Two models on three 8-GPU pools (the 70B replica takes four GPUs, the 8B one), with a
# 30-minute minimum up-time so a replica loaded at one interval is held at the next. The 70B
# keeps the tiny scenarios' token mix, so it shares their cached surrogate.
TWO_MODEL_YAML = """\
name: tiny-pools
seed: 0
models:
  - {name: Llama-3.1-8B, demand_share: 0.6, trace_mix: {conv: 0.9, code: 0.1}}
  - {name: Llama-3.1-70B, demand_share: 0.4, trace_mix: {conv: 0.7, code: 0.3}}
sites:
  - region: US-CAL-CISO
    gpus: {H100-SXM5-80GB: 8}
    replica_for: {Llama-3.1-8B: {gpu: H100-SXM5-80GB, tp: 1},
                  Llama-3.1-70B: {gpu: H100-SXM5-80GB, tp: 4}}
  - region: DE-LU
    gpus: {H100-SXM5-80GB: 8}
    replica_for: {Llama-3.1-8B: {gpu: H100-SXM5-80GB, tp: 1},
                  Llama-3.1-70B: {gpu: H100-SXM5-80GB, tp: 4}}
    cooling: dry
  - region: SG
    gpus: {H100-SXM5-80GB: 8}
    replica_for: {Llama-3.1-8B: {gpu: H100-SXM5-80GB, tp: 1},
                  Llama-3.1-70B: {gpu: H100-SXM5-80GB, tp: 4}}
workload:
  origins: [US-CAL-CISO, DE-LU, SG]
  global_rate_rps: 20
period: {start_utc: "2023-07-12T12:00", hours: 2}
interval_s: 900
min_up_s: 1800
slo: {ttft_s: 1.5, percentile: 99}
search: {population: 16, generations: 5}
"""
T0 = "2023-07-12T12:00"  # the run's first interval
T1 = "2023-07-12T12:15"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plan-horizon")


@pytest.fixture(scope="module")
def scenario_file(folder: Path) -> Path:
    return write_tiny(folder, TWO_MODEL_YAML, "two.yaml")


@pytest.fixture(scope="module")
def prepared(scenario_file: Path) -> tuple[Scenario, list]:
    scenario = load_scenario(scenario_file)
    assert scenario.n_intervals == 8
    return scenario, prepare_models(scenario)


@pytest.fixture(scope="module")
def run(prepared) -> tuple[Scenario, RecedingPlans]:
    """``slit run``'s planning of the 2 h period (8 intervals: the first horizon is whole),
    SLIT alone."""
    scenario, models = prepared
    return scenario, plan_receding(scenario, models, ("slit",))


def test_slit_step_is_the_run_s_decision_and_leaves_its_seed_alone(prepared, run) -> None:
    scenario, models = prepared
    _, receding = run
    n_s, n_m = len(scenario.sites), len(scenario.model_names)
    problem = horizon_problem(HorizonInputs(scenario, models, 8), 0, receding.initial_replicas,
                              np.full((n_s, n_m), scenario.min_up_s))
    seed = interval_seeds(scenario.seed, 1)[0]
    first, second = (slit_step(problem, scenario, seed) for _ in range(2))
    assert seed.n_children_spawned == 0
    for step in (first, second):
        np.testing.assert_array_equal(step.replicas[0], receding.fleet["slit"].replicas[0])
        np.testing.assert_array_equal(step.routing[0], receding.fleet["slit"].routing[0])
    np.testing.assert_array_equal(first.replicas, second.replicas)


def _state_document(scenario: Scenario, replicas: np.ndarray, plan_start: str,
                    loaded_since: str) -> dict:
    """The smallest plan document ``--current`` reads: replicas and since when."""
    return {"schema_version": 4, "interval": {"start_utc": plan_start}, "models": [
        {"name": model, "sites": [
            {"id": site, "replicas": int(replicas[s, m]),
             "loaded_since_utc": loaded_since if replicas[s, m] > 0 else None}
            for s, site in enumerate(scenario.site_ids)]}
        for m, model in enumerate(scenario.model_names)]}


def _plan(args: list[str], out: Path, capsys, monkeypatch) -> dict:
    code, _, err = run_slit([*args, "--output", str(out)], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def first_plan(run, scenario_file: Path, folder: Path) -> dict:
    """``slit plan --at T0`` from the state ``slit run`` starts from (its initial replicas, up
    for the minimum up-time)."""
    scenario, receding = run
    since = (pd.Timestamp(T0, tz="UTC") - pd.Timedelta(seconds=scenario.min_up_s))
    current = folder / "initial.json"
    current.write_text(json.dumps(_state_document(
        scenario, receding.initial_replicas, "2023-07-12T11:45:00Z",
        since.strftime("%Y-%m-%dT%H:%M:%SZ"))))
    # A module fixture cannot take capsys: the CLI through typer's runner.
    result = CliRunner().invoke(app, ["plan", "--at", T0, "--scenario", str(scenario_file),
                                      "--current", str(current), "--output",
                                      str(folder / "p0.json")])
    assert result.exit_code == 0, result.output
    return json.loads((folder / "p0.json").read_text(encoding="utf-8"))


def _replicas(document: dict, scenario: Scenario, key: str = "replicas") -> np.ndarray:
    by_model = {m["name"]: {s["id"]: s[key] for s in m["sites"]} for m in document["models"]}
    return np.array([[by_model[m][s] for m in scenario.model_names] for s in scenario.site_ids])


def _routes(document: dict, scenario: Scenario) -> np.ndarray:
    """[M, O, S] the document's shares."""
    out = np.zeros((len(scenario.model_names), len(scenario.demand.origins),
                    len(scenario.site_ids)))
    for model in document["models"]:
        m = scenario.model_names.index(model["name"])
        for o, origin in enumerate(model["origins"]):
            assert origin["id"] == scenario.demand.origins[o]
            for site, share in origin["routes"].items():
                out[m, o, scenario.site_ids.index(site)] = share
    return out


def _assert_within_pools(document: dict, scenario: Scenario) -> None:
    tp = {(s["id"], m["name"]): s["tp"] for m in document["models"] for s in m["sites"]}
    for pool in document["pools"]:
        (gpu, size), = pool["gpus"].items()
        assert pool["gpus_used"][gpu] <= size
        planned = np.array([[s["planned_replicas"] for s in m["sites"] if s["id"] == pool["id"]]
                            for m in document["models"]])[:, 0, :]  # [M, H]
        per_model = np.array([tp[(pool["id"], m["name"])] for m in document["models"]])
        assert (per_model @ planned <= size).all(), pool["id"]  # the look-ahead too
        assert pool["gpus_used"][gpu] == int(per_model @ planned[:, 0])


def test_plan_takes_the_same_first_decision_as_slit_run(run, first_plan: dict) -> None:
    scenario, receding = run
    committed = receding.fleet["slit"]
    np.testing.assert_array_equal(_replicas(first_plan, scenario), committed.replicas[0])
    # Shares are written as multiples of 1e-6 (largest remainder), so they agree to that.
    np.testing.assert_allclose(_routes(first_plan, scenario), committed.routing[0],
                               atol=1.0 / SHARE_UNITS)
    # The loads and releases are from the run's initial state.
    loads = np.maximum(0, committed.replicas[0] - receding.initial_replicas)
    np.testing.assert_array_equal(_replicas(first_plan, scenario, "load"), loads)
    np.testing.assert_array_equal(
        _replicas(first_plan, scenario, "release"),
        np.maximum(0, receding.initial_replicas - committed.replicas[0]))
    assert first_plan["loaded_now"] == {"source": "current plan",
                                        "plan_start_utc": "2023-07-12T11:45:00Z"}


def test_look_ahead_is_planned_and_within_the_pools(run, first_plan: dict) -> None:
    scenario, _ = run
    ahead = first_plan["look_ahead"]
    assert ahead["intervals"] == 8 and ahead["status"] == LOOK_AHEAD_STATUS
    assert ahead["starts_utc"][0] == first_plan["interval"]["start_utc"]
    assert ahead["starts_utc"][-1] == "2023-07-12T13:45:00Z"
    for model in first_plan["models"]:
        assert len(model["forecast_rps_ahead"]) == 8
        assert model["forecast_rps_ahead"][0] == pytest.approx(
            sum(o["forecast_rps"] for o in model["origins"]))
        for site in model["sites"]:
            assert len(site["planned_replicas"]) == 8
            assert site["planned_replicas"][0] == site["replicas"]
            assert 0 <= site["load_ahead"] <= site["load"]
            assert site["loading_energy_kwh"] > 0 if site["load"] else \
                site["loading_energy_kwh"] == 0
            assert not (site["load"] and site["release"])  # no churn inside one decision
    _assert_within_pools(first_plan, scenario)


def test_state_read_back_is_what_slit_run_committed(run, first_plan: dict) -> None:
    # The plan document of T0 is the state slit run committed for its second interval: its
    # replicas, and the age slit run counts the minimum up-time from (a replica loaded at the
    # interval's start; else the one it was loaded before).
    scenario, receding = run
    state = state_from_document(first_plan, scenario, pd.Timestamp(T1, tz="UTC"))
    committed = receding.fleet["slit"].replicas[0]
    np.testing.assert_array_equal(state.replicas, committed)
    grew = committed > receding.initial_replicas
    up_s = np.where(grew, scenario.interval_s, scenario.interval_s + scenario.min_up_s)
    np.testing.assert_allclose(state.up_s[committed > 0], up_s[committed > 0])


def test_plan_from_current_keeps_young_replicas_and_is_deterministic(
        run, first_plan: dict, folder: Path, scenario_file: Path, capsys, monkeypatch) -> None:
    scenario, _ = run
    current = folder / "p0.json"
    args = ["plan", "--at", T1, "--scenario", str(scenario_file), "--current", str(current)]
    texts = []
    for name in ("p1a.json", "p1b.json"):
        _plan(args, folder / name, capsys, monkeypatch)
        texts.append((folder / name).read_text(encoding="utf-8"))
    first, second = (json.loads(t) for t in texts)
    assert {k: v for k, v in first.items() if k != "timing"} == \
        {k: v for k, v in second.items() if k != "timing"}
    strip = [t.split('"scenario"', 1)[1] for t in texts]  # bytes after the timing object
    assert strip[0] == strip[1]
    loaded_at_t0 = _replicas(first_plan, scenario, "load")
    now = _replicas(first_plan, scenario)
    after = _replicas(first, scenario)
    # Replicas loaded at T0 are up 900 s < min_up_s = 1800 s at T1: none is released; what was
    # loaded is not loaded again (loads only above what is there), nothing both loaded and
    # released.
    young = np.minimum(loaded_at_t0, now)
    assert (after >= young).all(), (after, young)
    np.testing.assert_array_equal(_replicas(first, scenario, "load"),
                                  np.maximum(0, after - now))
    np.testing.assert_array_equal(_replicas(first, scenario, "release"),
                                  np.maximum(0, now - after))
    assert first["loaded_now"]["plan_start_utc"] == "2023-07-12T12:00:00Z"
    for model in first["models"]:
        m = scenario.model_names.index(model["name"])
        for s, site in enumerate(model["sites"]):
            # The youngest replica's load time carries on until another is loaded.
            before = first_plan["models"][m]["sites"][s]["loaded_since_utc"]
            expected = "2023-07-12T12:15:00Z" if site["load"] else \
                before if site["replicas"] else None
            assert site["loaded_since_utc"] == expected, (model["name"], site["id"])
    _assert_within_pools(first, scenario)
    # Envoy: one weighted cluster set per model in each origin's virtual host.
    config = yaml.safe_load(envoy_yaml(first))
    for host in config["resources"][0]["virtual_hosts"]:
        routes = host["routes"]
        assert [r["match"]["headers"][0]["string_match"]["exact"] for r in routes] == \
            list(scenario.model_names)
        for route, model in zip(routes, first["models"], strict=True):
            clusters = route["route"]["weighted_clusters"]["clusters"]
            assert sum(c["weight"] for c in clusters) == ENVOY_TOTAL_WEIGHT
            assert all(c["name"].startswith(cluster_name("", model["name"])[:-1])
                       for c in clusters)


def test_full_young_pools_are_kept(run, folder: Path, scenario_file: Path, capsys,
                                   monkeypatch) -> None:
    # Every pool full of 8B replicas loaded at T1 itself (up 0 s): the plan releases none of
    # them, so the 70B gets no GPU anywhere, and the pools still hold.
    scenario, _ = run
    full = np.zeros((len(scenario.sites), 2), dtype=np.int64)
    full[:, 0] = [site.max_replicas("Llama-3.1-8B") for site in scenario.sites]
    current = folder / "full.json"
    current.write_text(json.dumps(_state_document(scenario, full, "2023-07-12T12:15:00Z",
                                                  "2023-07-12T12:15:00Z")))
    plan = _plan(["plan", "--at", T1, "--scenario", str(scenario_file), "--current",
                  str(current)], folder / "kept.json", capsys, monkeypatch)
    after = _replicas(plan, scenario)
    np.testing.assert_array_equal(after, full)
    assert all(s["release"] == 0 and s["load"] == 0 for m in plan["models"] for s in m["sites"])
    _assert_within_pools(plan, scenario)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["models"][0]["sites"][0].update(id="JP-TK"), "is a plan of sites"),
    (lambda d: d["models"].pop(), "models Llama-3.1-8B;"),
    (lambda d: d["interval"].update(start_utc="2023-07-12T13:00:00Z"), "after --at"),
    (lambda d: d["models"][0]["sites"][0].update(replicas=9), "beyond its pool"),
    (lambda d: d.update(schema_version=1), "schema_version 1"),
], ids=["site", "model", "later", "pool", "schema"])
def test_current_of_another_scenario_is_refused(run, folder: Path, scenario_file: Path,
                                                change, message: str, capsys,
                                                monkeypatch) -> None:
    scenario, receding = run
    document = _state_document(scenario, receding.initial_replicas, "2023-07-12T12:00:00Z",
                               "2023-07-12T12:00:00Z")
    change(document)
    current = folder / "other.json"
    current.write_text(json.dumps(document))
    code, out, err = run_slit(["plan", "--at", T1, "--scenario", str(scenario_file),
                               "--current", str(current)], capsys, monkeypatch)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --current") and message in lines[0]
    with pytest.raises(SlitInputError):
        state_from_document(document, scenario, pd.Timestamp(T1, tz="UTC"))
