"""``slit sweep``: a grid of scenarios, each cell a Ray task, results to Parquet and a report."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from slit.cli.options import DataDirOption, RayAddressOption, check_ray_options
from slit.parallel import ray_runtime

REPORT_FILE = "report.html"
INTERRUPTED_EXIT_CODE = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def sweep(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep YAML (see "
                                              "docs/sweeps.md and sweeps/).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Results folder (default: sweep-results/NAME). An earlier folder of the "
        "same sweep is resumed: finished cells are skipped.", show_default=False)] = None,
    address: RayAddressOption = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="CPUs of the local Ray runtime (default: the CPUs this process may use).",
        show_default=False)] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run a sweep: every cell of the grid on Ray; write results.parquet and report.html."""
    from slit.sweep.report import write_sweep_report
    from slit.sweep.runner import run_sweep
    from slit.sweep.spec import load_sweep

    check_ray_options(address, workers)
    spec = load_sweep(spec_file, data_dir)
    folder = out if out is not None else Path("sweep-results") / spec.spec.name
    console = Console()
    with ray_runtime(address, workers), sweep_progress(console) as report, \
            terminate_as_interrupt():
        outcome = run_sweep(spec, folder, report)
    write_sweep_report(folder / REPORT_FILE, spec.spec.name, outcome.table)
    if outcome.other_code:
        console.print(f"warning: {outcome.other_code} of the {outcome.skipped} cells already "
                      "done were run by other slit code (their rows' `code` differs or is "
                      "missing); to run every cell on this code, give a new --out",
                      highlight=False, soft_wrap=True)
    ran = outcome.done + outcome.failed
    left = outcome.total - outcome.skipped - ran
    stopped = f"interrupted with {left} not run; " if outcome.interrupted else ""
    console.print(f"{outcome.total} cells: {outcome.skipped} already done, {outcome.done} run, "
                  f"{outcome.failed} failed; {stopped}wrote {folder / 'results.parquet'} and "
                  f"{folder / REPORT_FILE}", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print("the same command resumes the sweep (finished cells are skipped)",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch scheduler's stop, ``kill``) stops the sweep as Ctrl-C does, so the cells
    done so far still get their table and report."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sweep_progress(console: Console) -> Iterator[Callable[[int, int, int, int], None]]:
    """A ``report(done, running, failed, total)`` callback: a bar on a terminal, plain lines
    (on each change of the counts) anywhere else."""
    if console.is_terminal:
        with Progress(TextColumn("cells"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} done, {task.fields[running]} "
                                 "running, {task.fields[failed]} failed"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("cells", total=None, running=0, failed=0)

            def bar(done: int, running: int, failed: int, total: int) -> None:
                progress.update(task, completed=done + failed, total=total, running=running,
                                failed=failed)

            yield bar
        return
    began = time.perf_counter()
    last: list[tuple[int, int, int, int]] = []

    def line(done: int, running: int, failed: int, total: int) -> None:
        now = (done, running, failed, total)
        if last and last[-1] == now:
            return
        last.append(now)
        console.print(f"[{time.perf_counter() - began:6.0f} s] cells: {done}/{total} done, "
                      f"{running} running, {failed} failed", highlight=False, markup=False)

    yield line
