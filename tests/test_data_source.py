"""get_signals: the one door to hourly signals, real or embedded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slit.data.signals import SIGNAL_COLUMNS
from slit.data.source import EMBEDDED, DataSource, get_signals
from slit.errors import SlitInputError


def real(data_dir: Path) -> DataSource:
    return DataSource(data_dir)


def test_real_window_is_hourly_utc_and_end_exclusive(data_dir: Path) -> None:
    hourly = get_signals(real(data_dir), "SG", pd.Timestamp("2023-07-01"),
                         pd.Timestamp("2023-07-02"))
    assert len(hourly) == 24
    assert tuple(hourly.columns) == SIGNAL_COLUMNS
    assert hourly.index[0] == pd.Timestamp("2023-07-01", tz="UTC")
    assert hourly.index[-1] == pd.Timestamp("2023-07-01T23:00", tz="UTC")
    # A zone-aware start is converted: 08:00 in Singapore is midnight UTC.
    local = get_signals(real(data_dir), "SG", pd.Timestamp("2023-07-01T08:00", tz="Asia/Singapore"),
                        pd.Timestamp("2023-07-02", tz="UTC"))
    pd.testing.assert_frame_equal(local, hourly)


def test_hours_outside_the_real_years_name_the_available_range(data_dir: Path) -> None:
    with pytest.raises(SlitInputError, match="available: 2023-01-01 00:00 to 2024-01-01 00:00"):
        get_signals(real(data_dir), "SG", pd.Timestamp("2023-12-31"), pd.Timestamp("2024-01-02"))


@pytest.mark.parametrize(("start", "end", "words"), [
    ("2023-07-02", "2023-07-01", "not after start"),
    ("2023-07-01T10:30", "2023-07-02", "whole hour"),
    ("soon", "2023-07-02", "not a date"),
])
def test_bad_periods_are_refused(start: str, end: str, words: str) -> None:
    with pytest.raises(SlitInputError, match=words):
        get_signals(EMBEDDED, "SG", start, end)  # type: ignore[arg-type]


def test_unknown_region_and_bad_seed_are_refused() -> None:
    with pytest.raises(SlitInputError, match="unknown region"):
        get_signals(EMBEDDED, "MARS", pd.Timestamp("2023-07-01"), pd.Timestamp("2023-07-02"))
    with pytest.raises(SlitInputError, match="seed"):
        get_signals(EMBEDDED, "SG", pd.Timestamp("2023-07-01"), pd.Timestamp("2023-07-02"), -1)


def test_a_missing_weather_file_is_named(tmp_path: Path, data_dir: Path) -> None:
    import shutil
    year = tmp_path / "regions" / "SG" / "2023"
    year.mkdir(parents=True)
    for name in ("carbon_intensity.csv", "electricity_price.csv"):
        shutil.copy(data_dir / "regions" / "SG" / "2023" / name, year / name)
    with pytest.raises(SlitInputError, match="has no weather.json") as err:
        get_signals(real(tmp_path), "SG", pd.Timestamp("2023-07-01"), pd.Timestamp("2023-07-02"))
    assert "no year" not in str(err.value)


def test_a_window_before_the_data_says_history_is_needed(data_dir: Path) -> None:
    from slit.forecast.history import load_history
    with pytest.raises(SlitInputError, match="28 days of history") as err:
        load_history(real(data_dir), "SG", "2022-12-07", "2023-01-06", history_days=28)
    assert "2023-01-04" in str(err.value)  # the period start the user asked for


def test_data_source_key_round_trips_and_names_the_source(tmp_path: Path) -> None:
    assert EMBEDDED.is_embedded and EMBEDDED.key == "embedded"
    real_source = DataSource(tmp_path)
    assert not real_source.is_embedded and real_source.key == str(tmp_path)
    for source in (EMBEDDED, real_source):
        assert DataSource.from_key(source.key) == source
    with pytest.raises(TypeError, match="DataSource"):
        get_signals(None, "SG", pd.Timestamp("2023-07-01"),  # type: ignore[arg-type]
                    pd.Timestamp("2023-07-02"))
