"""`slit signals` and `slit regions`, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from slit.data.signals import SIGNAL_COLUMNS
from slit.footprint import COEFFICIENT_COLUMNS


def _slit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from slit.cli.app import main; main()", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def _check_csv(path: Path) -> None:
    table = pd.read_csv(path, index_col="time_utc")
    assert len(table) == 24
    for column in (*SIGNAL_COLUMNS, *COEFFICIENT_COLUMNS):
        assert column in table.columns
    assert not table.isna().any().any()


def test_signals_csv_from_real_data(data_dir: Path, tmp_path: Path) -> None:
    run = _slit("signals", "SG", "--start", "2023-07-01", "--end", "2023-07-02", "--data-dir",
                str(data_dir), "--csv", "out.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    _check_csv(tmp_path / "out.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind


def test_signals_csv_from_embedded_default(tmp_path: Path) -> None:
    run = _slit("signals", "SG", "--start", "2023-07-01", "--end", "2023-07-02", "--csv",
                str(tmp_path / "out.csv"), "--cooling", "dry", "--carbon-basis", "lca")
    assert run.returncode == 0, run.stderr
    _check_csv(tmp_path / "out.csv")
    assert (pd.read_csv(tmp_path / "out.csv")["wue_onsite_l_per_kwh"] == 0).all()


def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["XX"], ["SG", "--end", "2023-06-01"], ["SG", "--start", "2023-13-01"]):
        full = ["signals", *args]
        if "--start" not in full:
            full += ["--start", "2023-07-01"]
        if "--end" not in full:
            full += ["--end", "2023-07-02"]
        run = _slit(*full, "--csv", str(tmp_path / "never.csv"))
        assert run.returncode == 2, (args, run.stderr)
        assert "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("error: ")
    assert not (tmp_path / "never.csv").exists()


def test_regions_without_data_dir_describes_the_embedded_default() -> None:
    run = _slit("regions")
    assert run.returncode == 0, run.stderr
    assert "embedded default" in run.stdout and "from 2023" in run.stdout
