"""Scenario files: the example ``slit init`` writes, loading, overrides and error lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scenario_helpers import TINY_YAML, run_slit, write_tiny

from slit.config import example_yaml, load_scenario
from slit.errors import SlitInputError
from slit.experiment.scenario import default_scenario
from slit.footprint import CarbonBasis, CoolingType


def test_init_writes_the_default_scenario(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "scenario.yaml"
    code, out, _ = run_slit(["init", str(path)], capsys, monkeypatch)
    assert code == 0 and "slit run" in out
    assert path.read_text() == example_yaml()
    assert load_scenario(path) == default_scenario()
    assert [p.name for p in tmp_path.iterdir()] == ["scenario.yaml"]


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("keep me")
    code, _, err = run_slit(["init", str(path)], capsys, monkeypatch)
    assert code == 2 and "already exists" in err and "--force" in err
    assert path.read_text() == "keep me"
    code, _, _ = run_slit(["init", str(path), "--force"], capsys, monkeypatch)
    assert code == 0 and path.read_text() == example_yaml()


def test_tiny_scenario_loads(tmp_path: Path) -> None:
    sc = load_scenario(write_tiny(tmp_path))
    assert sc.name == "tiny"
    assert sc.site_ids == ("US-CAL-CISO", "DE-LU", "SG")
    assert sc.sites[1].footprint.cooling is CoolingType.DRY
    assert sc.sites[0].footprint.cooling is CoolingType.EVAPORATIVE
    assert sc.start_utc == pd.Timestamp("2023-07-12 12:00", tz="UTC")
    assert sc.hours == 1 and sc.interval_s == 900 and sc.n_intervals == 4
    assert sc.pins == {"DE-LU": ("DE-LU",)}
    assert sc.search.population == 16 and sc.search.generations == 5
    assert sc.demand.global_rate_rps == 8


def test_fleet_default_and_preference(tmp_path: Path) -> None:
    text = """
