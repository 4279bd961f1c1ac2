"""`slit signals` and `slit regions`, run as a user would."""

from __future__ import annotations

import os
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


def test_tables_fit_80_columns() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    for args in (["regions"], ["signals", "SG", "--start", "2023-07-01", "--end", "2023-07-02"]):
        run = subprocess.run([sys.executable, "-c", "from slit.cli.app import main; main()",
                              *args], capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 0, run.stderr
        assert max(len(line) for line in run.stdout.splitlines()) <= 80, args
        assert "…" not in run.stdout, args  # no value cut short
    # The compact signals table keeps what the scheduler uses, with the values of --csv.
    assert "gCO2/kWh" in run.stdout and "wet-bulb °C" in run.stdout
    assert "2023-07-01 00:00" in run.stdout


def _command_options() -> dict[str, set[str]]:
    import typer

    from slit.cli.app import app

    group = typer.main.get_command(app)
    return {name: {opt for param in command.params for opt in param.opts}
            for name, command in group.commands.items()}  # type: ignore[attr-defined]


def test_readme_says_which_commands_take_data_dir() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    options = _command_options()
    sentence = readme[readme.index("Every command that reads data takes `--data-dir`"):]
    sentence = sentence[: sentence.index("\n\n")]
    without = {c for c, opts in options.items() if "--data-dir" not in opts}
    assert without == {"latency", "init"}
    assert f"`{sorted(without)[1]}` and `{sorted(without)[0]}` read no data" in sentence
    for command in options.keys() - without:
        assert f"`{command}`" in sentence, command
    # Every command appears in the README's table with the options it has.
    for command, opts in options.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| `slit {command}"))
        assert ("--data-dir" in row) == ("--data-dir" in opts), command


def test_commands_needing_real_data_say_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLIT_DATA_DIR"}
    for command in ("calibrate", "simulate-site"):
        helped = subprocess.run([sys.executable, "-c", "from slit.cli.app import main; main()",
                                 command, "--help"], capture_output=True, text=True,
                                timeout=120, env={**env, "COLUMNS": "200"})
        assert helped.returncode == 0
        assert "embedded default is used" not in helped.stdout
        assert "required" in helped.stdout
        run = subprocess.run([sys.executable, "-c", "from slit.cli.app import main; main()",
                              command], capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
        assert run.stderr.startswith("error: --data-dir: this command needs the real data")
        assert f"e.g. slit {command} --data-dir " in run.stderr  # how to call it
