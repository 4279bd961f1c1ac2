"""Speed-up of a sweep on Ray: the same 4-cell sweep with 2 Ray workers and with 1.

Cells are the test scenario's three sites for ``--hours`` hours at ``--rate`` req/s (real data,
``--data-dir``), four summer days, SLIT and latency_first: each cell is tens of seconds of
planning and simulation, so the work dominates Ray's task overhead (milliseconds) and the one-off
start of each worker (imports and numba's cached kernels, a few seconds). The surrogate is
trained (or loaded) once before timing, as every later sweep finds it in the cache. Each
configuration gets its own fresh Ray runtime and results folder. Ends with
``sweep_1_worker_s=``, ``sweep_2_workers_s=`` and ``sweep_speedup=``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from scenario_helpers import TINY_YAML  # noqa: E402  (the tests' tiny scenario)

from slit.sweep.runner import run_sweep, start_ray  # noqa: E402
from slit.sweep.spec import load_sweep  # noqa: E402

SWEEP = """\
name: bench
base: tiny.yaml
data_dir: {data_dir}
hours: {hours}
start_hour_utc: 8
days: [2023-07-05, 2023-07-12, 2023-07-19, 2023-07-26]
policies: [slit, latency_first]
variants: [{{name: default, overrides: {{workload: {{global_rate_rps: {rate}}}}}}}]
"""


def timed_sweep(folder: Path, workers: int) -> float:
    import ray

    sweep = load_sweep(folder / "sweep.yaml")
    start_ray(None, workers)
    try:
        started = time.perf_counter()
        outcome = run_sweep(sweep, folder / f"out-{workers}")
        elapsed = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert outcome.failed == 0 and outcome.done == 4, outcome
    print(f"{workers} worker(s): 4 cells in {elapsed:.1f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=24.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = Path(tmp)
        (folder / "tiny.yaml").write_text(TINY_YAML, encoding="utf-8")
        (folder / "sweep.yaml").write_text(SWEEP.format(
            data_dir=args.data_dir.resolve(), hours=args.hours, rate=args.rate),
            encoding="utf-8")
        sweep = load_sweep(folder / "sweep.yaml")
        # Warm the surrogate cache and numba's kernel cache outside the timed runs.
        from slit.experiment.run import prepare

        prepare(sweep.scenario(sweep.cells()[0]))
        one = timed_sweep(folder, 1)
        two = timed_sweep(folder, 2)
    print(f"sweep_1_worker_s={one:.1f}")
    print(f"sweep_2_workers_s={two:.1f}")
    print(f"sweep_speedup={one / two:.2f}")


if __name__ == "__main__":
    main()
