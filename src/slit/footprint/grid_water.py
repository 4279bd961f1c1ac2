"""Off-site water: the water consumed to generate one kWh on a region's grid (EWIF, L/kWh).

EWIF(region) = sum over fuels of (share of the region's 2023 generation) x (the fuel's operational
water-consumption factor). Consumption (evaporated, not returned), not withdrawal, because that is
the water a region loses; the same convention as Li, Yang, Islam and Ren (2023), "Making AI Less
Thirsty" (arXiv:2304.03271), who report 3.14 L/kWh for the US average.

Per-fuel factors: medians of Macknick, Newmark, Heath and Hallett (2012), "Operational water
consumption and withdrawal factors for electricity generating technologies: a review of existing
literature", Environ. Res. Lett. 7 045802 (Tables 1 and 2), for the cooling technology noted.
The mix table, its sources and the choices made are in docs/footprint.md.
"""

from __future__ import annotations

from types import MappingProxyType

from slit.data.regions import get_region

LITRES_PER_US_GALLON = 3.785411784
# gal/MWh -> L/kWh: x 3.785 L/gal / 1000 kWh/MWh.
GAL_PER_MWH_TO_L_PER_KWH = LITRES_PER_US_GALLON / 1000.0

FUELS: tuple[str, ...] = (
    "coal", "gas", "oil", "nuclear", "hydro", "wind", "solar", "bioenergy", "geothermal", "other",
)

# Macknick et al. (2012) median operational consumption, gal/MWh. Cooling-tower (recirculating)
# medians throughout: towers dominate new thermal capacity and are the conservative choice
# against once-through cooling, whose consumption is lower but not known plant by plant here.
MACKNICK_2012_GAL_PER_MWH: MappingProxyType[str, float] = MappingProxyType({
    "coal": 687.0,  # generic coal, tower
    "gas": 198.0,  # natural-gas combined cycle, tower (CCGT is most gas generation)
    # Macknick has no oil category; oil and other fossil plants are steam cycles, so they take
    # the generic coal steam-cycle tower figure.
    "oil": 687.0,
    "nuclear": 672.0,  # generic nuclear, tower
    # In-stream and reservoir evaporation. Used only on request (see ewif_l_per_kwh): reservoirs
    # serve irrigation, flood control and supply too, and the review flags the figure as highly
    # uncertain (range 1,425-18,000 gal/MWh).
    "hydro": 4491.0,
    "wind": 0.0,
    "solar": 26.0,  # utility-scale photovoltaics (panel washing)
    "bioenergy": 553.0,  # biopower steam, tower
    "geothermal": 10.0,  # flash, freshwater cooling
    "other": 687.0,  # other fossil / waste steam cycles, as oil
})

# Share of 2023 electricity generation by fuel, percent, rounded (each row sums to 100).
# Sources per region in docs/footprint.md ("Generation mix 2023"): Ember Yearly Electricity Data
# 2023 (country level), Open Electricity / AEMO (NEM states), IESO (Ontario), EIA-930 and the ISOs'
# 2023 annual reports (US balancing areas).
GENERATION_MIX_2023_PCT: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType({
    region: MappingProxyType(mix) for region, mix in {
        "AU-NSW": {"coal": 67, "gas": 2, "hydro": 5, "wind": 8, "solar": 18},
        "AU-VIC": {"coal": 60, "gas": 2, "hydro": 4, "wind": 23, "solar": 11},
        "BR-SP": {"coal": 2, "gas": 6, "oil": 1, "nuclear": 2, "hydro": 60, "wind": 13,
                  "solar": 7, "bioenergy": 8, "other": 1},
        "CA-ON": {"gas": 16, "nuclear": 50, "hydro": 24, "wind": 8, "solar": 1, "bioenergy": 1},
        "CL-SIC": {"coal": 17, "gas": 17, "oil": 1, "hydro": 27, "wind": 12, "solar": 21,
                   "bioenergy": 4, "geothermal": 1},
        "DE-LU": {"coal": 26, "gas": 16, "oil": 1, "nuclear": 1, "hydro": 4, "wind": 27,
                  "solar": 12, "bioenergy": 9, "other": 4},
        "IN-WE": {"coal": 74, "gas": 2, "nuclear": 3, "hydro": 8, "wind": 5, "solar": 6,
                  "bioenergy": 2},
        "JP-TK": {"coal": 28, "gas": 31, "oil": 3, "nuclear": 8, "hydro": 8, "wind": 1,
                  "solar": 11, "bioenergy": 6, "other": 4},
        "KR": {"coal": 34, "gas": 26, "oil": 1, "nuclear": 31, "hydro": 1, "wind": 1,
               "solar": 5, "bioenergy": 1},
        "SG": {"gas": 94, "oil": 1, "solar": 2, "bioenergy": 3},
        "US-CAL-CISO": {"gas": 37, "nuclear": 8, "hydro": 14, "wind": 9, "solar": 26,
                        "bioenergy": 2, "geothermal": 4},
        "US-MIDA-PJM": {"coal": 16, "gas": 44, "nuclear": 33, "hydro": 1, "wind": 4,
                        "solar": 1, "other": 1},
        "US-NY-NYIS": {"gas": 47, "oil": 1, "nuclear": 22, "hydro": 23, "wind": 4, "solar": 2,
                       "bioenergy": 1},
        "US-TEX-ERCO": {"coal": 14, "gas": 45, "nuclear": 9, "wind": 24, "solar": 7,
                        "other": 1},
        "ZA": {"coal": 83, "oil": 2, "nuclear": 4, "hydro": 1, "wind": 5, "solar": 5},
    }.items()
})


def ewif_l_per_kwh(region_id: str, include_hydro_reservoir: bool = False) -> float:
    """Water consumed off-site per kWh drawn from the region's grid (L/kWh), from the 2023 mix.

    Reservoir evaporation is left out by default (it is not attributable to generation alone);
    ``include_hydro_reservoir=True`` charges hydro at Macknick's median, as Li et al. (2023) do.
    """
    region = get_region(region_id)
    mix = GENERATION_MIX_2023_PCT[region.id]
    total_gal_per_mwh = sum(
        share_pct / 100.0 * MACKNICK_2012_GAL_PER_MWH[fuel]
        for fuel, share_pct in mix.items()
        if include_hydro_reservoir or fuel != "hydro"
    )
    return total_gal_per_mwh * GAL_PER_MWH_TO_L_PER_KWH
