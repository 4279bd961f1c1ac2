"""Planning through data gaps and short histories: the forecasters fall back (never zero, never
from later data), the run hides gaps from the planner, flags them, and the judge keeps (or
interpolates) the real values; a run in a year the project never saw completes."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scenario_helpers import TINY_YAML, run_slit, write_tiny

from slit.config import load_scenario
from slit.data.signals import CARBON_DIRECT, PRICE, TEMP
from slit.data.source import DataSource, get_signals
from slit.experiment.events import SignalGap
from slit.experiment.run import data_gaps, interval_problem, prepare
from slit.experiment.settings import ScenarioFile
from slit.forecast.history import WET_BULB, load_history
from slit.forecast.signals import (
    ANCHORED,
    LAST_GOOD,
    MODEL,
    PRIOR,
    PROFILE,
    LgbmSettings,
    SignalForecaster,
    _fallback,
    fill_causally,
    prior_profiles,
)

SIGNALS = (CARBON_DIRECT, PRICE, TEMP, WET_BULB)
SMALL = LgbmSettings(train_window_days=40, n_estimators=30)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def history(data_dir: Path) -> pd.DataFrame:
    return load_history(DataSource(data_dir), "DE-LU", "2023-03-01", "2023-05-01")


def test_fallbacks_are_what_they_say_on_a_daily_cycle() -> None:
    hours = np.arange(24 * 10)
    cycle = 100 + 30 * np.sin(2 * np.pi * hours / 24)
    observed = np.ones(len(hours), bool)
    begin = 24 * 8 + 5
    # A pure daily cycle: the profile is the cycle itself; the last good value is flat.
    profile = _fallback(cycle, observed, begin, 12, PROFILE, None)
    np.testing.assert_allclose(profile, cycle[begin:begin + 12])
    assert (_fallback(cycle, observed, begin, 12, LAST_GOOD, None) == cycle[begin - 1]).all()
    # Anchored: a level 20 above the week's starts 20 above the profile and fades (24 h half-life).
    shifted = cycle.copy()
    shifted[begin - 1] += 20.0
    anchored = _fallback(shifted, observed, begin, 48, ANCHORED, None)
    excess = anchored - _fallback(shifted, observed, begin, 48, PROFILE, None)
    assert excess[0] == pytest.approx(20.0 * (1 - 1 / 7) * 0.5 ** (1 / 24), rel=1e-9)
    assert excess[-1] == pytest.approx(excess[0] * 0.5 ** (47 / 24), rel=1e-9)


def test_causal_fill_uses_only_hours_before_each_gap() -> None:
    rng = np.random.default_rng(0)
    raw = 200 + rng.normal(0, 10, 24 * 12)
    raw[200:210] = np.nan
    filled = fill_causally(raw, PROFILE, None)
    later = raw.copy()
    later[210:] = 1e9  # what comes after the gap must not reach into it
    np.testing.assert_array_equal(fill_causally(later, PROFILE, None)[:210], filled[:210])
    assert np.isfinite(filled).all() and (filled[200:210] > 150).all()


def test_a_gap_falls_back_flagged_and_never_reads_later_data(history: pd.DataFrame) -> None:
    cut = pd.Timestamp("2023-04-01", tz="UTC")
    gap_start, issue = pd.Timestamp("2023-04-10 06:00", tz="UTC"), \
        pd.Timestamp("2023-04-10 09:20", tz="UTC")
    hidden = pd.DataFrame(False, index=history.index, columns=list(SIGNALS))
    hidden.loc[(history.index >= gap_start) & (history.index < gap_start
                                                  + pd.Timedelta(hours=6)), CARBON_DIRECT] = True
    forecasts = []
    for frame in (history, history.assign(**{CARBON_DIRECT: np.where(
            history.index >= gap_start, 1e6, history[CARBON_DIRECT])})):
        forecaster = SignalForecaster(SIGNALS, "Europe/Berlin", settings=SMALL).hide(hidden)
        forecaster.fit(frame[frame.index < cut]).observe(frame[frame.index >= cut])
        forecasts.append(forecaster.forecast(issue, 4))
    first, corrupted = forecasts
    assert first.methods[CARBON_DIRECT] == ANCHORED
    assert first.methods[PRICE] == first.methods[TEMP] == MODEL
    assert first.fallback == {CARBON_DIRECT: ANCHORED}
    # The carbon the planner is given inside the gap is the same whatever the gap held ...
    pd.testing.assert_series_equal(first.values[CARBON_DIRECT], corrupted.values[CARBON_DIRECT])
    # ... and it is a plausible carbon intensity, not zero and not the hidden values.
    week = history.loc[gap_start - pd.Timedelta(days=7):gap_start, CARBON_DIRECT]
    assert (first.values[CARBON_DIRECT] > 0.2 * week.min()).all()
    assert (first.values[CARBON_DIRECT] < 1.5 * week.max()).all()
    # After the gap the model is back, on a history whose gap was filled causally.
    after = forecaster.forecast(gap_start + pd.Timedelta(hours=8), 1)
    assert after.methods[CARBON_DIRECT] == MODEL


def test_short_or_empty_history_uses_profile_then_prior(history: pd.DataFrame) -> None:
    prior = prior_profiles("DE-LU", SIGNALS)
    short = history.iloc[:100]
    forecaster = SignalForecaster(SIGNALS, "Europe/Berlin", prior=prior).fit(short)
    forecast = forecaster.forecast(short.index[-1] + pd.Timedelta(hours=1), 3)
    assert forecast.short_history and set(forecast.methods.values()) == {PROFILE}
    assert np.isfinite(forecast.values.to_numpy()).all()
    # Nothing observed at all (a run at the first hour of the data): the prior, never zero.
    empty = short.copy()
    empty.loc[:, list(SIGNALS)] = np.nan
    blind = SignalForecaster(SIGNALS, "Europe/Berlin", prior=prior).fit(empty)
    forecast = blind.forecast(empty.index[-1] + pd.Timedelta(hours=1), 2)
    assert set(forecast.methods.values()) == {PRIOR}
    target = forecast.values.index[0]
    assert forecast.values.loc[target, CARBON_DIRECT] == pytest.approx(
        prior[CARBON_DIRECT][target.month - 1, target.hour])
    assert (forecast.values[CARBON_DIRECT] > 0).all()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("gaps"))


def _with_data(scenario_file: Path, data_dir: Path):
    return load_scenario(scenario_file, data_dir=DataSource(data_dir))


def test_signal_gap_event_hides_carbon_from_the_planner_not_the_judge(tiny: Path,
                                                                      data_dir: Path) -> None:
    base = _with_data(tiny, data_dir)
    start = base.start_utc
    gap = SignalGap(start - pd.Timedelta(hours=2), start + pd.Timedelta(hours=4), "DE-LU",
                    ("carbon",))
    scenario = replace(base, events=(gap,)).for_model(base.model_names[0])
    prepared = prepare(scenario)
    problems = [interval_problem(prepared, k) for k in range(scenario.n_intervals)]
    clean = prepare(base.for_model(base.model_names[0]))
    clean_problems = [interval_problem(clean, k) for k in range(scenario.n_intervals)]
    de = scenario.site_ids.index("DE-LU")
    for with_gap, without in zip(problems, clean_problems, strict=True):
        # Carbon at DE-LU comes from the fallback (different, positive); other sites unchanged.
        assert with_gap.carbon_kg_per_kwh_it[de] != without.carbon_kg_per_kwh_it[de]
        assert with_gap.carbon_kg_per_kwh_it[de] > 0
        others = [s for s in range(len(scenario.site_ids)) if s != de]
        np.testing.assert_array_equal(with_gap.carbon_kg_per_kwh_it[others],
                                      without.carbon_kg_per_kwh_it[others])
        np.testing.assert_array_equal(with_gap.cost_usd_per_kwh_it, without.cost_usd_per_kwh_it)
    # The judge's signals are the real ones.
    real = get_signals(DataSource(data_dir), "DE-LU", start, scenario.end_utc)
    np.testing.assert_array_equal(prepared.actual["DE-LU"][CARBON_DIRECT].to_numpy(),
                                  real[CARBON_DIRECT].to_numpy())
    flags = data_gaps(scenario, prepared)
    rows = flags["planner_fallbacks"]
    assert [(r["interval"], r["region"]) for r in rows] == [
        (k, "DE-LU") for k in range(scenario.n_intervals)]
    assert all(r["signals"] == {"carbon": {"method": ANCHORED, "reason": "signal_gap"}}
               for r in rows)
    assert flags["judge_interpolated"] == {} and flags["short_history"] == {}


def test_missing_hours_in_the_data_are_planned_through_and_interpolated_by_the_judge(
        tiny: Path, data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    for region in ("US-CAL-CISO", "DE-LU", "SG"):
        shutil.copytree(data_dir / "regions" / region, copy / "regions" / region)
    (copy / "traces").symlink_to(data_dir / "traces")
    # Drop SG's prices from 08:00 to 15:00 UTC on the run's day (7 rows: longer than the 3 h
    # the reader interpolates).
    path = copy / "regions" / "SG" / "2023" / "electricity_price.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if not re.match(r"2023-07-12 (0[89]|1[0-4]):", ln)]
    assert len(lines) - len(kept) == 7
    path.write_text("".join(kept), encoding="utf-8")
    base = _with_data(tiny, copy)
    scenario = base.for_model(base.model_names[0])
    prepared = prepare(scenario)
    for k in range(scenario.n_intervals):
        problem = interval_problem(prepared, k)
        assert np.isfinite(problem.cost_usd_per_kwh_it).all()
    flags = data_gaps(scenario, prepared)
    assert {r["region"] for r in flags["planner_fallbacks"]} == {"SG"}
    assert all(r["signals"] == {"price": {"method": PROFILE, "reason": "data_missing"}}
               for r in flags["planner_fallbacks"])
    assert flags["judge_interpolated"] == {"SG": {"price": {
        "hours": 1, "first_utc": "2023-07-12T12:00:00Z", "last_utc": "2023-07-12T12:00:00Z",
        "judge_uses": "interpolation"}}}
    price = prepared.actual["SG"][PRICE]
    assert np.isfinite(price.to_numpy()).all()


def _relabel_year(data_dir: Path, out: Path, regions: tuple[str, ...], year: int) -> None:
    """``data_dir``'s 2023 files of ``regions`` relabelled as ``year`` (a year never seen)."""
    shift = year - 2023
    for region in regions:
        source = data_dir / "regions" / region / "2023"
        target = out / "regions" / region / str(year)
        target.mkdir(parents=True)
        for name in ("carbon_intensity.csv", "electricity_price.csv"):
            text = (source / name).read_text(encoding="utf-8")
            text = re.sub(r"(?m)(^|,)(202[234])-",
                          lambda m: f"{m.group(1)}{int(m.group(2)) + shift}-", text)
            (target / name).write_text(text, encoding="utf-8")
        doc = json.loads((source / "weather.json").read_text(encoding="utf-8"))
        doc["hourly"]["time"] = [f"{int(t[:4]) + shift}{t[4:]}" for t in doc["hourly"]["time"]]
        (target / "weather.json").write_text(json.dumps(doc), encoding="utf-8")
    (out / "traces").symlink_to(data_dir / "traces")


