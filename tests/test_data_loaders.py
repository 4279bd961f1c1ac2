"""Real-data loaders: every region loads cleanly; every kind of bad file is refused by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slit.data.regions import REGIONS
from slit.data.signals import (
    CARBON_FILE,
    PRICE_FILE,
    SIGNAL_COLUMNS,
    WEATHER_FILE,
    load_region_signals,
)
from slit.data.source import DataSource, get_observed
from slit.errors import SlitInputError


def test_every_region_loads_a_full_clean_year(data_dir: Path) -> None:
    for region_id in REGIONS:
        signals = load_region_signals(data_dir, region_id)
        hourly = signals.hourly
        assert len(hourly) == 8760, region_id
        assert tuple(hourly.columns) == SIGNAL_COLUMNS
        assert not hourly.isna().any().any(), region_id
        assert str(hourly.index.tz) == "UTC" and hourly.index.is_monotonic_increasing
        assert (hourly.index.minute == 0).all(), region_id  # IN-WE is stamped at HH:30


@pytest.fixture
def region_copy(tmp_path: Path, data_dir: Path) -> Path:
    """A writable copy of SG 2023 under tmp_path/regions/SG/2023 (returns that folder)."""
    folder = tmp_path / "regions" / "SG" / "2023"
    shutil.copytree(data_dir / "regions" / "SG" / "2023", folder)
    return folder


def _edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")


def _edit_weather(path: Path, edit: Callable[[dict], object]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _set_cell(path: Path, line: int, column: int, value: str) -> None:
    """Overwrite one cell; ``line`` is 0 for the header, so the file line number is line + 1."""
    def edit(lines: list[str]) -> list[str]:
        cells = lines[line].rstrip("\n").split(",")
        cells[column] = value
        lines[line] = ",".join(cells) + "\n"
        return lines
    _edit_lines(path, edit)


def _swap(lines: list[str]) -> list[str]:
    lines[100], lines[101] = lines[101], lines[100]
    return lines


# (case id, file broken, how, words the one-line message must contain)
BAD_FILES: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("missing file", PRICE_FILE, lambda p: p.unlink(), "file not found"),
    ("missing column", CARBON_FILE,
     lambda p: _edit_lines(p, lambda ls: [ls[0].replace("(direct)", "(dir)")] + ls[1:]),
     "missing column"),
    ("duplicate timestamp", PRICE_FILE, lambda p: _edit_lines(p, lambda ls: ls[:50] + ls[49:]),
     "duplicate timestamp"),
    ("non-monotonic", CARBON_FILE, lambda p: _edit_lines(p, _swap), "go backwards"),
    ("NaN cell", PRICE_FILE, lambda p: _set_cell(p, 300, 2, ""), "NaN/empty at line 301"),
    ("carbon out of range", CARBON_FILE, lambda p: _set_cell(p, 10, 4, "5000"),
     "outside the physical range"),
    ("RH above 100", WEATHER_FILE,
     lambda p: _edit_weather(p, lambda d: d["hourly"]["relative_humidity_2m"].__setitem__(5, 130)),
     "outside the physical range"),
    ("bad JSON", WEATHER_FILE,
     lambda p: p.write_text(p.read_text(encoding="utf-8")[:500], encoding="utf-8"),
     "not valid JSON"),
    ("weather arrays of unequal length", WEATHER_FILE,
     lambda p: _edit_weather(p, lambda d: d["hourly"]["temperature_2m"].pop()),
     "different lengths"),
    ("non-numeric value", PRICE_FILE, lambda p: _set_cell(p, 40, 2, "abc"),
     "non-number 'abc' at line 41"),
    ("empty file", CARBON_FILE, lambda p: p.write_text("", encoding="utf-8"), "is empty"),
    ("header only", PRICE_FILE, lambda p: _edit_lines(p, lambda ls: ls[:1]), "no rows"),
    ("unreadable timestamp", PRICE_FILE, lambda p: _set_cell(p, 20, 0, "yesterday"),
     "unreadable timestamp"),
    ("weather without offset", WEATHER_FILE,
     lambda p: _edit_weather(p, lambda d: d.pop("utc_offset_seconds")), "utc_offset_seconds"),
]


@pytest.mark.parametrize(("case", "name", "breaks", "words"), BAD_FILES,
                         ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_refused_naming_the_file(
    region_copy: Path, case: str, name: str, breaks: Callable[[Path], None], words: str
) -> None:
    breaks(region_copy / name)
    with pytest.raises(SlitInputError) as err:
        load_region_signals(region_copy.parents[2], "SG", 2023)
    message = str(err.value)
    assert name in message, case
    assert words in message, case
    assert "\n" not in message


def test_short_gap_is_filled_and_counted(region_copy: Path) -> None:
    _edit_lines(region_copy / CARBON_FILE, lambda ls: ls[:200] + ls[202:])  # two hours gone
    signals = load_region_signals(region_copy.parents[2], "SG", 2023)
    assert signals.filled_hours["carbon_direct_g_per_kwh"] == 2
    assert signals.filled_hours["price_usd_per_mwh"] == 0
    assert not signals.hourly.isna().any().any()


def test_long_gap_is_kept_missing_not_refused(region_copy: Path) -> None:
    """Missing hours are data: a 6 h hole (and a file stopping 10 days short of the year) is
    marked missing, interpolated for the judge, NaN for the planner; nothing is refused."""
    _edit_lines(region_copy / CARBON_FILE, lambda ls: ls[:201] + ls[207:-240])
    signals = load_region_signals(region_copy.parents[2], "SG", 2023)
    assert signals.missing is not None
    lost = signals.missing.index[signals.missing["carbon_direct_g_per_kwh"]]
    # Rows 1..200 are hours 0..199: hours 200..205 are gone, and the last 240 hours.
    assert list(lost[:6]) == list(pd.date_range("2023-01-09 08:00", periods=6, freq="h",
                                                tz="UTC"))
    assert len(lost) == 6 + 240
    assert not signals.missing["price_usd_per_mwh"].any()
    hourly = signals.hourly["carbon_direct_g_per_kwh"]
    assert not hourly.isna().any()
    # The judge's value inside the gap lies on the line between the readings around it.
    before, after = hourly.iloc[199], hourly.iloc[206]
    np.testing.assert_allclose(hourly.iloc[200:206].to_numpy(),
                               before + (after - before) * np.arange(1, 7) / 7)
    assert (hourly.iloc[-240:] == hourly.iloc[-241]).all()  # held from the last reading
    observed = get_observed(DataSource(region_copy.parents[2]), "SG",
                            pd.Timestamp("2023-01-09", tz="UTC"),
                            pd.Timestamp("2023-01-10", tz="UTC"))
    assert observed["carbon_direct_g_per_kwh"].isna().sum() == 6
    assert observed["price_usd_per_mwh"].notna().all()


def test_cli_reports_a_bad_file_on_one_line_with_exit_code_2(region_copy: Path) -> None:
    _set_cell(region_copy / PRICE_FILE, 40, 2, "abc")
    run = subprocess.run(
        [sys.executable, "-c", "from slit.cli.app import main; main()", "signals", "SG",
         "--start", "2023-07-01", "--end", "2023-07-02", "--data-dir",
         str(region_copy.parents[2])],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and PRICE_FILE in lines[0]
