"""A site's serving behaviour tabulated on a load grid, for fast vectorised plan evaluation.

The ML surrogate (``slit.optimise.surrogate``) predicts TTFT and power for any load; evaluating
it inside the evolutionary loop for every candidate would dominate the decision time, so once per
interval its predictions are tabulated on a grid of (awake replicas, load per replica) and the
optimiser interpolates in that table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SiteServingTable:
    """Serving behaviour of one site with 1..``installed`` replicas awake.

    ``ttft_tail_s`` is the TTFT percentile the SLO is judged at (e.g. p99 for an SLO that 99 %
    of requests must meet).

    Arrays indexed ``[n - 1, g]``: ``n`` awake replicas, ``g`` the point of
    ``load_rps_per_replica`` (requests per second offered to each awake replica).
    """

    installed: int
    load_rps_per_replica: np.ndarray  # [G], increasing, starts at 0
    ttft_mean_s: np.ndarray  # [N, G]
    ttft_tail_s: np.ndarray  # [N, G]
    power_w_per_replica: np.ndarray  # [N, G], awake replica incl. its share of host power
    standby_w_per_replica: float

    def __post_init__(self) -> None:
        shape = (self.installed, len(self.load_rps_per_replica))
        for name in ("ttft_mean_s", "ttft_tail_s", "power_w_per_replica"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"SiteServingTable.{name} must have shape {shape}")

    def slo_capacity_rps(self, tail_target_s: float) -> np.ndarray:
        """Largest total load (req/s) that ``n`` awake replicas carry with tail TTFT within target.

        Entry ``n - 1``; 0 where even an idle replica misses the target. Made non-decreasing in
        ``n`` because more awake replicas can always serve at least what fewer could.
        """
        grid = self.load_rps_per_replica
        ok = self.ttft_tail_s <= tail_target_s
        # The tail grows with load; take the last grid point of the leading run of ok points.
        leading = np.cumprod(ok, axis=1).astype(bool)
        last = leading.sum(axis=1) - 1
        per_replica = np.where(last >= 0, grid[np.clip(last, 0, None)], 0.0)
        total = per_replica * np.arange(1, self.installed + 1)
        return np.maximum.accumulate(total)

    def lookup(self, load_rps: np.ndarray, n_awake: np.ndarray) -> tuple[np.ndarray, ...]:
        """TTFT mean, TTFT tail (s) and site IT power (W) for loads and awake counts (same shape).

        ``n_awake`` of 0 means the site is asleep (it must then carry no load). Loads beyond the
        grid are clamped to its last point, which the surrogate places past saturation.
        """
        load_rps = np.asarray(load_rps, dtype=float)
        n = np.asarray(n_awake, dtype=np.int64)
        row = np.clip(n - 1, 0, self.installed - 1)
        per_replica = np.where(n > 0, load_rps / np.maximum(n, 1), 0.0)
        grid = self.load_rps_per_replica
        pos = np.clip(np.searchsorted(grid, per_replica, side="right") - 1, 0, len(grid) - 2)
        frac = np.clip((per_replica - grid[pos]) / (grid[pos + 1] - grid[pos]), 0.0, 1.0)

        def interp(table: np.ndarray) -> np.ndarray:
            return table[row, pos] * (1.0 - frac) + table[row, pos + 1] * frac

        ttft_mean = interp(self.ttft_mean_s)
        ttft_tail = interp(self.ttft_tail_s)
        power = np.where(n > 0, n * interp(self.power_w_per_replica), 0.0)
        power = power + (self.installed - n) * self.standby_w_per_replica
        return ttft_mean, ttft_tail, power
