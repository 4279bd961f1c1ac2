"""The serving surrogate as a scikit-learn estimator: LightGBM regressors over ``FEATURES``.

For a replica type (model, GPU, tensor parallelism), a token mix, a number of awake replicas and
an offered load, it predicts ``TARGETS``: TTFT mean, p95 and p99 (s), IT power per awake replica
(W) and throughput (req/s). One regressor per target; TTFT is learned in log space and is
monotone non-decreasing in load. Parameters are set in ``__init__``, ``fit(X, y)`` returns the
estimator, ``predict(X)`` returns an array ``[n, len(TARGETS)]``.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from slit.optimise.site_table import SiteServingTable
from slit.optimise.token_mix import TokenMix
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import GPUS, MODELS, ReplicaSpec
from slit.serving.power import replica_power

FEATURES: tuple[str, ...] = (
    "gpu_code", "model_code", "tp", "n_awake", "load_rps_per_replica", "utilisation",
    "mean_prompt_tokens", "mean_output_tokens",
)
TARGETS: tuple[str, ...] = (
    "ttft_mean_s", "ttft_p95_s", "ttft_p99_s", "power_w_per_replica", "throughput_rps",
)
LOG_TARGETS = frozenset({"ttft_mean_s", "ttft_p95_s", "ttft_p99_s"})
SLO_PERCENTILES = {95: "ttft_p95_s", 99: "ttft_p99_s"}
GPU_CODES = {name: i for i, name in enumerate(sorted(GPUS))}
MODEL_CODES = {name: i for i, name in enumerate(sorted(MODELS))}
MONOTONE_IN = frozenset({"load_rps_per_replica", "utilisation"})


class ServingSurrogate(RegressorMixin, BaseEstimator):
    """One LightGBM regressor per target of ``TARGETS``."""

    def __init__(self, learning_rate: float = 0.05, num_leaves: int = 15,
                 min_data_in_leaf: int = 3, n_rounds: int = 400, seed: int = 0) -> None:
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.n_rounds = n_rounds
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: pd.DataFrame | np.ndarray) -> ServingSurrogate:
        """``X`` with the ``FEATURES`` columns, ``y`` [n, len(TARGETS)] in ``TARGETS`` order."""
        x = _features(X)
        targets = np.asarray(y[list(TARGETS)] if isinstance(y, pd.DataFrame) else y, float)
        monotone = [1 if f in MONOTONE_IN else 0 for f in FEATURES]
        self.boosters_: dict[str, lgb.Booster] = {}
        for j, target in enumerate(TARGETS):
            values = np.log(targets[:, j]) if target in LOG_TARGETS else targets[:, j]
            # One thread: a few hundred rows gain nothing from more, and OpenMP threads that
            # spin-wait slow to a crawl when another process holds the second core.
            params: dict[str, Any] = {
                "objective": "regression", "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
                "verbose": -1, "seed": self.seed, "deterministic": True, "num_threads": 1,
                "force_row_wise": True,
            }
            if target != "throughput_rps":
                params["monotone_constraints"] = monotone
            self.boosters_[target] = lgb.train(params, lgb.Dataset(x, values),
                                               num_boost_round=self.n_rounds)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """[n, len(TARGETS)] predictions in ``TARGETS`` order."""
        x = _features(X)
        columns = []
        for target in TARGETS:
            y = self.boosters_[target].predict(x)
            columns.append(np.exp(y) if target in LOG_TARGETS else y)
        return np.stack(columns, axis=1)

    def predict_targets(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """``predict`` as a dict by target name."""
        return dict(zip(TARGETS, self.predict(X).T, strict=True))

    def site_table(self, replica: ReplicaSpec, installed: int, mix: TokenMix,
                   slo_percentile: int = 99, grid_points: int = 49) -> SiteServingTable:
        """Tabulate predictions for 1..installed awake replicas on a load grid up to 1.1x
        the analytic capacity of a replica (see ``slit.optimise.site_table``); the tail is the
        TTFT percentile the SLO is judged at."""
        mean_prompt, mean_output = mix.mean_tokens()
        capacity = max_throughput_rps(replica, mean_prompt, mean_output)
        grid = np.linspace(0.0, 1.1 * capacity, grid_points)
        n = np.repeat(np.arange(1, installed + 1), grid_points)
        load = np.tile(grid, installed)
        frame = feature_frame(replica, n, load, capacity, mean_prompt, mean_output)
        predicted = self.predict_targets(frame)
        shape = (installed, grid_points)
        mean = np.maximum.accumulate(predicted["ttft_mean_s"].reshape(shape), axis=1)
        tail = np.maximum.accumulate(
            predicted[SLO_PERCENTILES[slo_percentile]].reshape(shape), axis=1)
        power = predicted["power_w_per_replica"].reshape(shape)
        return SiteServingTable(
            installed=installed, load_rps_per_replica=grid, ttft_mean_s=mean,
            ttft_tail_s=np.maximum(tail, mean), power_w_per_replica=power,
            standby_w_per_replica=replica_power(replica).standby_w,
        )


def _features(X: pd.DataFrame) -> np.ndarray:
    return X[list(FEATURES)].to_numpy(dtype=float)


def feature_frame(replica: ReplicaSpec, n: np.ndarray, load_per_replica: np.ndarray,
                  capacity_rps: float, mean_prompt: float, mean_output: float) -> pd.DataFrame:
    """The ``FEATURES`` of ``replica`` at ``n`` awake replicas and the given loads."""
    size = len(n)
    return pd.DataFrame({
        "gpu_code": np.full(size, GPU_CODES[replica.gpu]),
        "model_code": np.full(size, MODEL_CODES[replica.model]),
        "tp": np.full(size, replica.tp),
        "n_awake": n,
        "load_rps_per_replica": load_per_replica,
        "utilisation": load_per_replica / capacity_rps,
        "mean_prompt_tokens": np.full(size, mean_prompt),
        "mean_output_tokens": np.full(size, mean_output),
    })
