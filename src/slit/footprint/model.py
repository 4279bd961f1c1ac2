"""Footprint of IT energy at a site, hour by hour: facility energy, carbon, water and cost.

Everything is linear in IT energy. ``hourly_coefficients`` gives the per-kWh-of-IT multipliers
for each hour (what an optimiser needs); ``site_footprint`` is those multipliers times energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from slit.data.signals import CARBON_DIRECT, CARBON_LCA, PRICE, RH, TEMP
from slit.errors import SlitInputError
from slit.footprint.cooling import SiteFootprintParams, pue, wue_onsite_l_per_kwh
from slit.footprint.wetbulb import wet_bulb_c


class CarbonBasis(StrEnum):
    """Which Electricity Maps carbon intensity counts: direct (operational) emissions or the
    life-cycle (LCA) figure that adds plant construction and fuel supply."""

    DIRECT = "direct"
    LCA = "lca"


CARBON_COLUMN: dict[CarbonBasis, str] = {CarbonBasis.DIRECT: CARBON_DIRECT,
                                         CarbonBasis.LCA: CARBON_LCA}

COEFFICIENT_COLUMNS: tuple[str, ...] = (
    "pue",
    "wet_bulb_c",
    "wue_onsite_l_per_kwh",
    "ewif_l_per_kwh",
    "carbon_kg_per_kwh_it",
    "water_onsite_l_per_kwh_it",
    "water_offsite_l_per_kwh_it",
    "water_l_per_kwh_it",
    "cost_usd_per_kwh_it",
)


def carbon_column(carbon_basis: CarbonBasis | str) -> str:
    """The signal column for a carbon basis, or a SlitInputError naming the choices."""
    try:
        return CARBON_COLUMN[CarbonBasis(carbon_basis)]
    except ValueError:
        raise SlitInputError(
            "carbon basis", f"unknown value {carbon_basis!r}",
            f"use one of: {', '.join(repr(b.value) for b in CarbonBasis)}") from None


def hourly_coefficients(
    hourly: pd.DataFrame, site: SiteFootprintParams, carbon_basis: CarbonBasis = CarbonBasis.DIRECT
) -> pd.DataFrame:
    """Per-hour footprint of one kWh of IT energy at ``site``, on ``hourly``'s index.

    ``hourly`` holds the signal columns of ``slit.data.signals`` (as from
    ``slit.data.source.get_signals``). Columns of the result are ``COEFFICIENT_COLUMNS``:
    PUE, wet-bulb (°C), on-site WUE (L per IT kWh), EWIF (L per facility kWh), and per IT kWh:
    carbon (kg), on-site, off-site and total water (L), energy cost (USD; negative when the
    price is).
    """
    carbon = carbon_column(carbon_basis)
    missing = [c for c in (carbon, PRICE, TEMP, RH) if c not in hourly.columns]
    if missing:
        raise SlitInputError("hourly signals", f"missing column {missing[0]!r}",
                             "pass the table from slit.data.source.get_signals")
    temp = hourly[TEMP].to_numpy(dtype=float)
    return pd.DataFrame(
        coefficients_from_weather(
            temp, wet_bulb_c(temp, hourly[RH].to_numpy(dtype=float)),
            hourly[carbon].to_numpy(dtype=float), hourly[PRICE].to_numpy(dtype=float), site,
        ),
        index=hourly.index,
    )


def coefficients_from_weather(
    temp_c: np.ndarray, wet_bulb: np.ndarray, carbon_g_per_kwh: np.ndarray,
    price_usd_per_mwh: np.ndarray, site: SiteFootprintParams,
) -> dict[str, np.ndarray]:
    """The ``COEFFICIENT_COLUMNS`` from dry-bulb and wet-bulb temperature, carbon intensity and
    price (arrays of one length): the one place the per-kWh footprint is worked out, for actual
    signals and forecasts alike."""
    facility_per_it = pue(temp_c, wet_bulb, site)
    wue = wue_onsite_l_per_kwh(wet_bulb, site)
    offsite = facility_per_it * site.ewif_l_per_kwh
    return {
        "pue": facility_per_it,
        "wet_bulb_c": np.asarray(wet_bulb, dtype=float),
        "wue_onsite_l_per_kwh": wue,
        "ewif_l_per_kwh": np.full(len(facility_per_it), site.ewif_l_per_kwh),
        # g/kWh -> kg/kWh, and USD/MWh -> USD/kWh: both / 1000.
        "carbon_kg_per_kwh_it": facility_per_it * np.asarray(carbon_g_per_kwh, float) / 1e3,
        "water_onsite_l_per_kwh_it": wue,
        "water_offsite_l_per_kwh_it": offsite,
        "water_l_per_kwh_it": wue + offsite,
        "cost_usd_per_kwh_it": facility_per_it * np.asarray(price_usd_per_mwh, float) / 1e3,
    }


@dataclass(frozen=True, slots=True)
class Footprint:
    """Hourly footprint arrays (one entry per hour) of IT energy at one site."""

    it_energy_kwh: np.ndarray
    facility_energy_kwh: np.ndarray
    carbon_kg: np.ndarray
    water_onsite_l: np.ndarray
    water_offsite_l: np.ndarray
    cost_usd: np.ndarray

    @property
    def water_l(self) -> np.ndarray:
        return self.water_onsite_l + self.water_offsite_l

    @property
    def total_facility_energy_kwh(self) -> float:
        return float(self.facility_energy_kwh.sum())

    @property
    def total_carbon_kg(self) -> float:
        return float(self.carbon_kg.sum())

    @property
    def total_water_onsite_l(self) -> float:
        return float(self.water_onsite_l.sum())

    @property
    def total_water_offsite_l(self) -> float:
        return float(self.water_offsite_l.sum())

    @property
    def total_water_l(self) -> float:
        return self.total_water_onsite_l + self.total_water_offsite_l

    @property
    def total_cost_usd(self) -> float:
        return float(self.cost_usd.sum())


def site_footprint(
    it_energy_kwh: np.ndarray,
    hourly: pd.DataFrame,
    site: SiteFootprintParams,
    carbon_basis: CarbonBasis = CarbonBasis.DIRECT,
) -> Footprint:
    """Facility energy, carbon, water (on- and off-site) and cost of ``it_energy_kwh`` per hour.

    ``it_energy_kwh[i]`` is the IT energy used during the hour ``hourly.index[i]``.
    """
    energy = np.asarray(it_energy_kwh, dtype=float)
    if energy.shape != (len(hourly),):
        raise ValueError(
            f"it_energy_kwh has shape {energy.shape}, expected ({len(hourly)},), one per hour"
        )
    if (energy < 0).any():
        raise ValueError("it_energy_kwh must not be negative")
    coef = hourly_coefficients(hourly, site, carbon_basis)
    return Footprint(
        it_energy_kwh=energy.copy(),
        facility_energy_kwh=energy * coef["pue"].to_numpy(),
        carbon_kg=energy * coef["carbon_kg_per_kwh_it"].to_numpy(),
        water_onsite_l=energy * coef["water_onsite_l_per_kwh_it"].to_numpy(),
        water_offsite_l=energy * coef["water_offsite_l_per_kwh_it"].to_numpy(),
        cost_usd=energy * coef["cost_usd_per_kwh_it"].to_numpy(),
    )
