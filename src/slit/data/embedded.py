"""The embedded default: hourly signals for any period, synthesised from shipped statistics.

``scripts/build_embedded.py`` derives, from the real 2023 data, per region:
- ``signal_profiles.parquet``: for each month x UTC hour of day and each signal, the mean, the
  standard deviation, and the standard deviation left once each day's own level is removed
  (``within_std``);
- ``signal_dynamics.json``: the day-to-day variation of each signal (per-month std of the daily
  level, its AR(1) coefficient), the AR(1) coefficient of the hour-to-hour residual, and the
  correlation between signals of both residuals (so temperature, humidity and the two carbon
  columns move together as they do in the data).

Synthesis of a UTC calendar year for (region, seed):
    value = mean(month, hour) + day_level(solar day) + within_day(hour)
with both residuals AR(1) Gaussian with correlated innovations, drawn from one generator seeded
by (seed, region, year). Residuals are then centred per month (and per month x hour), so each
month's synthetic mean equals the real monthly mean; where a value leaves its physical range
(RH <= 100 %, carbon >= 0) it is clipped and the month is shrunk toward that bound so the mean
still holds. Because a whole year is drawn at once from that seed,
an hour's value does not depend on the window asked for. Days are cut at local solar midnight
(UTC offset = longitude / 15, rounded) so a day's level changes overnight, not mid-afternoon.
Month boundaries step from one month's profile to the next.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from slit.data.regions import get_region
from slit.data.signals import PHYSICAL_RANGES, SIGNAL_COLUMNS
from slit.errors import SlitInputError

PROFILES_FILE = "signal_profiles.parquet"
DYNAMICS_FILE = "signal_dynamics.json"
PROVENANCE_FILE = "PROVENANCE.md"
# AR(1) coefficients are held below 1 so that the stationary start is finite.
MAX_AR1 = 0.99


@dataclass(frozen=True, slots=True)
class RegionStats:
    """One region's shipped statistics as arrays; signal order is ``SIGNAL_COLUMNS``."""

    mean: np.ndarray  # [12 months, 24 UTC hours, signal]
    within_std: np.ndarray  # [12, 24, signal]
    day_std: np.ndarray  # [12, signal]
    phi_day: np.ndarray  # [signal]
    phi_hour: np.ndarray  # [signal]
    corr_day: np.ndarray  # [signal, signal]
    corr_hour: np.ndarray  # [signal, signal]
    solar_offset_h: int


@dataclass(frozen=True, slots=True)
class EmbeddedInfo:
    """What the embedded default was derived from."""

    source_years: tuple[int, ...]
    built_utc: str
    regions: tuple[str, ...]


def solar_offset_hours(lon_deg: float) -> int:
    """Whole hours from UTC to local solar time, which cuts days for the day-level residual."""
    return int(round(lon_deg / 15.0))


def _embedded_file(name: str) -> Traversable:
    path = resources.files("slit") / "embedded" / name
    if not path.is_file():
        raise SlitInputError(
            f"embedded default ({name})", "is missing from the installed package",
            "reinstall slit, or rebuild it with scripts/build_embedded.py --data-dir DATA",
        )
    return path


@lru_cache(maxsize=1)
def _load() -> tuple[pd.DataFrame, dict]:
    with _embedded_file(PROFILES_FILE).open("rb") as fh:
        profiles = pd.read_parquet(fh)
    dynamics = json.loads(_embedded_file(DYNAMICS_FILE).read_text(encoding="utf-8"))
    return profiles, dynamics


def embedded_info() -> EmbeddedInfo:
    """Source years, build date and regions of the shipped statistics."""
    _, dynamics = _load()
    meta = dynamics["meta"]
    return EmbeddedInfo(tuple(meta["source_years"]), meta["built_utc"],
                        tuple(dynamics["regions"]))


@cache
def region_stats(region_id: str) -> RegionStats:
    """The shipped statistics of one region."""
    region = get_region(region_id)
    profiles, dynamics = _load()
    if region.id not in dynamics["regions"]:
        raise SlitInputError(f"embedded default ({region.id})", "has no statistics for region",
                             "pass --data-dir with real data for it")
    rows = profiles[profiles["region"] == region.id].sort_values(["month", "hour_utc"])
    dyn = dynamics["regions"][region.id]

    def cube(prefix: str) -> np.ndarray:
        cols = [f"{prefix}_{s}" for s in SIGNAL_COLUMNS]
        return rows[cols].to_numpy(dtype=float).reshape(12, 24, len(SIGNAL_COLUMNS))

    return RegionStats(
        mean=cube("mean"),
        within_std=cube("within_std"),
        day_std=np.array([dyn["day_std"][s] for s in SIGNAL_COLUMNS], dtype=float).T,
        phi_day=np.array([dyn["phi_day"][s] for s in SIGNAL_COLUMNS], dtype=float),
        phi_hour=np.array([dyn["phi_hour"][s] for s in SIGNAL_COLUMNS], dtype=float),
        corr_day=np.array(dyn["corr_day"], dtype=float),
        corr_hour=np.array(dyn["corr_hour"], dtype=float),
        solar_offset_h=int(dyn["solar_offset_h"]),
    )


