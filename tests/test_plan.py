"""``slit plan``: the next-interval plan as JSON and as Envoy routes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scenario_helpers import run_slit, write_tiny

from slit.config import load_scenario
from slit.optimise.problem import OBJECTIVES
from slit.plan import (
    ENVOY_TOTAL_WEIGHT,
    MODEL_HEADER,
    ROUTE_CONFIG_TYPE,
    SHARE_UNITS,
    FleetDecision,
    cluster_name,
    envoy_yaml,
    integer_weights,
    plan_document,
    plan_next_interval,
    plan_scenario,
    state_from_document,
)

REPO = Path(__file__).resolve().parents[1]
AT = "2023-07-12T13:15"


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="module")
def planned(scenario_file: Path) -> FleetDecision:
    return plan_next_interval(plan_scenario(load_scenario(scenario_file),
                                            pd.Timestamp(AT, tz="UTC")))


@pytest.fixture(scope="module")
def document(planned: FleetDecision) -> dict:
    return plan_document(planned)


def _without_issue_time(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "timing"}


def test_cli_json_matches_and_is_deterministic(document: dict, scenario_file: Path, capsys,
                                               monkeypatch) -> None:
    code, out, _ = run_slit(["plan", "--at", AT, "--scenario", str(scenario_file)], capsys,
                            monkeypatch)
    assert code == 0
    printed = json.loads(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", printed["timing"]["issued_at"])
    assert _without_issue_time(printed) == json.loads(json.dumps(_without_issue_time(document)))


def test_document_describes_one_interval(document: dict) -> None:
    assert document["schema_version"] == 4
    assert document["interval"] == {"start_utc": "2023-07-12T13:15:00Z",
                                    "end_utc": "2023-07-12T13:30:00Z", "seconds": 900.0}
    assert document["slo"] == {"ttft_s": 1.5, "percentile": 99}
    assert document["loaded_now"] == {"source": "cold start", "plan_start_utc": None}
    assert document["look_ahead"]["intervals"] == 8  # slit run's horizon: 2 h
    (model,) = document["models"]  # the tiny file is a single-model (schema-1) scenario
    assert model["name"] == "Llama-3.1-70B" and model["demand_share"] == 1.0
    sites = {s["id"]: s for s in model["sites"]}
    assert list(sites) == ["US-CAL-CISO", "DE-LU", "SG"]
    pools = {p["id"]: p for p in document["pools"]}
    for site in sites.values():
        pool = pools[site["id"]]
        assert 0 <= site["replicas"] * site["tp"] == pool["gpus_used"][site["gpu"]]
        assert pool["gpus_used"][site["gpu"]] <= pool["gpus"][site["gpu"]] == 3 * site["tp"]
        # Traffic goes only where replicas are loaded (a replica may be loaded ahead of it).
        assert site["expected_load_rps"] == 0 or site["replicas"] > 0
        # Cold start: every replica is a load, none a release, each loaded now.
        assert site["load"] == site["replicas"] and site["release"] == 0
        assert site["loaded_since_utc"] == ("2023-07-12T13:15:00Z" if site["replicas"]
                                            else None)
        assert 50.0 < site["load_time_s"] < 110.0
        assert site["planned_replicas"][0] == site["replicas"]
        assert all(0 <= n <= 3 for n in site["planned_replicas"])
    load = {s: 0.0 for s in sites}
    for origin in model["origins"]:
        assert origin["forecast_rps"] > 0
        units = [round(share * SHARE_UNITS) for share in origin["routes"].values()]
        assert sum(units) == SHARE_UNITS and min(units) > 0
        for site, share in origin["routes"].items():
            load[site] += share * origin["forecast_rps"]
    for site, rps in load.items():
        assert rps == pytest.approx(sites[site]["expected_load_rps"], rel=1e-4, abs=1e-6)
    # Residency: DE-LU is pinned to itself.
    de = next(o for o in model["origins"] if o["id"] == "DE-LU")
    assert de["routes"] == {"DE-LU": 1.0}


def test_loads_and_releases_follow_the_current_replicas(planned: FleetDecision,
                                                       document: dict) -> None:
    scenario = planned.scenario
    at = pd.Timestamp(AT, tz="UTC") + pd.Timedelta(seconds=scenario.interval_s)
    state = state_from_document(document, scenario, at)
    model = document["models"][0]
    assert state.replicas[:, 0].tolist() == [s["replicas"] for s in model["sites"]]
    # Loaded at the plan's start, up one interval by the next.
    assert all(state.up_s[s, 0] == (scenario.interval_s if n else 0.0)
               for s, n in enumerate(state.replicas[:, 0]))
    # A schema-3 plan has no loaded_since_utc: its replicas count as loaded at its start.
    old = json.loads(json.dumps(document))
    old["schema_version"] = 3
    for site in old["models"][0]["sites"]:
        del site["loaded_since_utc"]
    again = state_from_document(old, scenario, at)
    np.testing.assert_array_equal(again.replicas, state.replicas)
    np.testing.assert_array_equal(again.up_s, state.up_s)


def test_front_holds_the_chosen_plan(document: dict) -> None:
    model = document["models"][0]
    front = model["front"]
    assert sum(p["chosen"] for p in front) == 1
    assert model["routing_source"] in ("front", "horizon")
    assert set(model["expected"]) == set(OBJECTIVES) | {"meets_slo", "slo_margin_s"}
    assert model["expected"]["meets_slo"]
    ttft = [p["ttft_mean_s"] for p in front]
    assert ttft == sorted(ttft)


def test_envoy_routes(document: dict, scenario_file: Path, tmp_path: Path, capsys,
                      monkeypatch) -> None:
    out = tmp_path / "routes.yaml"
    old = os.umask(0o027)  # a load balancer in the group may read the routes, others not
    try:
        code, _, err = run_slit(["plan", "--at", AT, "--scenario", str(scenario_file),
                                 "--format", "envoy", "--output", str(out)], capsys, monkeypatch)
    finally:
        os.umask(old)
    assert code == 0 and "wrote" in err
    assert [p.name for p in tmp_path.iterdir()] == ["routes.yaml"]
    assert out.stat().st_mode & 0o777 == 0o640
    config = yaml.safe_load(out.read_text())
    (resource,) = config["resources"]
    assert resource["@type"] == ROUTE_CONFIG_TYPE
    hosts = resource["virtual_hosts"]
    assert [h["name"] for h in hosts] == ["origin-us-cal-ciso", "origin-de-lu", "origin-sg"]
    assert hosts[0]["domains"] == ["us-cal-ciso.*"]
    model = document["models"][0]
    name = model["name"]
    for host, origin in zip(hosts, model["origins"], strict=True):
        (route,) = host["routes"]  # one weighted cluster set per model
        assert route["match"]["headers"] == [{"name": MODEL_HEADER,
                                              "string_match": {"exact": name}}]
        clusters = route["route"]["weighted_clusters"]["clusters"]
        assert sum(c["weight"] for c in clusters) == ENVOY_TOTAL_WEIGHT
        assert {c["name"] for c in clusters} <= {cluster_name(s, name) for s in origin["routes"]}
        for c in clusters:
            share = next(v for s, v in origin["routes"].items()
                         if cluster_name(s, name) == c["name"])
            assert abs(c["weight"] - share * ENVOY_TOTAL_WEIGHT) < 1.0


def test_envoy_rounding_sums_exactly() -> None:
    doc = {"issued_at": "x", "interval": {"start_utc": "a", "end_utc": "b"}, "models": [
        {"name": "A", "origins": [{"id": "SG", "routes": {"SG": 1 / 3, "KR": 1 / 3,
                                                            "JP-TK": 1 / 3}}]},
        {"name": "B", "origins": [{"id": "SG", "routes": {"KR": 1.0}}]}]}
    config = yaml.safe_load(envoy_yaml(doc, "{origin}.llm.example.com"))
    host = config["resources"][0]["virtual_hosts"][0]
    assert host["domains"] == ["sg.llm.example.com"]
    first, second = host["routes"]
    weights = [c["weight"] for c in first["route"]["weighted_clusters"]["clusters"]]
    assert weights == [3334, 3333, 3333]
    assert second["route"]["weighted_clusters"]["clusters"] == [
        {"name": "slit-b-site-kr", "weight": ENVOY_TOTAL_WEIGHT}]


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=15).filter(lambda v: sum(v) > 1e-6),
       st.sampled_from([100, 10_000, 1_000_000]))
def test_integer_weights_sum_exactly(shares: list[float], total: int) -> None:
    weights = integer_weights(np.array(shares), total)
    assert weights.sum() == total and (weights >= 0).all()
    exact = np.array(shares) / sum(shares) * total
    assert np.all(np.abs(weights - exact) < 1.0 + 1e-9)
    assert np.all(weights[np.array(shares) == 0] == 0)


def test_docs_describe_every_field(document: dict) -> None:
    text = (REPO / "docs" / "plan.md").read_text()

    def keys(value: object, prefix: str = "") -> set[str]:
        if isinstance(value, dict):
            found = set()
            for k, v in value.items():
                if prefix.endswith(("routes", "weights", "gpus", "gpus_used")):
                    continue
                found |= {k} | keys(v, k)
            return found
        if isinstance(value, list):
            return set().union(*(keys(v, prefix) for v in value)) if value else set()
        return set()

    missing = sorted(k for k in keys(document) if f"`{k}`" not in text)
    assert missing == []


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_plan_package_and_cli_keep_the_layering() -> None:
    src = REPO / "src" / "slit"
    # slit.plan sits below slit.report and slit.cli: it imports neither.
    for path in (src / "plan").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith(("slit.report", "slit.cli"))}, path
    # No command module imports the app back (the app imports them), and plan does not lean
    # on run's command module.
    for path in (src / "cli").glob("*_commands.py"):
        assert "slit.cli.app" not in _imports(path), path
    assert "slit.cli.run_commands" not in _imports(src / "cli" / "plan_commands.py")


def test_look_ahead_stops_where_the_data_ends(scenario_file: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from slit.data.signals import CARBON_FILE, PRICE_FILE, WEATHER_FILE
    from slit.data.source import DataSource
    from slit.errors import SlitInputError

    base = load_scenario(scenario_file)
    for site in base.site_ids:  # the data holds 2023 only
        year = tmp_path / "regions" / site / "2023"
        year.mkdir(parents=True)
        for name in (CARBON_FILE, PRICE_FILE, WEATHER_FILE):
            (year / name).write_text("")
    base = replace(base, data=DataSource(tmp_path))
    inside = plan_scenario(base, pd.Timestamp("2023-07-12T13:15", tz="UTC"))
    assert inside.n_intervals == 8
    # Half an hour before the data ends: two intervals of look-ahead, not eight.
    last = plan_scenario(base, pd.Timestamp("2023-12-31T23:30", tz="UTC"))
    assert last.n_intervals == 2 and last.end_utc == pd.Timestamp("2024-01-01", tz="UTC")
    with pytest.raises(SlitInputError, match="--at"):
        plan_scenario(base, pd.Timestamp("2024-01-01T00:00", tz="UTC"))
