"""The scenario files shipped in scenarios/ and the sweeps in sweeps/ load, and say what their
comments claim."""

from __future__ import annotations

import importlib.util
from datetime import date
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slit.config import load_scenario
from slit.data.regions import get_region
from slit.experiment.scenario import default_scenario
from slit.experiment.settings import ScenarioFile

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
SWEEPS = ROOT / "sweeps"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenario_loads(path: Path) -> None:
    if "events" in yaml.safe_load(path.read_text(encoding="utf-8")) \
            and "events" not in ScenarioFile.model_fields:
        pytest.skip("the events: section is not in the scenario schema yet")
    scenario = load_scenario(path)
    assert scenario.sites


def test_homogeneous_fleet_is_one_gpu_generation_sized_like_the_default() -> None:
    homogeneous = load_scenario(SCENARIOS / "homogeneous.yaml")
    default = default_scenario()
    gpus = {spec.gpu for site in homogeneous.sites for spec in site.replica_for.values()}
    assert gpus == {"H100-SXM5-80GB"}
    assert homogeneous.site_ids == default.site_ids
    assert homogeneous.model_names == default.model_names
    assert homogeneous.demand.origins == default.demand.origins
    assert homogeneous.start_utc == default.start_utc and homogeneous.hours == default.hours
    # Where the default already runs H100 the two fleets are the same site for site.
    for mine, theirs in zip(homogeneous.sites, default.sites, strict=True):
        if {s.gpu for s in theirs.replica_for.values()} == {"H100-SXM5-80GB"}:
            assert (mine.gpus, mine.reserved) == (theirs.gpus, theirs.reserved), mine.region_id


def test_homogeneous_file_is_what_the_script_writes() -> None:
    # Stale if the sizing rule changes: rerun scripts/make_homogeneous.py.
    spec = importlib.util.spec_from_file_location("make_homogeneous",
                                                  ROOT / "scripts" / "make_homogeneous.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    on_disk = yaml.safe_load((SCENARIOS / "homogeneous.yaml").read_text(encoding="utf-8"))
    assert on_disk == module.homogeneous_document()


def test_fault_scenarios_say_what_their_comments_claim() -> None:
    from slit.experiment.events import Derate, Outage

    outage = load_scenario(SCENARIOS / "outage.yaml")
    assert [type(e) for e in outage.events] == [Outage]
    event = outage.events[0]
    assert event.site == "DE-LU" and event.end_utc - event.start_utc == pd.Timedelta(hours=2)
    assert outage.start_utc <= event.start_utc and event.end_utc <= outage.end_utc
    derate = load_scenario(SCENARIOS / "derate.yaml")
    assert all(isinstance(e, Derate) and e.gpu_fraction == 0.6 for e in derate.events)
    assert {e.site for e in derate.events} == {"JP-TK", "US-MIDA-PJM", "US-TEX-ERCO"}
    for e in derate.events:  # each derate is its site's local 12:00-18:00
        tz = get_region(e.site).timezone
        assert (e.start_utc.tz_convert(tz).hour, e.end_utc.tz_convert(tz).hour) == (12, 18)


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_builds_its_first_and_last_cell(path: Path, data_dir: Path) -> None:
    from slit.sweep.spec import load_sweep

    sweep = load_sweep(path, data_dir)
    cells = sweep.cells()
    for cell in (cells[0], cells[-1]):  # the year's ends: inside the data, with history before
        scenario = sweep.scenario(cell)
        assert scenario.start_utc.date() == cell.day
        assert scenario.hours == sweep.spec.hours


def test_year_sweeps_are_the_days_their_comments_name(data_dir: Path) -> None:
    from slit.sweep.spec import load_sweep

    def days(name: str) -> list[date]:
        return [c.day for c in load_sweep(SWEEPS / f"{name}.yaml", data_dir).cells()]

    year = days("year-2023")
    assert len(year) == 49 and {(b - a).days for a, b in pairwise(year)} == {7}
    assert days("year-2023-weekly") == year  # the same days, 2 h each
    assert days("year-2023-days") == year[::4] and len(year[::4]) == 13  # every fourth week
    assert len(days("year-2023-monthly")) == 12
    hours = {name: load_sweep(SWEEPS / f"{name}.yaml", data_dir).spec.hours
             for name in ("year-2023", "year-2023-days", "year-2023-weekly")}
    assert hours == {"year-2023": 24, "year-2023-days": 24, "year-2023-weekly": 2}
