"""Malformed inputs (scenario files, data files, traces, command arguments): each gives one
line ``error: <where>: <problem>; <fix>``, exit code 2, no traceback, and writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scenario_helpers import TINY_YAML, run_slit

# (case id, scenario text or None to leave the file out, text the error must contain)
BAD_SCENARIOS: list[tuple[str, str | None, str]] = [
    ("missing-file", None, "does not exist; give the path of a scenario file"),
    ("empty-file", "", "is empty"),
    ("yaml-syntax", "name: tiny\nsites: [a, b\n", "line 3, column 1: YAML syntax"),
    ("not-a-mapping", "- a\n- b\n", "holds a list, not a mapping"),
    ("unknown-key", TINY_YAML + "intervall_s: 600\n",
     "intervall_s (line 16): is not a known setting; remove it or use one of"),
    ("unknown-region", TINY_YAML.replace("region: SG", "region: XX"),
     "sites[2].region (line 7): unknown region 'XX'"),
    ("unknown-model", TINY_YAML.replace("model: Llama-3.1-70B", "model: GPT-5"),
     "model (line 3): unknown model 'GPT-5'"),
    ("replica-does-not-fit", TINY_YAML.replace("tp: 4, installed_replicas: 3}", "tp: 1, "
                                               "installed_replicas: 3}", 1),
     "sites[0] (US-CAL-CISO): replica Llama-3.1-70B on 1x H100-SXM5-80GB: weights"),
    ("zero-replicas", TINY_YAML.replace("installed_replicas: 3}", "installed_replicas: 0}", 1),
     "sites[0].installed_replicas (line 5): 0 is out of range; give a value >= 1"),
    ("bad-cooling", TINY_YAML.replace("cooling: dry", "cooling: liquid"),
     "sites[1].cooling (line 6): 'liquid' is not allowed; use one of: 'evaporative' or 'dry'"),
    ("site-twice", TINY_YAML.replace("region: SG", "region: DE-LU"),
     "sites[2].region (line 7): region DE-LU appears twice"),
    ("fleet-and-sites", TINY_YAML + "fleet: default\n", "sites (line 4): give either"),
    ("weights-length", TINY_YAML.replace("global_rate_rps: 8", "global_rate_rps: 8\n  "
                                         "weights: [0.5, 0.5]"),
     "workload.weights (line 11): 2 shares summing to 1; give 3 shares"),
    ("trace-kind", TINY_YAML.replace("global_rate_rps: 8", "global_rate_rps: 8\n  "
                                     "trace_mix: {chat: 1.0}"),
     "unknown trace kind 'chat'"),
    ("negative-rate", TINY_YAML.replace("global_rate_rps: 8", "global_rate_rps: -8"),
     "workload.global_rate_rps (line 10): -8 is out of range; give a value > 0"),
    ("rate-with-unit", TINY_YAML.replace("global_rate_rps: 8", "global_rate_rps: 8 rps"),
     "'8 rps' is not a number; give a plain number"),
    ("bad-date", TINY_YAML.replace("2023-07-12T12:00", "2023-13-45T12:00"),
     "period.start_utc (line 11): '2023-13-45T12:00' is not a date and time"),
    ("start-inside-hour", TINY_YAML.replace("2023-07-12T12:00", "2023-07-12T12:30"),
     "is not on a whole hour"),
    ("zero-hours", TINY_YAML.replace("hours: 1", "hours: 0"), "period.hours (line 11)"),
    ("odd-interval", TINY_YAML.replace("interval_s: 900", "interval_s: 901"),
     "interval_s (line 12): 901 s is not a whole number of minutes"),
    ("slo-percentile", TINY_YAML.replace("percentile: 99", "percentile: 90"),
     "slo.percentile (line 13): 90 is not allowed; use one of: 95 or 99"),
    ("preference-mode", TINY_YAML + "preference: {mode: pareto}\n",
     "preference.mode (line 16): 'pareto' is not allowed"),
    ("unknown-objective", TINY_YAML + "preference: {minimise: noise_db}\n",
     "preference.minimise (line 16)"),
    ("zero-weights", TINY_YAML + "preference: {weights: {carbon_kg: 0}}\n",
     "no weight is positive"),
    ("pin-unknown-origin", TINY_YAML.replace("pins: {DE-LU: [DE-LU]}", "pins: {KR: [SG]}"),
     "pins.KR (line 14): KR is not a workload origin; pin one of: US-CAL-CISO DE-LU SG"),
    ("pin-unknown-site", TINY_YAML.replace("pins: {DE-LU: [DE-LU]}", "pins: {DE-LU: [KR]}"),
     "pins.DE-LU (line 14): site KR is not in the fleet; pin DE-LU to sites from: "
     "US-CAL-CISO DE-LU SG"),
    ("missing-data-dir", TINY_YAML + "data_dir: nowhere\n", "nowhere is not a directory"),
    ("carbon-basis", TINY_YAML + "carbon_basis: total\n",
     "carbon_basis (line 16): 'total' is not allowed; use one of: 'direct' or 'lca'"),
    ("tiny-population", TINY_YAML.replace("population: 16", "population: 0"),
     "search.population (line 15): 0 is out of range; give a value >= 4"),
    ("negative-seed", TINY_YAML.replace("seed: 0", "seed: -1"), "seed (line 2)"),
    ("no-period", TINY_YAML.replace('period: {start_utc: "2023-07-12T12:00", hours: 1}\n', ""),
     "period: is missing; add `period:`"),
]


def _assert_clean_error(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert "; " in lines[0]  # problem; fix


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_SCENARIOS],
                         ids=[c[0] for c in BAD_SCENARIOS])
def test_bad_scenario_file(text: str | None, expected: str, tmp_path: Path, capsys,
                           monkeypatch) -> None:
    path = tmp_path / "scenario.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    before = sorted(tmp_path.iterdir())
    code, out, err = run_slit(["run", str(path), "--out", str(tmp_path / "out"),
                               "--json", str(tmp_path / "r.json")], capsys, monkeypatch)
    _assert_clean_error(code, out, err, expected)
    assert str(path) in err
    assert sorted(tmp_path.iterdir()) == before  # nothing written, nothing half-written


def test_bad_scenario_in_plan(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(TINY_YAML.replace("percentile: 99", "percentile: 50"))
    code, out, err = run_slit(["plan", "--at", "2023-07-12T13:00", "--scenario", str(path)],
                              capsys, monkeypatch)
    _assert_clean_error(code, out, err, "slo.percentile")
    assert out == ""


def test_not_utf8(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_bytes(b"name: \xff\xfe tiny\n")
    code, out, err = run_slit(["run", str(path)], capsys, monkeypatch)
    _assert_clean_error(code, out, err, "is not UTF-8 text")


BAD_ARGUMENTS: list[tuple[str, list[str], str]] = [
    ("at-words", ["plan", "--at", "tomorrow"], "--at: 'tomorrow' is not a date and time"),
    ("at-no-such-day", ["plan", "--at", "2023-02-30T10:00"], "is not a date and time"),
    ("at-seconds", ["plan", "--at", "2023-07-12T10:00:30"], "has seconds"),
    ("format", ["plan", "--at", "2023-07-12T10:00", "--format", "xml"],
     "--format: unknown format 'xml'; use one of: json, envoy"),
    ("envoy-domain", ["plan", "--at", "2023-07-12T10:00", "--envoy-domain", "lb.example"],
     "--envoy-domain"),
    ("plan-scenario-missing", ["plan", "--at", "2023-07-12T10:00", "--scenario", "nope.yaml"],
     "nope.yaml: does not exist"),
    ("plan-output-folder", ["plan", "--at", "2023-07-12T10:00", "--output", "no/such/p.json"],
     "no/such does not exist; create it first"),
    ("run-hours", ["run", "--hours", "-1"], "--hours: -1.0 is not positive"),
    ("run-rate", ["run", "--rate", "0"], "--rate: 0.0 is not positive"),
    ("run-data-dir", ["run", "--data-dir", "no/such/folder"], "is not a directory"),
]


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in BAD_ARGUMENTS],
                         ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_argument(args: list[str], expected: str, tmp_path: Path, capsys,
                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_slit(args, capsys, monkeypatch)
    _assert_clean_error(code, out, err, expected)
    assert out == "" and list(tmp_path.iterdir()) == []


def test_out_is_a_file(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "out").write_text("x")
    code, out, err = run_slit(["run", "--out", str(tmp_path / "out")], capsys, monkeypatch)
    _assert_clean_error(code, out, err, "is a file, not a folder")


def test_out_holds_other_files(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run_slit(["run", "--out", str(tmp_path)], capsys, monkeypatch)
    _assert_clean_error(code, out, err, "holds other files (notes.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_seed_with_scenario_file(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(TINY_YAML)
    code, out, err = run_slit(["run", str(path), "--seed", "3"], capsys, monkeypatch)
    _assert_clean_error(code, out, err, "--seed: is not used with a scenario file; set `seed`")


# Real data, copied for one site and broken one way each time.
SITE = "SG"
ONE_SITE_YAML = """\
name: one-site
data_dir: data
sites: [{region: SG, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 2}]
workload: {origins: [SG], global_rate_rps: 2}
period: {start_utc: "2023-07-12T12:00", hours: 1}
search: {population: 8, generations: 2}
"""


def _drop_column(path: Path, column: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    i = header.index(column)
    path.write_text("\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != i)
                              for line in lines) + "\n", encoding="utf-8")


def _drop_rows(path: Path, first: int, last: int) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:first] + lines[last:]), encoding="utf-8")


BAD_DATA = [
    ("carbon-column", lambda d: _drop_column(d / "regions/SG/2023/carbon_intensity.csv",
                                             "Carbon Intensity gCO\u2082eq/kWh (direct)"),
     "carbon_intensity.csv"),
    # A gap in the rows is missing hours, planned through (tests/test_gaps.py); a file with a
    # header and no rows is malformed.
    ("price-no-rows", lambda d: _drop_rows(d / "regions/SG/2023/electricity_price.csv", 1,
                                           10_000), "electricity_price.csv"),
    ("weather-json", lambda d: (d / "regions/SG/2023/weather.json").write_text("{oops"),
     "weather.json"),
    ("region-missing", lambda d: shutil.rmtree(d / "regions/SG"), "SG"),
    ("trace-column", lambda d: _drop_column(d / "traces/azure-llm-2023/conv.csv",
                                            "GeneratedTokens"), "conv.csv"),
]


@pytest.fixture(scope="module")
def pristine(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one region and the traces the one-site scenario needs, copied once."""
    copy = tmp_path_factory.mktemp("pristine") / "data"
    shutil.copytree(data_dir / "regions" / SITE, copy / "regions" / SITE)
    shutil.copytree(data_dir / "traces", copy / "traces")
    return copy


