"""Wet-bulb temperature from dry-bulb temperature and relative humidity.

Stull, R. (2011). Wet-Bulb Temperature from Relative Humidity and Air Temperature. Journal of
Applied Meteorology and Climatology 50(11), 2267-2269, doi:10.1175/JAMC-D-11-0143.1, eq. (1).
The fit is for sea-level pressure (101.325 kPa), RH 5-99 % and -20..50 °C, with errors of
-1..+0.65 K in that range.
"""

from __future__ import annotations

import numpy as np

# Stull's fit holds from 5 % RH; below that we hold 5 %, which slightly over-states wet-bulb and
# so errs on the side of more cooling water rather than less.
STULL_MIN_RH_PCT = 5.0


def wet_bulb_c(temp_c: np.ndarray | float, rh_pct: np.ndarray | float) -> np.ndarray:
    """Wet-bulb temperature (°C) by Stull (2011), never above the dry-bulb temperature."""
    t = np.asarray(temp_c, dtype=float)
    rh = np.clip(np.asarray(rh_pct, dtype=float), STULL_MIN_RH_PCT, 100.0)
    tw = (
        t * np.arctan(0.151977 * np.sqrt(rh + 8.313659))
        + np.arctan(t + rh)
        - np.arctan(rh - 1.676331)
        + 0.00391838 * rh**1.5 * np.arctan(0.023101 * rh)
        - 4.686035
    )
    # The fit overshoots the dry-bulb by up to ~0.1 K near saturation; a wet bulb cannot be
    # warmer than the air, so saturation is where the two meet.
    return np.minimum(tw, t)
