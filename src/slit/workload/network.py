"""Network round-trip time from a user origin to a datacenter site.

The model is deliberately simple and documented in ``docs/workload.md``::

    rtt_ms = overhead_ms + 2 * distance_km * route_inflation / fibre_speed_km_per_ms

- ``distance_km``: great-circle (haversine) distance between the two region points of
  ``slit.data.regions`` on a sphere of radius 6371 km.
- fibre speed: light in silica travels at about c / 1.47 = 2.04e8 m/s, i.e. 204 km/ms.
- route inflation: cables and routing paths are longer than the great circle; 1.5 matches
  published inter-region round trips within +-30 % for the pairs cited in the docs.
- overhead: access network, switching and serialisation that do not scale with distance; it is
  also the round trip from a user to the datacenter of its own region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slit.data.regions import get_region

EARTH_RADIUS_KM = 6371.0
SPEED_OF_LIGHT_KM_PER_MS = 299.792458
FIBRE_REFRACTIVE_INDEX = 1.47


@dataclass(frozen=True, slots=True)
class NetworkModel:
    """Parameters of the distance-based round-trip model."""

    route_inflation: float = 1.5
    overhead_ms: float = 10.0
    fibre_speed_km_per_ms: float = SPEED_OF_LIGHT_KM_PER_MS / FIBRE_REFRACTIVE_INDEX

    def rtt_ms(self, distance_km: np.ndarray | float) -> np.ndarray:
        """Round trip for a one-way great-circle distance (array in, array out)."""
        distance = np.asarray(distance_km, dtype=float)
        return self.overhead_ms + 2.0 * distance * self.route_inflation / self.fibre_speed_km_per_ms


DEFAULT_NETWORK = NetworkModel()


def great_circle_km(
    lat1_deg: np.ndarray | float, lon1_deg: np.ndarray | float,
    lat2_deg: np.ndarray | float, lon2_deg: np.ndarray | float,
) -> np.ndarray:
    """Haversine distance; broadcasts like numpy."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=float))
                              for v in (lat1_deg, lon1_deg, lat2_deg, lon2_deg))
    a = (np.sin((lat2 - lat1) / 2.0) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2)
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def distance_km_matrix(origin_ids: tuple[str, ...] | list[str],
                       site_ids: tuple[str, ...] | list[str]) -> np.ndarray:
    """Great-circle distance [n_origins, n_sites] between region points."""
    origins = [get_region(r, "origin") for r in origin_ids]
    sites = [get_region(r, "site") for r in site_ids]
    lat_o = np.array([r.lat_deg for r in origins])[:, None]
    lon_o = np.array([r.lon_deg for r in origins])[:, None]
    lat_s = np.array([r.lat_deg for r in sites])[None, :]
    lon_s = np.array([r.lon_deg for r in sites])[None, :]
    return great_circle_km(lat_o, lon_o, lat_s, lon_s)


def rtt_ms_matrix(origin_ids: tuple[str, ...] | list[str], site_ids: tuple[str, ...] | list[str],
                  model: NetworkModel = DEFAULT_NETWORK) -> np.ndarray:
    """Round trip [n_origins, n_sites] in milliseconds from each origin to each site."""
    return model.rtt_ms(distance_km_matrix(origin_ids, site_ids))
