"""``slit sweep``: the spec's checks, a small sweep end to end on Ray's local mode, resume and a
failing cell, and the savings the report plots."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scenario_helpers import run_slit, write_tiny

from slit.errors import SlitInputError
from slit.sweep.report import savings
from slit.sweep.runner import read_table
from slit.sweep.spec import Variant, apply_variant, load_sweep

# Two days inside the real data and one (2010) outside it: that cell fails when its signals load,
# after the spec has been accepted, as a cell of a real sweep can.
SWEEP_YAML = """\
name: tiny-sweep
base: tiny.yaml
data_dir: {data_dir}
hours: 1
start_hour_utc: 12
days: [2023-07-12, 2023-02-08, 2010-01-06]
policies: [slit, latency_first]
"""


def _write_sweep(folder: Path, data_dir: Path, text: str = SWEEP_YAML) -> Path:
    write_tiny(folder)
    path = folder / "sweep.yaml"
    path.write_text(text.format(data_dir=data_dir), encoding="utf-8")
    return path


@pytest.mark.slow
def test_sweep_end_to_end_resume_and_failing_cell(ray_local, data_dir, tmp_path, capsys,
                                                  monkeypatch):
    spec = _write_sweep(tmp_path, data_dir)
    out = tmp_path / "out"
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, stderr
    assert "3 cells: 0 already done, 2 run, 1 failed" in stdout
    table = pd.read_parquet(out / "results.parquet")
    done = table[table["status"] == "done"]
    # One row per finished cell and policy, each with its own figures.
    assert sorted(done.groupby("cell_id")["policy"].apply(sorted).tolist()) == \
        [["latency_first", "slit"]] * 2
    assert (done["requests"] > 0).all() and (done["carbon_kg"] > 0).all()
    assert done[done["policy"] == "slit"]["carbon_kg"].nunique() == 2  # days differ
    assert (done["preference_score"] > 0).all()  # each policy's score, as slit run prints it
    failed = table[table["status"] == "failed"]
    assert failed["cell_id"].tolist() == ["2010-01-06_default_slobase_s0"]
    assert "has no data" in failed["error"].iloc[0]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Carbon saving by month" in html and "Worst cells" in html
    assert "Preference score saving by month" in html
    assert "2010-01-06_default_slobase_s0" in html  # the failed cell is listed

    # Resume: the finished cells are not run again (their files are untouched); the failed one
    # is retried and fails again.
    cell_files = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("2023-*.parquet")}
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, stderr
    assert "3 cells: 2 already done, 0 run, 1 failed" in stdout
    assert {p.name: p.stat().st_mtime_ns
            for p in (out / "cells").glob("2023-*.parquet")} == cell_files
    assert len(read_table(out)) == len(table)


def test_an_interrupted_sweep_writes_what_it_has_and_resumes(ray_local, data_dir, tmp_path,
                                                             capsys, monkeypatch):
    # Three cells outside the data (each fails within seconds); Ctrl-C arrives as soon as the
    # first has finished, while the second is in flight and the third waits.
    import slit.cli.sweep_commands as commands

    spec = _write_sweep(tmp_path, data_dir, SWEEP_YAML.replace(
        "[2023-07-12, 2023-02-08, 2010-01-06]", "[2010-01-06, 2010-01-13, 2010-01-20]"))
    out = tmp_path / "out"
    real_progress = commands.sweep_progress

    @contextmanager
    def ctrl_c_after_first_cell(console):
        with real_progress(console) as report:
            def report_then_stop(done: int, running: int, failed: int, total: int) -> None:
                report(done, running, failed, total)
                if done + failed >= 1:
                    raise KeyboardInterrupt
            yield report_then_stop

    monkeypatch.setattr(commands, "sweep_progress", ctrl_c_after_first_cell)
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 130, stdout + stderr
    assert "3 cells: 0 already done, 0 run, 1 failed; interrupted with 2 not run" in stdout
    assert "the same command resumes the sweep" in stdout
    table = pd.read_parquet(out / "results.parquet")  # the table and report of what finished
    assert len(table) == 1 and table["status"].tolist() == ["failed"]
    assert table["cell_id"].iloc[0] in (out / "report.html").read_text(encoding="utf-8")
    assert len(list((out / "cells").glob("*.parquet"))) == 1  # the cancelled cell left nothing

    monkeypatch.setattr(commands, "sweep_progress", real_progress)
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, stderr
    assert "3 cells: 0 already done, 0 run, 3 failed; wrote" in stdout
    assert len(pd.read_parquet(out / "results.parquet")) == 3


def test_a_resume_on_changed_code_warns_and_rows_name_their_code(ray_local, data_dir, tmp_path,
                                                                 capsys, monkeypatch):
    from slit.sweep.runner import code_fingerprint

    spec = _write_sweep(tmp_path, data_dir, SWEEP_YAML.replace(
        "[2023-07-12, 2023-02-08, 2010-01-06]", "[2010-01-06, 2010-01-13]"))
    out = tmp_path / "out"
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, stderr
    assert "warning" not in stdout  # nothing was resumed
    assert "versions of slit" not in (out / "report.html").read_text(encoding="utf-8")
    table = pd.read_parquet(out / "results.parquet")
    assert table["code"].tolist() == [code_fingerprint()] * 2  # failed rows name it too
    # One cell as an earlier version of slit would have left it: done, by other code.
    first = out / "cells" / "2010-01-06_default_slobase_s0.parquet"
    pd.DataFrame([{"cell_id": first.stem, "policy": "slit", "status": "done",
                   "code": "zz-old-code"}]).to_parquet(first, index=False)
    code, stdout, stderr = run_slit(["sweep", str(spec), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, stderr
    assert "2 cells: 1 already done, 0 run, 1 failed" in stdout
    assert "warning: 1 of the 1 cells already done were run by other slit code" in stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Cells come from 2 versions of slit's code (cells per version: " \
           f"{code_fingerprint()}: 1, zz-old-code: 1)" in html  # hex sorts before z
    assert pd.read_parquet(out / "cells" / "2010-01-13_default_slobase_s0.parquet")[
        "code"].tolist() == [code_fingerprint()]


def test_code_fingerprint_follows_the_package_files(tmp_path, monkeypatch):
    import slit.sweep.runner as runner

    package = tmp_path / "slit"
    (package / "sweep").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    module = package / "sweep" / "runner.py"
    module.write_text("x = 1\n", encoding="utf-8")
    monkeypatch.setattr(runner, "__file__", str(module))

    def fingerprint() -> str:
        runner.code_fingerprint.cache_clear()
        return runner.code_fingerprint()

    try:
        before = fingerprint()
        (package / "__pycache__" / "runner.cpython-311.pyc").write_bytes(b"cache")
        assert fingerprint() == before  # caches are not code
        module.write_text("x = 2\n", encoding="utf-8")
        assert fingerprint() != before
    finally:
        runner.code_fingerprint.cache_clear()


def test_sigterm_stops_a_sweep_as_ctrl_c_does():
    from slit.cli.sweep_commands import terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_different_sweep_never_resumes_a_folder(ray_local, data_dir, tmp_path):
    from slit.sweep.runner import run_sweep

    out = tmp_path / "out"
    (out / "cells").mkdir(parents=True)
    (out / "sweep.json").write_text('{"fingerprint": "someone-else"}', encoding="utf-8")
    sweep = load_sweep(_write_sweep(tmp_path, data_dir))
    with pytest.raises(SlitInputError, match="different sweep"):
        run_sweep(sweep, out)


@pytest.mark.parametrize(("line", "field", "problem"), [
    ("policies: [slit, nope]", "policies", "unknown policy 'nope'"),
    ("policies: [latency_first]", "policies", "`slit` is not among the policies"),
    ("day_range: {first: 2023-03-01, last: 2023-02-01}", "day_range.last", "is before first"),
    ("seeds: [-1]", "seeds", "a seed is negative"),
    ("colour: red", "colour", ""),
    ("variants: [{name: a, gpu: H100-SXM5-80GB}]", "variants", "give `gpu` and `tp` together"),
])
def test_spec_errors_name_file_and_field(tmp_path, line, field, problem):
    write_tiny(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nbase: tiny.yaml\n{line}\n", encoding="utf-8")
    with pytest.raises(SlitInputError) as err:
        load_sweep(path)
    assert err.value.where.startswith(f"{path}: {field}")
    assert "(line 3)" in err.value.where
    assert problem in err.value.problem


def test_a_bad_variant_override_fails_before_any_cell_runs(tmp_path):
    write_tiny(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nbase: tiny.yaml\nvariants:\n  - {name: v, overrides: "
                    "{workload: {global_rate_rps: -3}}}\n", encoding="utf-8")
    with pytest.raises(SlitInputError) as err:
        load_sweep(path)
    assert "variant v" in err.value.where and "global_rate_rps" in err.value.where


def test_sweep_cli_reports_spec_errors_on_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nhours: -1\n", encoding="utf-8")
    code, _, stderr = run_slit(["sweep", str(path)], capsys, monkeypatch)
    assert code == 2 and stderr.count("\n") == 1 and "hours" in stderr


def test_grid_is_the_product_of_its_axes(tmp_path):
    write_tiny(tmp_path)
    path = tmp_path / "grid.yaml"
    path.write_text("name: g\nbase: tiny.yaml\nday_range: {first: 2023-01-04, last: 2023-01-31, "
                    "every_days: 7}\nslo_ttft_s: [1.0, 3.0]\nseeds: [0, 1]\nvariants:\n"
                    "  - {name: a}\n  - {name: b, overrides: {workload: {global_rate_rps: 4}}}\n",
                    encoding="utf-8")
    sweep = load_sweep(path)
    cells = sweep.cells()
    assert len(cells) == 4 * 2 * 2 * 2 and len({c.cell_id for c in cells}) == len(cells)
    b = next(c for c in cells if c.variant == "b" and c.slo_ttft_s == 3.0 and c.seed == 1)
    scenario = sweep.scenario(b)
    assert scenario.demand.global_rate_rps == 4 and scenario.slo_ttft_s == 3.0
    assert scenario.seed == 1 and scenario.start_utc == pd.Timestamp("2023-01-04 00:00", tz="UTC")


def test_variants_resize_the_fleet():
    from slit.experiment.scenario import default_scenario
    from slit.simulate.capacity import slo_capacity_rps

    base = default_scenario(hours=1, global_rate_rps=100.0)  # fleets above one node a site
    tight = apply_variant(base, Variant(name="t", peak_headroom=1.2))
    week = pd.date_range(base.start_utc, periods=7 * 96, freq="15min")
    peak = base.demand.rate_rps(week).max(axis=0)
    for k, site in enumerate(tight.sites):
        for model in base.models:
            spec = site.replica_for[model.name]
            unit = slo_capacity_rps(spec, model.code_share)
            capacity = site.reserved[model.name] * unit
            need = 1.2 * peak[k] * model.demand_share
            assert need <= capacity < max(need, 0) + unit, (site.region_id, model.name)
        assert site.fits(site.reserved)
    # Default fleets are sized at 70 % utilisation (1.43x peak): the tight fleet is smaller.
    def replicas(scenario):
        return sum(sum(s.reserved.values()) for s in scenario.sites)
    assert replicas(tight) < replicas(base)
    homogeneous = apply_variant(base, Variant(name="h", gpu="H100-SXM5-80GB", tp=4))
    gpus = {spec.gpu for s in homogeneous.sites for spec in s.replica_for.values()}
    assert gpus == {"H100-SXM5-80GB"}
    for site in homogeneous.sites:
        assert set(site.gpus) == {"H100-SXM5-80GB"} and site.fits(site.reserved)
        assert site.replica_for["Llama-3.1-8B"].tp == 1
        assert site.replica_for["Llama-3.1-70B"].tp == 4


def test_savings_are_percent_of_each_baseline():
    rows = []
    for cell, slit_carbon, slit_score in (("c1", 80.0, 0.45), ("c2", 120.0, float("nan"))):
        for policy, carbon, score in (("slit", slit_carbon, slit_score),
                                      ("latency_first", 100.0, 0.5)):
            rows.append({"cell_id": cell, "day": pd.Timestamp("2023-01-01"), "month": 1,
                         "variant": "default", "slo_ttft_s": 1.5, "seed": 0, "policy": policy,
                         "status": "done", "carbon_kg": carbon, "water_l": 10.0,
                         "cost_usd": 5.0, "energy_kwh": 50.0, "slo_attainment_pct": 99.0,
                         "preference_score": score})
    rows.append({"cell_id": "c3", "policy": None, "status": "failed", "error": "boom"})
    frame = savings(pd.DataFrame(rows)).set_index("cell_id")
    assert frame.loc["c1", "saving_carbon_kg_pct"] == pytest.approx(20.0)
    assert frame.loc["c2", "saving_carbon_kg_pct"] == pytest.approx(-20.0)
    assert frame.loc["c1", "saving_water_l_pct"] == pytest.approx(0.0)
    # The score is lower-is-better like the footprints: SLIT 0.45 vs 0.5 saves 10 %.
    assert frame.loc["c1", "saving_preference_score_pct"] == pytest.approx(10.0)
    assert np.isnan(frame.loc["c2", "saving_preference_score_pct"])
    assert "c3" not in frame.index


def test_savings_of_cells_written_before_the_score_was_recorded_are_nan():
    rows = [{"cell_id": "old", "day": pd.Timestamp("2023-01-01"), "month": 1,
             "variant": "default", "slo_ttft_s": 1.5, "seed": 0, "policy": policy,
             "status": "done", "carbon_kg": carbon, "water_l": 10.0, "cost_usd": 5.0,
             "energy_kwh": 50.0, "slo_attainment_pct": 99.0}
            for policy, carbon in (("slit", 80.0), ("milp", 100.0))]
    frame = savings(pd.DataFrame(rows)).set_index("cell_id")
    assert frame.loc["old", "saving_carbon_kg_pct"] == pytest.approx(20.0)
    assert np.isnan(frame.loc["old", "saving_preference_score_pct"])




def test_site_simulations_on_ray_match_the_serial_run(ray_local, tmp_path, monkeypatch):
    """Sites as Ray tasks give the same figures as one after another in this process."""
    import slit.parallel as parallel
    from slit.config import load_scenario
    from slit.experiment.run import run_experiment

    scenario = load_scenario(write_tiny(tmp_path))
    assert parallel.ray_driver()
    on_ray = run_experiment(scenario, ("latency_first",))
    monkeypatch.setattr(parallel, "ray_driver", lambda: False)
    serial = run_experiment(scenario, ("latency_first",))
    assert on_ray.metrics == serial.metrics


def test_surrogate_training_runs_on_ray_match_the_serial_runs(ray_local, monkeypatch):
    """The surrogate's training simulations as Ray tasks give the same rows, in the same order,
    and report progress up to the total."""
    import slit.parallel as parallel
    from slit.optimise.surrogate_design import SurrogateSpec, simulate_samples
    from slit.serving.catalog import make_replica

    spec = SurrogateSpec(replicas=(make_replica("Llama-3.1-8B", "H100-SXM5-80GB", 1),),
                         code_shares=(0.3,), n_awake=(1, 3), utilisations=3, min_requests=400,
                         max_duration_s=400.0)
    seen: list[tuple[int, int]] = []
    on_ray = simulate_samples(spec, lambda done, total: seen.append((done, total)))
    assert sorted(seen) == [(n, 6) for n in range(1, 7)]
    monkeypatch.setattr(parallel, "ray_driver", lambda: False)
    serial = simulate_samples(spec)
    assert on_ray.equals(serial)
    assert list(serial["run"]) == list(range(6))


def test_parallel_map_reports_each_call_in_order_when_serial(monkeypatch):
    import slit.parallel as parallel
    from slit.parallel import parallel_map

    monkeypatch.setattr(parallel, "ray_driver", lambda: False)
    done: list[int] = []
    assert parallel_map(lambda x: x * x, iter([3, 1, 2]), done.append) == [9, 1, 4]
    assert done == [1, 2, 3]