@pytest.mark.parametrize(("breakage", "expected"), [c[1:] for c in BAD_DATA],
                         ids=[c[0] for c in BAD_DATA])
def test_bad_data_file(breakage, expected: str, pristine: Path, tmp_path: Path, capsys,
                       monkeypatch) -> None:
    shutil.copytree(pristine, tmp_path / "data")
    breakage(tmp_path / "data")
    (tmp_path / "s.yaml").write_text(ONE_SITE_YAML)
    code, out, err = run_slit(["run", str(tmp_path / "s.yaml"), "--out",
                               str(tmp_path / "out"), "--workers", "1"], capsys, monkeypatch)
    _assert_clean_error(code, out, err, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s.yaml"]


def test_plan_outside_the_data(pristine: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "s.yaml").write_text(ONE_SITE_YAML.replace("data_dir: data",
                                                           f"data_dir: {pristine}"))
    code, out, err = run_slit(["plan", "--at", "2024-03-01T00:00", "--scenario",
                               str(tmp_path / "s.yaml")], capsys, monkeypatch)
    _assert_clean_error(code, out, err, "--at: ")
    assert "has 2023-2023" in err and out == ""
    # Four days into the data the forecasters have less history than they want: they use what
    # there is (tests/test_gaps.py), the plan is made.
    code, out, err = run_slit(["plan", "--at", "2023-01-05T00:00", "--scenario",
                               str(tmp_path / "s.yaml")], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["interval"]["start_utc"] == "2023-01-05T00:00:00Z"


# Output destinations that cannot be written, each refused before any work starts. /proc takes
# no new files even for root (who passes every permission-bit check); EXISTING is a folder and
# KEEP a file already in the test folder. (case id, arguments, text the error must contain)
DAY = ["--start", "2023-07-01", "--end", "2023-07-02"]
AT_ARGS = ["plan", "--at", "2023-07-12T13:00"]
BAD_OUTPUTS: list[tuple[str, list[str], str]] = [
    ("run-out-proc", ["run", "--hours", "1", "--out", "/proc/slit-out"],
     "--out /proc/slit-out: folder /proc is not writable"),
    ("run-out-under-file", ["run", "--out", "KEEP/out"], "is a file"),
    ("run-json-proc", ["run", "--hours", "1", "--out", "out", "--json", "/proc/a.json"],
     "--json /proc/a.json: folder /proc is not writable"),
    ("run-json-folder", ["run", "--out", "out", "--json", "EXISTING"], "is a folder"),
    ("run-json-no-folder", ["run", "--json", "no/such/r.json"], "does not exist"),
    ("run-json-in-out", ["run", "--out", "out", "--json", "out/r.json"],
     "is inside the results folder"),
    ("plan-output-folder", [*AT_ARGS, "--output", "EXISTING"], "--output EXISTING: is a folder"),
    ("plan-output-proc", [*AT_ARGS, "--output", "/proc/p.json"], "folder /proc is not writable"),
    ("signals-csv-proc", ["signals", "SG", *DAY, "--csv", "/proc/a.csv"],
     "--csv /proc/a.csv: folder /proc is not writable"),
    ("signals-csv-folder", ["signals", "SG", *DAY, "--csv", "EXISTING"], "is a folder"),
    ("init-proc", ["init", "/proc/x.yaml"], "FILE /proc/x.yaml: folder /proc is not writable"),
    ("init-folder", ["init", "EXISTING"], "EXISTING: is not a file"),
    ("init-existing", ["init", "KEEP"], "KEEP: already exists; choose another name"),
    ("init-no-folder", ["init", "no/such/s.yaml"], "does not exist"),
]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in BAD_OUTPUTS],
                         ids=[c[0] for c in BAD_OUTPUTS])