period: {start_utc: 2023-07-12, hours: 3}
fleet: default
workload: {global_rate_rps: 25}
preference: {mode: cap, ttft_cap_s: 0.8, minimise: water_l}
carbon_basis: lca
slo: {ttft_s: 2, percentile: 95}
"""
    sc = load_scenario(write_tiny(tmp_path, text))
    default = default_scenario(hours=3)
    assert sc.sites == default.sites
    assert sc.hours == 3 and sc.carbon_basis is CarbonBasis.LCA
    assert sc.slo_ttft_s == 2 and sc.slo_percentile == 95
    assert sc.preference.mode == "cap" and sc.preference.ttft_cap_s == 0.8
    assert sc.preference.minimise == "water_l"


def test_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "regions").mkdir(parents=True)
    folder = tmp_path / "scenarios"
    folder.mkdir()
    path = write_tiny(folder, TINY_YAML + "data_dir: ../data\n")
    assert load_scenario(path).data_dir == folder / "../data"
    assert load_scenario(path).data_dir.resolve() == data.resolve()


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "regions").mkdir(parents=True)
    sc = load_scenario(write_tiny(tmp_path), data_dir=other, hours=2.5)
    assert sc.data_dir == other and sc.hours == 2.5


def test_errors_name_file_field_line_and_fix(tmp_path: Path) -> None:
    path = write_tiny(tmp_path, TINY_YAML.replace("gpu: H100-SXM5-80GB, tp: 4, installed_"
                                                  "replicas: 3, cooling: dry",
                                                  "gpu: H200, tp: 4, installed_replicas: 3"))
    with pytest.raises(SlitInputError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: sites[1].gpu (line 6): unknown GPU 'H200'; use one of")
    assert "\n" not in message


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_tiny(tmp_path, TINY_YAML.replace("slo: {ttft_s: 1.5,", "slo: {ttft_ms: 1.5,"))
    with pytest.raises(SlitInputError, match=r"slo\.ttft_ms \(line 13\): is not a known "
                       r"setting; remove it or use one of: ttft_s, percentile"):
        load_scenario(path)


def test_cap_mode_without_a_cap_is_rejected(tmp_path: Path) -> None:
    path = write_tiny(tmp_path, TINY_YAML + "preference: {mode: cap, minimise: water_l}\n")
    with pytest.raises(SlitInputError) as err:
        load_scenario(path)
    assert "preference.ttft_cap_s" in err.value.where
    assert "mode: cap needs a cap" in err.value.problem and "ttft_cap_s" in err.value.fix


def test_pin_to_a_site_outside_the_fleet_names_the_site(tmp_path: Path) -> None:
    path = write_tiny(tmp_path, TINY_YAML.replace("pins: {DE-LU: [DE-LU]}",
                                                  "pins: {DE-LU: [DE-LU, KR]}"))
    with pytest.raises(SlitInputError) as err:
        load_scenario(path)
    message = str(err.value)
    assert "site KR is not in the fleet" in message and "(" not in err.value.problem
    assert "US-CAL-CISO DE-LU SG" in err.value.fix


def test_docs_settings_tables_match_the_schema() -> None:
    from slit.config.example import SETTINGS_BEGIN, SETTINGS_END, settings_tables
    docs = (Path(__file__).parents[1] / "docs" / "scenarios.md").read_text(encoding="utf-8")
    shown = docs.split(SETTINGS_BEGIN, 1)[1].split(SETTINGS_END, 1)[0].strip()
    assert shown == settings_tables(), "run: python -m slit.config docs/scenarios.md"
    default = default_scenario()
    assert f"| `search.population` | `{default.search.population}` |" in shown
    assert f"| `search.generations` | `{default.search.generations}` |" in shown


def test_init_comments_are_the_schema_descriptions() -> None:
    from slit.experiment.settings import ScenarioFile, Slo
    text = example_yaml()
    for info in (ScenarioFile.model_fields["seed"], Slo.model_fields["ttft_s"]):
        assert f"# {info.description}" in text
    # A setting added to the schema reaches the example without touching the renderer.
    assert "ttft_cap_s: null" in text and "fleet: null" in text


def test_single_model_file_maps_to_one_model_with_share_one(tmp_path: Path) -> None:
    sc = load_scenario(write_tiny(tmp_path))
    assert len(sc.models) == 1 and sc.models[0].demand_share == 1.0
    site = sc.sites[0]
    assert site.gpus == {site.replica.gpu: site.installed * site.replica.tp}
    assert site.max_replicas(site.replica.model) == site.installed


def test_default_fleet_is_whole_nodes_holding_its_reserved_replicas() -> None:
    sc = default_scenario(hours=1)
    assert sc.model_names == ("Llama-3.1-8B", "Llama-3.1-70B")
    assert sum(m.demand_share for m in sc.models) == pytest.approx(1.0)
    for site in sc.sites:
        assert all(n % 8 == 0 and n > 0 for n in site.gpus.values())
        assert site.fits(site.reserved)
        assert site.replica_for["Llama-3.1-8B"].tp == 1
        # One more node would be spare: the pool is the reserved GPUs rounded up to nodes.
        used = site.gpus_used(site.reserved)
        assert all(site.gpus[g] - used[g] < 8 for g in site.gpus)
    view = sc.for_model("Llama-3.1-70B")
    assert view.demand.global_rate_rps == pytest.approx(0.3 * sc.demand.global_rate_rps)
    assert view.sites[0].replica.model == "Llama-3.1-70B"


def test_pool_form_checks_name_the_field(tmp_path: Path) -> None:
    base = """
name: pools
period: {start_utc: 2023-07-12T12:00, hours: 1}
models:
  - {name: Llama-3.1-8B, demand_share: 0.6, trace_mix: {conv: 1.0}}
  - {name: Llama-3.1-70B, demand_share: 0.4, trace_mix: {conv: 0.5, code: 0.5}}
sites:
  - region: DE-LU
    gpus: {H100-SXM5-80GB: GPUS}
    replica_for: {Llama-3.1-8B: {gpu: H100-SXM5-80GB, tp: 1},
                  Llama-3.1-70B: {gpu: H100-SXM5-80GB, tp: 4}}
"""
    path = tmp_path / "pools.yaml"
    path.write_text(base.replace("GPUS", "16"))
    sc = load_scenario(path)
    # 16 GPUs split by demand share: 8B 0.6 x 16 = 9 replicas, 70B 0.4 x 16 / 4 = 1.
    assert sc.sites[0].reserved == {"Llama-3.1-8B": 9, "Llama-3.1-70B": 1}
    path.write_text(base.replace("GPUS", "12"))
    with pytest.raises(SlitInputError) as err:
        load_scenario(path)
    assert "gpus" in err.value.where and "8-GPU nodes" in err.value.problem
