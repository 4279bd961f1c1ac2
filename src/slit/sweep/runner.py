"""Running a sweep on Ray: each cell a task, results streamed to Parquet, resumable.

Results live in ``OUT/cells/``: one Parquet file per finished cell (one row per policy, or one
row with its error when the cell failed), written atomically when the cell ends, so an
interrupted sweep loses only the cells in flight. Together they are one table (read the folder
with ``pandas.read_parquet``); ``OUT/results.parquet`` is that table gathered at the end, or when
the sweep is interrupted (Ctrl-C: the cells in flight are cancelled). A resume skips cells whose
file says they are done and retries failed ones. ``OUT/sweep.json`` holds the sweep's
fingerprint, so a folder is never resumed with a different sweep. Every row carries ``code``, a
hash of the slit package that ran it, so a folder resumed after the code changed shows which
cells came from which code (the command warns).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from slit.errors import SlitInputError
from slit.experiment.run import run_experiment
from slit.fileio import write_atomically, write_text_atomically
from slit.parallel import start_ray as start_ray  # re-exported: benchmarks use it
from slit.report.table import result_scores
from slit.sweep.spec import Cell, Sweep

CELLS_DIR = "cells"
RESULTS_FILE = "results.parquet"
MANIFEST = "sweep.json"
Progress = Callable[[int, int, int, int], None]  # (done, running, failed, total)


@dataclass(frozen=True)
class SweepOutcome:
    total: int
    skipped: int  # done before this run (resume)
    done: int  # done in this run
    failed: int
    table: pd.DataFrame
    interrupted: bool = False  # stopped by KeyboardInterrupt before every cell ran
    other_code: int = 0  # finished cells skipped on resume that other code (or unrecorded) ran


@cache
def code_fingerprint() -> str:
    """Hash of the slit package's files (code and embedded data, not caches): what a row's
    figures depend on besides the sweep, its data and the installed libraries."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def run_cell(sweep: Sweep, cell: Cell) -> list[dict[str, Any]]:
    """One cell's rows: its scenario run with every policy of the sweep; a failure becomes one
    row carrying the error (the sweep goes on)."""
    started = time.perf_counter()
    base = _cell_columns(cell)
    try:
        scenario = sweep.scenario(cell)
        base["slo_ttft_s"] = scenario.slo_ttft_s
        result = run_experiment(scenario, tuple(sweep.spec.policies))
    except Exception as err:  # any failure of one cell is recorded, not raised
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return [{**base, "policy": None, "status": "failed", "error": last,
                 "wall_s": time.perf_counter() - started}]
    wall_s = time.perf_counter() - started
    scores = result_scores(result)  # one normalisation for every policy of the cell
    return [{**base, "policy": policy, "status": "done", "error": None, "wall_s": wall_s,
             **metrics.as_dict(), "preference_score": scores.get(policy, float("nan"))}
            for policy, metrics in result.metrics.items()]


def _cell_columns(cell: Cell) -> dict[str, Any]:
    """The columns that name a cell, and the code that ran it, on each of its rows."""
    return {"cell_id": cell.cell_id, "day": pd.Timestamp(cell.day), "month": cell.day.month,
            "variant": cell.variant, "seed": cell.seed, "code": code_fingerprint()}


def _ray_cell(sweep: Sweep, cell: Cell) -> list[dict[str, Any]]:
    return run_cell(sweep, cell)


def run_sweep(sweep: Sweep, out: Path, progress: Progress | None = None,
              max_in_flight: int | None = None) -> SweepOutcome:
    """Run every cell not already done in ``out`` as a Ray task; Ray must be started."""
    import ray

    report = progress or (lambda done, running, failed, total: None)
    cells_dir = _prepare_out(sweep, out)
    cells = sweep.cells()
    finished = _finished_ids(cells_dir)
    ids = {c.cell_id for c in cells}
    other_code = sum(1 for cell_id, code in finished.items()
                     if cell_id in ids and code != code_fingerprint())
    todo = [c for c in cells if c.cell_id not in finished]
    skipped = len(cells) - len(todo)
    # Only as many tasks as the cluster has CPUs are submitted, so "running" is true and a
    # large sweep does not queue thousands of pickled sweeps at once.
    slots = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    sweep_ref = ray.put(sweep)
    pending: dict[Any, Cell] = {}
    queue = list(todo)
    done = failed = 0
    interrupted = False
    try:
        report(skipped, 0, 0, len(cells))
        while queue or pending:
            while queue and len(pending) < slots:
                cell = queue.pop(0)
                pending[remote.remote(sweep_ref, cell)] = cell
            report(skipped + done, len(pending), failed, len(cells))
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    rows = ray.get(ref)
                except Exception as err:  # the worker died (memory, signal): record, go on
                    rows = [{**_cell_columns(cell), "policy": None, "status": "failed",
                             "error": f"{type(err).__name__}: "
                                      f"{str(err).splitlines()[0][:300]}"}]
                _write_cell(cells_dir, cell, rows)
                if rows[0]["status"] == "failed":
                    failed += 1
                else:
                    done += 1
            report(skipped + done, len(pending), failed, len(cells))
    except KeyboardInterrupt:
        # The cells already written stay (a resume skips them); those in flight are lost, so
        # their tasks are stopped rather than left running on a cluster after the driver.
        interrupted = True
        for ref in pending:
            ray.cancel(ref, force=True)
    table = read_table(out)
    write_atomically(out / RESULTS_FILE, lambda tmp: table.to_parquet(tmp, index=False))
    return SweepOutcome(len(cells), skipped, done, failed, table, interrupted, other_code)


def read_table(out: Path) -> pd.DataFrame:
    """The sweep's table so far: every cell file in ``out/cells``."""
    files = sorted((Path(out) / CELLS_DIR).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _write_cell(cells_dir: Path, cell: Cell, rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    frame["error"] = frame["error"].astype("string")
    frame["policy"] = frame["policy"].astype("string")
    write_atomically(cells_dir / f"{cell.cell_id}.parquet",
                     lambda tmp: frame.to_parquet(tmp, index=False))


def _finished_ids(cells_dir: Path) -> dict[str, str | None]:
    """The cells whose file says they are done, each with the code that ran it (None: a file
    written before rows carried it)."""
    done: dict[str, str | None] = {}
    for f in cells_dir.glob("*.parquet"):
        try:
            frame = pd.read_parquet(f)
        except Exception:  # a torn or foreign file: the cell runs again
            continue
        if len(frame) and "status" in frame and (frame["status"] == "done").all():
            done[f.stem] = str(frame["code"].iloc[0]) if "code" in frame else None
    return done


def _prepare_out(sweep: Sweep, out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SlitInputError(f"--out {out}", "is a file, not a folder", "give a folder")
    manifest = out / MANIFEST
    fingerprint = sweep.fingerprint()
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            previous = None
        if previous != fingerprint:
            raise SlitInputError(f"--out {out}", "holds the results of a different sweep",
                                 "give a new folder, or the sweep file that made this one")
    elif out.is_dir() and any(out.iterdir()):
        raise SlitInputError(f"--out {out}", "is not empty and holds no sweep",
                             "give a new or empty folder")
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    write_text_atomically(manifest, json.dumps(
        {"name": sweep.spec.name, "fingerprint": fingerprint,
         "cells": len(sweep.cells())}, indent=1))
    return out / CELLS_DIR
