"""The embedded default: small, credited, deterministic, and true to the real data's months."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slit.data.embedded import embedded_info, synthesise_year
from slit.data.regions import REGIONS
from slit.data.signals import PHYSICAL_RANGES, PRICE, SIGNAL_COLUMNS, load_region_signals
from slit.data.source import EMBEDDED as BUILTIN
from slit.data.source import get_signals

EMBEDDED = resources.files("slit") / "embedded"


def test_shipped_files_are_small_and_credited() -> None:
    files = [p for p in EMBEDDED.iterdir() if p.is_file() and not p.name.startswith("__")]
    assert sum(len(p.read_bytes()) for p in files) < 1024 * 1024
    provenance = (EMBEDDED / "PROVENANCE.md").read_text(encoding="utf-8")
    for credit in ("Electricity Maps", "Open-Meteo", "SustainCluster", "build_embedded.py"):
        assert credit in provenance
    assert embedded_info().source_years == (2023,)
    assert set(embedded_info().regions) == set(REGIONS)


def test_monthly_means_match_the_real_data(data_dir: Path) -> None:
    """Within 5 % for every region, month and signal.

    Tolerance: 5 % of the month's mean ABSOLUTE real value. For positive signals (carbon, RH,
    most prices) that is 5 % of the mean; prices can be negative and temperatures cross 0 °C,
    where a relative error of the signed mean would divide by a number near zero and say nothing
    about how close the two series are.
    """
    for region_id in REGIONS:
        real = load_region_signals(data_dir, region_id, 2023).hourly
        synthetic = synthesise_year(region_id, 2023, 0)
        month_r, month_s = real.index.month, synthetic.index.month
        error = (synthetic.groupby(month_s).mean() - real.groupby(month_r).mean()).abs()
        scale = real.abs().groupby(month_r).mean()
        worst = (error / scale).max()
        assert (worst <= 0.05).all(), f"{region_id}: {worst.to_dict()}"


def test_variation_is_realistic_and_in_range() -> None:
    hourly = get_signals(BUILTIN, "DE-LU", pd.Timestamp("2031-01-01"), pd.Timestamp("2032-01-01"))
    assert len(hourly) == 8760 and not hourly.isna().any().any()
    for column, (lo, hi) in PHYSICAL_RANGES.items():
        assert hourly[column].between(lo, hi).all()
    daily = hourly.resample("D").mean()
    # Days differ (not a repeated typical day) and follow one another (AR(1), not white noise).
    assert daily[PRICE].std() > 5.0
    lag1 = daily["temp_c"].autocorr(1)
    assert lag1 > 0.5


def test_same_hour_same_value_whatever_the_window() -> None:
    wide = get_signals(BUILTIN, "SG", pd.Timestamp("2025-12-20"), pd.Timestamp("2026-01-10"), 4)
    narrow = get_signals(BUILTIN, "SG", pd.Timestamp("2025-12-31T22:00"),
                         pd.Timestamp("2026-01-01T03:00"), 4)
    assert len(narrow) == 5
    pd.testing.assert_frame_equal(narrow, wide.loc[narrow.index])
    other_seed = get_signals(BUILTIN, "SG", pd.Timestamp("2025-12-31T22:00"),
                             pd.Timestamp("2026-01-01T03:00"), 5)
    assert not np.allclose(other_seed.to_numpy(), narrow.to_numpy())
    assert tuple(narrow.columns) == SIGNAL_COLUMNS


@pytest.mark.parametrize("year", [1999, 2023, 2024])
def test_any_year_including_leap_years(year: int) -> None:
    hours = 8784 if year % 4 == 0 else 8760
    assert len(synthesise_year("KR", year, 0)) == hours
