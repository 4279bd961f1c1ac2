"""Footprint of IT energy at a site: wet-bulb, PUE, on-site WUE, off-site EWIF, carbon, cost.

Model and sources: docs/footprint.md.
"""

from slit.footprint.cooling import CoolingType, SiteFootprintParams, pue, wue_onsite_l_per_kwh
from slit.footprint.grid_water import GENERATION_MIX_2023_PCT, ewif_l_per_kwh
from slit.footprint.model import (
    COEFFICIENT_COLUMNS,
    CarbonBasis,
    Footprint,
    carbon_column,
    hourly_coefficients,
    site_footprint,
)
from slit.footprint.wetbulb import wet_bulb_c

__all__ = [
    "COEFFICIENT_COLUMNS",
    "GENERATION_MIX_2023_PCT",
    "CarbonBasis",
    "CoolingType",
    "Footprint",
    "SiteFootprintParams",
    "carbon_column",
    "ewif_l_per_kwh",
    "hourly_coefficients",
    "pue",
    "site_footprint",
    "wet_bulb_c",
    "wue_onsite_l_per_kwh",
]
