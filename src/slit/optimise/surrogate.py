"""Training the serving surrogate: samples from the cache or the simulator, a held-out score on
whole design cells, and the model used for scheduling.

The parts live in their own modules: ``token_mix`` (token statistics), ``surrogate_design``
(the simulations), ``surrogate_cache`` (the disk cache), ``surrogate_model`` (the estimator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from slit.optimise.surrogate_cache import load_samples, store_samples
from slit.optimise.surrogate_design import SurrogateSpec, simulate_samples
from slit.optimise.surrogate_model import FEATURES, TARGETS, ServingSurrogate
from slit.optimise.token_mix import mean_tokens

__all__ = ["SurrogateAccuracy", "SurrogateSpec", "ServingSurrogate", "mean_tokens",
           "train_surrogate", "held_out_accuracy"]

# Operating range in which accuracy is reported: the scheduler sizes fleets below saturation.
OPERATING_UTILISATION = 0.9


@dataclass
class SurrogateAccuracy:
    """MAPE (%) per target on held-out design cells, overall and within the operating range."""

    mape_pct: dict[str, float] = field(default_factory=dict)
    mape_operating_pct: dict[str, float] = field(default_factory=dict)
    n_train_runs: int = 0
    n_test_runs: int = 0


def mape(model: ServingSurrogate, samples: pd.DataFrame) -> tuple[dict[str, float],
                                                                  dict[str, float]]:
    """MAPE (%) per target over ``samples`` and over those within the operating range."""
    predicted = model.predict(samples[list(FEATURES)])
    operating = samples["utilisation"].to_numpy() <= OPERATING_UTILISATION
    overall, within = {}, {}
    for j, target in enumerate(TARGETS):
        actual = samples[target].to_numpy(dtype=float)
        err = np.abs(predicted[:, j] - actual) / np.maximum(np.abs(actual), 1e-9)
        overall[target] = float(100 * err.mean())
        within[target] = float(100 * err[operating].mean()) if operating.any() else np.nan
    return overall, within


def held_out_accuracy(samples: pd.DataFrame, spec: SurrogateSpec) -> SurrogateAccuracy:
    """Fit on some design cells, score on the others. A cell (replica, mix, awake replicas) is
    held out whole: its load sweep is correlated, so scoring on random runs of cells the model
    has seen would flatter it."""
    split = GroupShuffleSplit(n_splits=1, test_size=spec.held_out_share, random_state=spec.seed)
    train, test = next(split.split(samples, groups=samples["cell"]))
    model = ServingSurrogate(seed=spec.seed).fit(samples.iloc[train][list(FEATURES)],
                                                 samples.iloc[train][list(TARGETS)])
    overall, operating = mape(model, samples.iloc[test])
    return SurrogateAccuracy(overall, operating, len(train), len(test))


def train_surrogate(
    spec: SurrogateSpec, progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> tuple[ServingSurrogate, SurrogateAccuracy]:
    """Simulate (or load cached samples), score on held-out cells, fit on every run."""
    samples = load_samples(spec) if use_cache else None
    if samples is None:
        samples = simulate_samples(spec, progress)
        if use_cache:
            store_samples(spec, samples)
    samples = samples.dropna(subset=list(TARGETS)).reset_index(drop=True)
    accuracy = held_out_accuracy(samples, spec)
    # The model used for scheduling learns from every run; its accuracy is the held-out one's.
    model = ServingSurrogate(seed=spec.seed).fit(samples[list(FEATURES)], samples[list(TARGETS)])
    return model, accuracy
