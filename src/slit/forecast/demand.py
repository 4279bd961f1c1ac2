"""Next-interval demand per origin, from the request counts observed so far.

The forecast is a reference shape for the next interval scaled by how far each origin has
recently run above or below that shape::

    level_o = (sum_k w_k obs_ko + 1) / (sum_k w_k ref_ko + 1),   w_k = 0.5 ** (age_k / halflife)
    forecast_o = level_o * ref_next,o

The reference is the prior ``DemandModel``'s expected counts when one is given; without a prior
it is the counts observed one day earlier (seasonal), and before a full day has been seen it is
the last interval's count (persistence). The +1 (one request) keeps origins with near-zero
traffic from dividing by zero without biasing busy ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from slit.errors import SlitInputError
from slit.workload.demand import DemandModel

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class DemandForecaster:
    """Expected requests per origin in the interval after the observed ones."""

    interval_s: float = 900.0
    prior: DemandModel | None = None
    halflife_intervals: float = 4.0

    def predict_next(self, start_utc: pd.Timestamp | str, observed_counts: np.ndarray
                     ) -> np.ndarray:
        """Forecast [n_origins] for interval ``K`` from counts [K, n_origins] of intervals
        ``0..K-1``, interval 0 starting at ``start_utc``."""
        counts = np.asarray(observed_counts, dtype=float)
        if counts.ndim != 2 or len(counts) == 0:
            raise SlitInputError("demand forecast", "needs counts [intervals, origins] with at "
                                 "least one interval", "pass the per-interval counts so far")
        n_done = len(counts)
        if self.prior is not None:
            if counts.shape[1] != self.prior.n_origins:
                raise SlitInputError("demand forecast", f"counts have {counts.shape[1]} origins, "
                                     f"the prior {self.prior.n_origins}",
                                     "use the prior's origin list")
            reference = self.prior.expected_counts(pd.Timestamp(start_utc), n_done + 1,
                                                   self.interval_s)
            return self._scaled(counts, reference[:-1], reference[-1])
        per_day = int(round(DAY_S / self.interval_s))
        if n_done < per_day + 1:
            return counts[-1].copy()
        return self._scaled(counts[per_day:], counts[:-per_day], counts[n_done - per_day])

    def _scaled(self, observed: np.ndarray, reference: np.ndarray,
                reference_next: np.ndarray) -> np.ndarray:
        age = np.arange(len(observed) - 1, -1, -1, dtype=float)
        weight = 0.5 ** (age / self.halflife_intervals)
        level = (weight @ observed + 1.0) / (weight @ reference + 1.0)
        return level * reference_next
