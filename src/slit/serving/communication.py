"""Tensor-parallel communication time, fitted on measured NCCL all-reduce times.

``DATA_DIR/profiles/vidur-network/{a100_dgx,h100_dgx}/all_reduce.csv`` (Vidur, Microsoft, MIT)
holds the median time of an all-reduce of ``size`` bytes over ``num_workers`` GPUs. Tensor
parallelism inside one server uses the rows with every worker on one node
(``devices_per_node == num_workers``). The time is not latency + size / bandwidth: NCCL
switches protocol and algorithm with the message size (e.g. a step from 20 to 60 us near 100 KiB
on 4 x A100), so a two-parameter fit misses by 2-10 % in the median and 10-30 % at p90. The model
is a table instead: the median measured time in windows of a quarter octave of message size,
interpolated linearly in log size and log time, flat below the smallest size (latency-bound) and
proportional to the size above the largest (bandwidth-bound). The tables shipped in
``slit.serving.allreduce_table`` are this fit; ``slit calibrate`` re-fits them and reports the
error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slit.errors import SlitInputError

NETWORK_FOLDER = Path("profiles") / "vidur-network"
DEVICE_FOLDERS = {"a100_dgx": "A100-SXM4-80GB", "h100_dgx": "H100-SXM5-80GB"}
# Table grid: log2 of the message size in bytes, 2 KiB .. 64 MiB in quarter octaves.
LOG2_MIN, LOG2_STEP, N_POINTS = 11.0, 0.25, 61
GRID_LOG2 = LOG2_MIN + LOG2_STEP * np.arange(N_POINTS)
# Messages a step produces: one token of the smallest hidden size in the catalog (4096, BF16) up
# to max_batch_tokens (8192) of the largest (8192): 8 KiB .. 128 MiB; the data stop at 64 MiB.
STEP_MESSAGE_MIN_BYTES = 2 * 4096
TIME_COLUMN = "time_stats.all_reduce.median"


@dataclass(frozen=True, slots=True)
class AllReduceProfile:
    gpu: str
    tp: int
    size_bytes: np.ndarray
    measured_s: np.ndarray


@dataclass(frozen=True, slots=True)
class AllReduceReport:
    gpu: str
    tp: int
    median_rel_error: float  # shipped table vs every measured row in the step's size range
    p90_rel_error: float
    held_out_median_rel_error: float  # table fitted on even rows, scored on odd rows
    n_rows: int


def load_allreduce(data_dir: Path) -> list[AllReduceProfile]:
    root = Path(data_dir) / NETWORK_FOLDER
    profiles = []
    for folder, gpu in DEVICE_FOLDERS.items():
        path = root / folder / "all_reduce.csv"
        if not path.exists():
            continue
        frame = pd.read_csv(path)
        needed = ("num_workers", "devices_per_node", "size", TIME_COLUMN)
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise SlitInputError(str(path), f"missing column {missing[0]!r}",
                                 "use the Vidur network profile format")
        intra = frame[frame["num_workers"] == frame["devices_per_node"]]
        for tp in sorted(int(w) for w in intra["num_workers"].unique()):
            rows = intra[intra["num_workers"] == tp].sort_values("size")
            profiles.append(AllReduceProfile(gpu, tp, rows["size"].to_numpy(np.float64),
                                             rows[TIME_COLUMN].to_numpy(np.float64) / 1e3))
    if not profiles:
        raise SlitInputError(str(root), "no NCCL all-reduce profiles found",
                             "point --data-dir at a folder with profiles/vidur-network/")
    return profiles


def fit_table(size_bytes: np.ndarray, measured_s: np.ndarray) -> np.ndarray:
    """Median time (s) in a quarter-octave window around each grid size; empty windows are
    interpolated from their neighbours (log-log)."""
    log2 = np.log2(size_bytes)
    table = np.full(N_POINTS, np.nan)
    for i, centre in enumerate(GRID_LOG2):
        inside = np.abs(log2 - centre) <= LOG2_STEP / 2.0
        if inside.any():
            table[i] = np.median(measured_s[inside])
    known = ~np.isnan(table)
    return np.exp(np.interp(GRID_LOG2, GRID_LOG2[known], np.log(table[known])))


def table_time_s(table_s: np.ndarray, size_bytes: np.ndarray | float) -> np.ndarray:
    """The table's all-reduce time for messages of ``size_bytes`` (vectorised twin of the
    compiled ``slit.serving.iteration.allreduce_s``)."""
    size = np.asarray(size_bytes, np.float64)
    x = np.log2(np.maximum(size, 1.0))
    inside = np.exp(np.interp(x, GRID_LOG2, np.log(table_s)))
    above = table_s[-1] * size / 2.0 ** GRID_LOG2[-1]
    return np.where(x > GRID_LOG2[-1], above, inside)


def _errors(table_s: np.ndarray, profile: AllReduceProfile, rows: np.ndarray) -> np.ndarray:
    predicted = table_time_s(table_s, profile.size_bytes[rows])
    return np.abs(predicted / profile.measured_s[rows] - 1.0)


def calibrate_allreduce(data_dir: Path, shipped: dict[tuple[str, int], np.ndarray]
                        ) -> tuple[list[AllReduceReport], dict[tuple[str, int], np.ndarray], float]:
    """Per (GPU, tp): the error of the shipped table on the measured rows in a step's message
    range, and of a table fitted on half the rows on the other half. Also the re-fitted tables
    and the median error of the shipped tables over all those rows."""
    reports, fitted, every = [], {}, []
    for profile in load_allreduce(data_dir):
        key = (profile.gpu, profile.tp)
        fitted[key] = fit_table(profile.size_bytes, profile.measured_s)
        in_range = np.flatnonzero(profile.size_bytes >= STEP_MESSAGE_MIN_BYTES)
        even, odd = in_range[::2], in_range[1::2]
        half = fit_table(profile.size_bytes[even], profile.measured_s[even])
        table = shipped.get(key, fitted[key])
        err = _errors(table, profile, in_range)
        every.append(err)
        reports.append(AllReduceReport(profile.gpu, profile.tp, float(np.median(err)),
                                       float(np.quantile(err, 0.9)),
                                       float(np.median(_errors(half, profile, odd))), len(err)))
    return reports, fitted, float(np.median(np.concatenate(every)))


def shipped_tables() -> dict[tuple[str, int], np.ndarray]:
    """The tables the package ships, in seconds."""
    from slit.serving.allreduce_table import ALLREDUCE_US

    return {key: np.asarray(values) * 1e-6 for key, values in ALLREDUCE_US.items()}


def table_module_source(tables: dict[tuple[str, int], np.ndarray]) -> str:
    """Python source of ``slit.serving.allreduce_table`` for the given tables."""
    lines = [
        '"""NCCL all-reduce time (us) per (GPU, tensor-parallel degree) on the grid of',
        "``slit.serving.communication`` (message sizes 2 ** (11 + 0.25 i) bytes).",
        "",
        "Generated from profiles/vidur-network by ``slit.serving.communication.fit_table``",
        '(Vidur, Microsoft, MIT licence); tests/test_serving.py re-fits and compares."""',
        "",
        "ALLREDUCE_US: dict[tuple[str, int], tuple[float, ...]] = {",
    ]
    for (gpu, tp), table in sorted(tables.items()):
        lines.append(f'    ("{gpu}", {tp}): (')
        values = [f"{v * 1e6:.2f}," for v in table]
        lines.extend("        " + " ".join(values[i:i + 10]) for i in range(0, len(values), 10))
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"
