"""Site cooling: PUE as a function of the outdoor air, and on-site WUE from a cooling-tower model.

Every constant here is justified, with its source, in docs/footprint.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from slit.data.regions import get_region
from slit.footprint.grid_water import ewif_l_per_kwh

KJ_PER_KWH = 3600.0
# Latent heat of vaporisation of water at 30 °C, a typical cooling-tower water temperature
# (IAPWS-IF97 steam tables: 2430.5 kJ/kg).
LATENT_HEAT_KJ_PER_KG = 2430.0
# Water density taken as 1 kg/L: the < 0.5 % error at tower temperatures is below the model's.
LITRES_PER_KG_WATER = 1.0


class CoolingType(StrEnum):
    """How a site rejects heat."""

    EVAPORATIVE = "evaporative"  # cooling tower / adiabatic assist: uses water, lower PUE
    DRY = "dry"  # dry coolers / air-cooled chillers: no water on site, higher PUE when hot


@dataclass(frozen=True, slots=True)
class SiteFootprintParams:
    """What turns a site's IT energy into facility energy and water. Build with ``for_region``."""

    region_id: str
    cooling: CoolingType
    # PUE = pue_base + pue_slope_per_k * max(0, T - pue_threshold_c), T the wet-bulb for
    # evaporative sites (what a tower can reach) and the dry-bulb for dry sites.
    pue_base: float
    pue_threshold_c: float
    pue_slope_per_k: float
    # Cooling tower: share of the IT heat that goes through the tower (the rest is economised)
    # ramps linearly from 0 at wue_ramp_start_c to 1 at wue_ramp_full_c of wet-bulb.
    wue_ramp_start_c: float
    wue_ramp_full_c: float
    evaporated_heat_share: float  # of the heat a tower rejects, the share that leaves as vapour
    cycles_of_concentration: float  # blowdown = evaporation / (cycles - 1)
    ewif_l_per_kwh: float  # off-site water per kWh of facility energy

    def __post_init__(self) -> None:
        if self.cycles_of_concentration <= 1.0:
            raise ValueError("cycles_of_concentration must exceed 1 (blowdown = E / (C - 1))")
        if self.wue_ramp_full_c <= self.wue_ramp_start_c:
            raise ValueError("wue_ramp_full_c must be above wue_ramp_start_c")
        if self.pue_base < 1.0 or self.pue_slope_per_k < 0.0:
            raise ValueError("pue_base must be >= 1 and pue_slope_per_k >= 0")

    @classmethod
    def for_region(
        cls,
        region_id: str,
        cooling: CoolingType = CoolingType.EVAPORATIVE,
        include_hydro_reservoir: bool = False,
    ) -> SiteFootprintParams:
        """The default parameters of a hyperscale site with this cooling in this region."""
        region = get_region(region_id)
        pue = _DEFAULT_PUE[cooling]
        return cls(
            region_id=region.id,
            cooling=cooling,
            pue_base=pue[0],
            pue_threshold_c=pue[1],
            pue_slope_per_k=pue[2],
            wue_ramp_start_c=5.0,
            wue_ramp_full_c=20.0,
            evaporated_heat_share=0.85,
            cycles_of_concentration=5.0,
            ewif_l_per_kwh=ewif_l_per_kwh(region.id, include_hydro_reservoir),
        )


# (base PUE, threshold °C, slope per K) by cooling type; see docs/footprint.md "PUE".
_DEFAULT_PUE: dict[CoolingType, tuple[float, float, float]] = {
    CoolingType.EVAPORATIVE: (1.10, 18.0, 0.010),
    CoolingType.DRY: (1.12, 18.0, 0.012),
}


def pue(temp_c: np.ndarray, wet_bulb_c: np.ndarray, site: SiteFootprintParams) -> np.ndarray:
    """Power usage effectiveness per hour (facility kWh per IT kWh)."""
    driver_c = wet_bulb_c if site.cooling is CoolingType.EVAPORATIVE else temp_c
    excess_k = np.maximum(np.asarray(driver_c, dtype=float) - site.pue_threshold_c, 0.0)
    return site.pue_base + site.pue_slope_per_k * excess_k


def wue_onsite_l_per_kwh(wet_bulb_c: np.ndarray, site: SiteFootprintParams) -> np.ndarray:
    """On-site water consumed per kWh of IT energy (L/kWh): tower evaporation plus blowdown.

    Non-decreasing in wet-bulb and never negative; zero for dry-cooled sites.
    """
    wet_bulb = np.asarray(wet_bulb_c, dtype=float)
    if site.cooling is CoolingType.DRY:
        return np.zeros_like(wet_bulb)
    tower_share = np.clip(
        (wet_bulb - site.wue_ramp_start_c) / (site.wue_ramp_full_c - site.wue_ramp_start_c),
        0.0, 1.0,
    )
    evaporation_l_per_kwh = (
        KJ_PER_KWH / LATENT_HEAT_KJ_PER_KG * LITRES_PER_KG_WATER
        * site.evaporated_heat_share * tower_share
    )
    # Make-up water = evaporation + blowdown = E * C / (C - 1); drift is < 0.002 % of the
    # circulating flow with modern eliminators and is left out.
    cycles = site.cycles_of_concentration
    return evaporation_l_per_kwh * cycles / (cycles - 1.0)