def test_bad_output_is_refused_before_any_work(args: list[str], expected: str, tmp_path: Path,
                                               capsys, monkeypatch) -> None:
    from slit.cli import data_commands, plan_commands, run_commands

    def no_work(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("work started before the output was checked")

    # The checks must come before the first expensive step of each command.
    monkeypatch.setattr(run_commands, "run_experiment", no_work)
    monkeypatch.setattr(run_commands, "default_scenario", no_work)
    monkeypatch.setattr(plan_commands, "plan_scenario", no_work)
    monkeypatch.setattr(data_commands, "get_signals", no_work)
    monkeypatch.setattr(run_commands, "example_yaml", no_work)
    (tmp_path / "EXISTING").mkdir()
    (tmp_path / "EXISTING" / "inside.txt").write_text("mine")
    (tmp_path / "KEEP").write_text("keep me")
    before = _snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_slit(args, capsys, monkeypatch)
    _assert_clean_error(code, out, err, expected)
    assert out == ""
    assert _snapshot(tmp_path) == before  # nothing written, existing files untouched


def test_failure_while_writing_csv_leaves_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    import pandas as pd

    def half_then_fail(self: pd.DataFrame, path: Path, **_kwargs: object) -> None:
        Path(path).write_text("time_utc,carbon\n2023-07-01T00:00:00Z,4")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    (tmp_path / "old.csv").write_text("the earlier table")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        run_slit(["signals", "SG", *DAY, "--csv", "old.csv"], capsys, monkeypatch)
    assert _snapshot(tmp_path) == {"old.csv": b"the earlier table"}


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(umask: int, mode: int, tmp_path: Path, capsys,
                                        monkeypatch) -> None:
    import os

    old = os.umask(umask)
    try:
        code_init, _, err_init = run_slit(["init", str(tmp_path / "s.yaml")], capsys,
                                          monkeypatch)
        code_csv, _, err_csv = run_slit(["signals", "SG", *DAY, "--csv",
                                         str(tmp_path / "s.csv")], capsys, monkeypatch)
    finally:
        os.umask(old)
    assert code_init == 0 and code_csv == 0, (err_init, err_csv)
    for name in ("s.yaml", "s.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