def _ar1(rng: np.random.Generator, n: int, phi: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """n steps of unit-variance AR(1) per column, innovations correlated by ``corr``."""
    innov = rng.standard_normal((n, len(phi))) @ _sqrt_psd(corr).T
    phi = np.clip(phi, 0.0, MAX_AR1)
    out = np.empty_like(innov)
    for j, p in enumerate(phi):
        scale = np.sqrt(1.0 - p * p)
        x = innov[:, j].copy()
        x[0] /= scale  # so the first step is drawn from the stationary distribution
        out[:, j] = lfilter([scale], [1.0, -p], x)
    return out


def _sqrt_psd(corr: np.ndarray) -> np.ndarray:
    # An eigen square root tolerates the (near-)singular matrices that estimated correlations
    # can be, e.g. the direct and LCA carbon columns moving almost in lock-step.
    values, vectors = np.linalg.eigh(corr)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _seed_sequence(seed: int, region_id: str, year: int) -> np.random.SeedSequence:
    # crc32 rather than hash(): stable across processes and Python versions.
    return np.random.SeedSequence([seed, zlib.crc32(region_id.encode()), year])


@lru_cache(maxsize=64)
def synthesise_year(region_id: str, year: int, seed: int = 0) -> pd.DataFrame:
    """One UTC calendar year of synthetic hourly signals. Cached: copy before changing it."""
    region = get_region(region_id)
    stats = region_stats(region.id)
    index = pd.date_range(pd.Timestamp(year=year, month=1, day=1, tz="UTC"),
                          pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC"),
                          freq="h", inclusive="left", name="time_utc")
    rng = np.random.default_rng(_seed_sequence(seed, region.id, year))
    month0 = index.month.to_numpy() - 1
    hour = index.hour.to_numpy()
    solar_day = (index + pd.Timedelta(hours=stats.solar_offset_h)).normalize()
    day_idx, _ = pd.factorize(solar_day)

    z_day = _ar1(rng, int(day_idx.max()) + 1, stats.phi_day, stats.corr_day)
    day_level = z_day[day_idx] * stats.day_std[month0]
    within = _ar1(rng, len(index), stats.phi_hour, stats.corr_hour) \
        * stats.within_std[month0, hour]
    # Centre so that every month (day level) and month x hour (within-day) averages to zero.
    day_level -= pd.DataFrame(day_level).groupby(month0).transform("mean").to_numpy()
    cell = month0 * 24 + hour
    within -= pd.DataFrame(within).groupby(cell).transform("mean").to_numpy()

    profile = stats.mean[month0, hour]
    frame = pd.DataFrame(profile + day_level + within, index=index, columns=list(SIGNAL_COLUMNS))
    targets = pd.DataFrame(profile, columns=list(SIGNAL_COLUMNS)).groupby(month0).mean()
    for column, (lo, hi) in PHYSICAL_RANGES.items():
        frame[column] = _clip_keeping_mean(frame[column].to_numpy(), month0,
                                           targets[column].to_numpy(), lo, hi)
    return frame


def _clip_keeping_mean(
    values: np.ndarray, month0: np.ndarray, target: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """Clip to [lo, hi], then shrink each month's values toward the bound that was hit.

    Clipping alone biases the mean where a signal runs near a bound (Ontario's carbon near 0,
    humid sites' RH near 100 %); shrinking the distance to that bound restores each month's
    mean exactly and keeps every value inside the range.
    """
    out = np.clip(values, lo, hi)
    for m in np.unique(month0):
        sel = month0 == m
        actual, want = out[sel].mean(), float(np.clip(target[m], lo, hi))
        if actual > want and actual > lo:
            out[sel] = lo + (out[sel] - lo) * (want - lo) / (actual - lo)
        elif actual < want and actual < hi:
            out[sel] = hi - (hi - out[sel]) * (hi - want) / (hi - actual)
    return out


def embedded_signals(
    region_id: str, start_utc: pd.Timestamp, end_utc: pd.Timestamp, seed: int = 0
) -> pd.DataFrame:
    """Synthetic hourly signals on [start_utc, end_utc), whole UTC hours, any years."""
    last = end_utc - pd.Timedelta(hours=1)
    parts = [
        synthesise_year(region_id, year, seed).loc[max(start_utc, _year_start(year)):
                                                   min(last, _year_start(year + 1))]
        for year in range(start_utc.year, last.year + 1)
    ]
    return pd.concat(parts).copy()


def _year_start(year: int) -> pd.Timestamp:
    return pd.Timestamp(year=year, month=1, day=1, tz="UTC")
