"""Fit the iteration model's efficiency factors on the Vidur per-layer timings.

``DATA_DIR/profiles/vidur-mlp/{a100,h100}/MODEL.csv``: one row per measured configuration; the
measured time of a layer is the sum of the median times of its operators (the embedding runs once
per model, not per layer, and is left out). The fit minimises the squared log ratio of predicted to
measured layer time over all rows of a GPU, so small and large batches weigh alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from slit.errors import SlitInputError
from slit.serving.catalog import GPUS
from slit.serving.iteration import (
    N_PARAMS,
    P_BW,
    P_EFF_C,
    P_EFF_M,
    P_FFN,
    P_GATED,
    P_HEAD_DIM,
    P_HEADS,
    P_HIDDEN,
    P_KV_HEADS,
    P_LAUNCH,
    P_PEAK,
    P_TP,
    GpuEfficiency,
    layer_linear_s,
)

PROFILE_FOLDER = Path("profiles") / "vidur-mlp"
GPU_FOLDERS = {"a100": "A100-SXM4-80GB", "h100": "H100-SXM5-80GB"}
MODEL_FILES = {
    "Llama-2-7b-hf": "Llama-2-7B",
    "Llama-2-70b-hf": "Llama-2-70B",
    "Meta-Llama-3-8B": "Llama-3-8B",
    "Meta-Llama-3-70B": "Llama-3-70B",
}
LAYER_OPERATORS = (
    "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
    "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add",
)
SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "use_gated_mlp",
                 "num_tokens", "num_tensor_parallel_workers")


@dataclass(frozen=True, slots=True)
class ProfileGroup:
    """Rows of one GPU, model and tensor-parallel degree."""

    gpu: str
    model: str
    tp: int
    shape: np.ndarray  # packed parameter vector without GPU factors
    num_tokens: np.ndarray
    measured_s: np.ndarray


@dataclass(frozen=True, slots=True)
class FitReport:
    gpu: str
    model: str  # "all" for the pooled fit of a GPU
    efficiency: GpuEfficiency
    median_rel_error: float
    p90_rel_error: float
    n_rows: int


def load_profiles(data_dir: Path) -> list[ProfileGroup]:
    root = Path(data_dir) / PROFILE_FOLDER
    groups: list[ProfileGroup] = []
    for folder, gpu_name in GPU_FOLDERS.items():
        for path in sorted((root / folder).glob("*.csv")):
            model = MODEL_FILES.get(path.stem, path.stem)
            groups.extend(_read_profile(path, gpu_name, model))
    if not groups:
        raise SlitInputError(str(root), "no Vidur profiles found",
                             "point --data-dir at a folder with profiles/vidur-mlp/{a100,h100}/")
    return groups


def _read_profile(path: Path, gpu: str, model: str) -> list[ProfileGroup]:
    frame = pd.read_csv(path)
    needed = [f"time_stats.{op}.median" for op in LAYER_OPERATORS] + list(SHAPE_COLUMNS)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise SlitInputError(str(path), f"missing column {missing[0]!r}",
                             "use the Vidur MLP profile format")
    measured_s = frame[[f"time_stats.{op}.median" for op in LAYER_OPERATORS]].sum(axis=1) / 1e3
    spec = GPUS[gpu]
    groups = []
    for tp in sorted(int(w) for w in frame["num_tensor_parallel_workers"].unique()):
        rows = frame[frame["num_tensor_parallel_workers"] == tp]
        first = rows.iloc[0]
        shape = np.zeros(N_PARAMS)
        shape[P_HIDDEN], shape[P_HEADS] = first["n_embd"], first["n_head"]
        shape[P_KV_HEADS], shape[P_FFN] = first["n_kv_head"], first["n_expanded_embd"]
        shape[P_HEAD_DIM] = first["n_embd"] / first["n_head"]
        shape[P_GATED], shape[P_TP] = float(bool(first["use_gated_mlp"])), float(tp)
        shape[P_PEAK], shape[P_BW] = spec.peak_bf16_flops, spec.hbm_bandwidth_bytes_per_s
        groups.append(ProfileGroup(gpu, model, tp, shape,
                                   rows["num_tokens"].to_numpy(np.float64),
                                   measured_s.loc[rows.index].to_numpy()))
    return groups


def _with_factors(shape: np.ndarray, eff: GpuEfficiency) -> np.ndarray:
    p = shape.copy()
    p[P_EFF_C], p[P_EFF_M], p[P_LAUNCH] = eff.compute, eff.memory, eff.launch_s
    return p


def relative_errors(groups: list[ProfileGroup], eff: GpuEfficiency) -> np.ndarray:
    """|predicted - measured| / measured for every row of the groups."""
    errors = [np.abs(layer_linear_s(_with_factors(g.shape, eff), g.num_tokens) / g.measured_s
                     - 1.0) for g in groups]
    return np.concatenate(errors)


def fit_efficiency(groups: list[ProfileGroup]) -> GpuEfficiency:
    def residuals(x: np.ndarray) -> np.ndarray:
        eff = GpuEfficiency(x[0], x[1], x[2] * 1e-6)
        return np.concatenate([
            np.log(layer_linear_s(_with_factors(g.shape, eff), g.num_tokens) / g.measured_s)
            for g in groups
        ])

    fit = least_squares(residuals, x0=[0.6, 0.7, 3.0], bounds=([0.05, 0.05, 0.0], [1.0, 1.0, 50.0]))
    return GpuEfficiency(round(float(fit.x[0]), 4), round(float(fit.x[1]), 4),
                         round(float(fit.x[2]), 3) * 1e-6)


def _report(groups: list[ProfileGroup], gpu: str, model: str, eff: GpuEfficiency) -> FitReport:
    err = relative_errors(groups, eff)
    return FitReport(gpu, model, eff, float(np.median(err)), float(np.quantile(err, 0.9)),
                     len(err))


def calibrate(data_dir: Path) -> tuple[list[FitReport], float]:
    """Per GPU: the pooled fit (what the package ships) and, per model, that model's own fit with
    the error of the pooled factors on it. Also the median relative error over all rows."""
    groups = load_profiles(data_dir)
    reports: list[FitReport] = []
    all_errors = []
    for gpu in GPU_FOLDERS.values():
        of_gpu = [g for g in groups if g.gpu == gpu]
        if not of_gpu:
            continue
        pooled = fit_efficiency(of_gpu)
        reports.append(_report(of_gpu, gpu, "all", pooled))
        all_errors.append(relative_errors(of_gpu, pooled))
        for model in dict.fromkeys(g.model for g in of_gpu):
            of_model = [g for g in of_gpu if g.model == model]
            own = _report(of_model, gpu, model, fit_efficiency(of_model))
            pooled_on_model = _report(of_model, gpu, model, pooled)
            reports.append(FitReport(gpu, model, own.efficiency,
                                     pooled_on_model.median_rel_error,
                                     pooled_on_model.p90_rel_error, own.n_rows))
    return reports, float(np.median(np.concatenate(all_errors)))
