"""The `slit latency` and `slit forecast-eval` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from slit.cli.app import _register_commands, app
from slit.data.regions import DEFAULT_REGION_IDS

_register_commands()


def test_latency_prints_the_15_by_15_table() -> None:
    result = CliRunner().invoke(app, ["latency"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines()
            if line.startswith("│") and line.split("│")[1].strip() in DEFAULT_REGION_IDS]
    assert len(rows) == 15
    assert all(len(row.split("│")) == 18 for row in rows)  # label + 15 sites + 2 borders


def test_forecast_eval_on_two_regions_ends_with_the_score(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["forecast-eval", "--data-dir", str(data_dir),
                                      "--regions", "CL-SIC,ZA", "--horizons", "1,24"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "regions_beating_persistence=2/2"
    assert "MAPE persistence" in result.output


@pytest.mark.slow
def test_full_forecast_eval_beats_persistence_in_at_least_12_regions(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["forecast-eval", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    k = int(last.split("=")[1].split("/")[0])
    assert last.endswith("/15") and k >= 12
