"""The catalog of grid regions SLIT knows: where each datacenter site sits and its time zone.

Coordinates, time zone and elevation are those of the Open-Meteo weather point shipped with each
region's data (``regions/REGION/YEAR/weather.json``); names follow Electricity Maps zone names.
"""

from __future__ import annotations

from dataclasses import dataclass

from slit.errors import SlitInputError


@dataclass(frozen=True, slots=True)
class Region:
    """A grid region, which hosts one datacenter site and one user origin by default."""

    id: str  # Electricity Maps zone id, e.g. "US-CAL-CISO"
    name: str
    country: str
    lat_deg: float
    lon_deg: float
    timezone: str  # IANA zone name
    elevation_m: float


REGIONS: dict[str, Region] = {
    r.id: r
    for r in (
        Region("AU-NSW", "New South Wales", "Australia", -33.848858, 151.19551,
               "Australia/Sydney", 69.0),
        Region("AU-VIC", "Victoria", "Australia", -37.785587, 144.93976,
               "Australia/Melbourne", 21.0),
        Region("BR-SP", "Central Brazil", "Brazil", -23.514938, -46.610504,
               "America/Sao_Paulo", 737.0),
        Region("CA-ON", "Ontario", "Canada", 43.690685, -79.41174, "America/Toronto", 180.0),
        Region("CL-SIC", "Sistema Eléctrico Nacional", "Chile", -33.427067, -70.64276,
               "America/Santiago", 554.0),
        Region("DE-LU", "Germany", "Germany", 50.08787, 8.653846, "Europe/Berlin", 111.0),
        Region("IN-WE", "Western India", "India", 19.086115, 72.85291, "Asia/Kolkata", 9.0),
        Region("JP-TK", "Tōkyō", "Japan", 35.676624, 139.80695, "Asia/Tokyo", 14.0),
        Region("KR", "South Korea", "South Korea", 37.57469, 126.96, "Asia/Seoul", 33.0),
        Region("SG", "Singapore", "Singapore", 1.3005272, 103.862564, "Asia/Singapore", 19.0),
        Region("US-CAL-CISO", "CAISO", "USA", 37.434093, -121.95479, "America/Los_Angeles", 7.0),
        Region("US-MIDA-PJM", "PJM Interconnection", "USA", 39.964848, -75.1676,
               "America/New_York", 23.0),
        Region("US-NY-NYIS", "New York ISO", "USA", 40.738136, -74.04254, "America/New_York",
               27.0),
        Region("US-TEX-ERCO", "Electric Reliability Council of Texas", "USA", 32.794376,
               -96.8215, "America/Chicago", 142.0),
        Region("ZA", "South Africa", "South Africa", -26.186293, 28.026318,
               "Africa/Johannesburg", 1734.0),
    )
}

DEFAULT_REGION_IDS: tuple[str, ...] = tuple(REGIONS)


def get_region(region_id: str, where: str = "region") -> Region:
    """Look a region up by id, or fail with the list of known ids."""
    try:
        return REGIONS[region_id]
    except KeyError:
        known = " ".join(REGIONS)
        raise SlitInputError(
            where, f"unknown region {region_id!r}", f"use one of: {known}"
        ) from None