def test_run_and_plan_in_an_unseen_year_with_16_days_of_history(
        data_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    data = tmp_path / "data2031"
    _relabel_year(data_dir, data, ("US-CAL-CISO", "DE-LU", "SG"), 2031)
    text = TINY_YAML.replace('period: {start_utc: "2023-07-12T12:00", hours: 1}',
                             'period: {start_utc: "2031-01-17T00:00", hours: 0.25}')
    text += f"data_dir: {data}\n"
    scenario_file = write_tiny(tmp_path, text, "y2031.yaml")
    out = tmp_path / "out"
    code, _, err = run_slit(["run", str(scenario_file), "--out", str(out), "--workers", "1"],
                            capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["scenario"]["start_utc"].startswith("2031-01-17")
    short = doc["data_gaps"]["short_history"]
    assert set(short) == {"US-CAL-CISO", "DE-LU", "SG"}
    assert short["SG"] == {"wanted_h": 28 * 24,
                           "observed_h": {"carbon": 384, "price": 384, "weather": 384}}
    assert "Data gaps" in (out / "report.html").read_text(encoding="utf-8")
    code, printed, err = run_slit(["plan", "--at", "2031-01-17T00:15", "--scenario",
                                   str(scenario_file)], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(printed)["interval"]["start_utc"] == "2031-01-17T00:15:00Z"
    # A period outside the data is still refused, on one line.
    code, _, err = run_slit(["plan", "--at", "2032-01-17T00:15", "--scenario",
                             str(scenario_file)], capsys, monkeypatch)
    assert code == 2 and "2031-2031" in err


@pytest.mark.skipif("events" not in ScenarioFile.model_fields,
                    reason="the events: section is not in the scenario schema yet")
def test_gap_scenario_hides_six_hours_of_carbon_in_three_regions() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "gap.yaml")
    gaps = [e for e in scenario.events if isinstance(e, SignalGap)]
    assert sorted(g.region for g in gaps) == ["DE-LU", "IN-WE", "US-CAL-CISO"]
    for gap in gaps:
        assert gap.signals == ("carbon",)
        assert gap.end_utc - gap.start_utc == pd.Timedelta(hours=6)
        assert scenario.start_utc <= gap.start_utc and gap.end_utc <= scenario.end_utc
    assert yaml.safe_load((ROOT / "scenarios" / "gap.yaml").read_text())["fleet"] == "default"
