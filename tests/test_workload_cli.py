"""The `slit latency` and `slit forecast-eval` commands."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from slit.cli.app import app
from slit.cli.progress import stage_progress
from slit.data.regions import DEFAULT_REGION_IDS
from slit.workload.network import rtt_ms_matrix


def _latency_cells(output: str) -> dict[tuple[str, str], int]:
    """(origin, site) -> RTT ms read back from every table the command printed."""
    cells: dict[tuple[str, str], int] = {}
    header: list[str] = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.strip()[1:-1].split("│" if line.startswith("│")
                                                              else "┃")]
        if line.startswith("┃") and parts[0] == "from \\ to":
            header = parts[1:]
        elif line.startswith("│") and parts[0] in DEFAULT_REGION_IDS:
            for site, value in zip(header, parts[1:], strict=True):
                cells[(parts[0], site)] = int(value)
    return cells


@pytest.mark.parametrize("columns", [80, 120, 250])
def test_latency_table_fits_the_terminal_and_holds_every_pair(columns: int) -> None:
    result = CliRunner().invoke(app, ["latency"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= columns
    assert "…" not in result.output  # no cell or header cut short
    cells = _latency_cells(result.output)
    ids = DEFAULT_REGION_IDS
    rtt = rtt_ms_matrix(ids, ids)
    assert cells == {(o, s): round(rtt[i, j]) for i, o in enumerate(ids)
                     for j, s in enumerate(ids)}
    tables = result.output.count("┏")
    assert tables == 1 if columns >= 160 else tables > 1


def test_forecast_eval_on_two_regions_ends_with_the_score(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["forecast-eval", "--data-dir", str(data_dir),
                                      "--regions", "CL-SIC,ZA", "--horizons", "1,24"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "regions_beating_persistence=2/2"
    assert "MAPE" in result.output and "persistence" in result.output
    # Not a terminal: the evaluation shows as plain lines from its start, one per region.
    stages = [line.split("] ", 1)[1] for line in result.output.splitlines()
              if line.startswith("[") and "] " in line]
    assert stages[:4] == ["evaluating forecasts per region ...",
                          "evaluating forecasts per region: 0/2",
                          "evaluating forecasts per region: 1/2",
                          "evaluating forecasts per region: 2/2"]


def test_plain_progress_prints_every_stage_a_tenth_at_a_time() -> None:
    console = Console(file=io.StringIO(), width=80)
    assert not console.is_terminal
    with stage_progress(console, first="load", order=("load", "surrogate", "plan")) as report:
        assert console.file.getvalue().endswith("loading the scenario, signals and requests ...\n")
        for k in range(1, 97):
            report("plan", k, 96)
    lines = [line.split("] ", 1)[1] for line in console.file.getvalue().splitlines()]
    assert lines[:3] == ["loading the scenario, signals and requests ...",
                         "loading the scenario, signals and requests: done",
                         "planning intervals ..."]
    counts = [line for line in lines if line.startswith("planning intervals: ")]
    # A line on the first report and one per tenth crossed, the last at 96/96.
    assert counts[0] == "planning intervals: 1/96" and counts[-1] == "planning intervals: 96/96"
    assert len(counts) == 11


def test_terminal_progress_draws_bars_and_clears_them() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with stage_progress(console, first="load", order=("load", "surrogate", "plan")) as report:
        report("surrogate", 3, 10)
        report("surrogate", 10, 10)
        report("plan", 1, 4)
    drawn = console.file.getvalue()
    assert "training the serving surrogate" in drawn and "planning intervals" in drawn
    assert not re.search(r"\[ *\d+ s\] ", drawn)  # bars, not the plain lines of a log


@pytest.mark.slow
def test_full_forecast_eval_beats_persistence_in_at_least_12_regions(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["forecast-eval", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    k = int(last.split("=")[1].split("/")[0])
    assert last.endswith("/15") and k >= 12
