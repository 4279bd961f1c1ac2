"""Progress of long work, one line or bar per stage, from the first second.

On a terminal each stage is a rich progress bar with its elapsed time. Anywhere else (a pipe, a
log file, CI) the same stages are printed as plain lines, at the start of each stage, every tenth
of the way and at its end, so that a log of a ten-minute run is never empty until the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

Report = Callable[[str, int, int], None]

# Stages in the order a run meets them; a stage that has not reported yet is shown as soon as
# the one before it ends, so the wait before its first report is visible too.
STAGES = {
    "load": "loading the scenario, signals and requests",
    "surrogate": "training the serving surrogate (simulations)",
    "plan": "planning intervals",
    "simulate": "simulating sites, one policy at a time",
    "forecast": "evaluating forecasts per region",
}
PLAIN_STEPS = 10  # a plain line every tenth of a stage


@contextmanager
def stage_progress(console: Console, first: str | None = None,
                   order: tuple[str, ...] = ()) -> Iterator[Report]:
    """A ``report(stage, done, total)`` callback showing each stage while in the block.

    ``first`` is shown at once as running (its end is the first report of another stage);
    ``order`` lists the stages expected after it, each shown when the one before it ends.
    """
    if console.is_terminal:
        with _bars(console, first, order) as report:
            yield report
    else:
        yield _lines(console, first, order)


def _next_stage(stage: str, order: tuple[str, ...]) -> str | None:
    if stage in order and order.index(stage) + 1 < len(order):
        return order[order.index(stage) + 1]
    return None


@contextmanager
def _bars(console: Console, first: str | None, order: tuple[str, ...]) -> Iterator[Report]:
    with Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"),
                  BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        tasks: dict[str, TaskID] = {}
        waiting: list[str] = []  # started, but no count yet

        def start(stage: str) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=None)
                waiting.append(stage)

        def report(stage: str, done: int, total: int) -> None:
            for other in [s for s in waiting if s != stage]:
                progress.update(tasks[other], total=1, completed=1)
                waiting.remove(other)
            start(stage)
            if stage in waiting:
                waiting.remove(stage)
            progress.update(tasks[stage], completed=done, total=total)
            after = _next_stage(stage, order)
            if done >= total and after is not None:
                start(after)

        if first is not None:
            start(first)
        yield report


def _lines(console: Console, first: str | None, order: tuple[str, ...]) -> Report:
    began = time.perf_counter()
    shown: dict[str, int] = {}  # stage -> last tenth printed
    pending: list[str] = []

    def say(text: str) -> None:
        console.print(f"[{time.perf_counter() - began:6.0f} s] {text}", highlight=False,
                      markup=False, soft_wrap=True)

    def start(stage: str) -> None:
        if stage not in shown:
            shown[stage] = -1
            pending.append(stage)
            say(f"{STAGES.get(stage, stage)} ...")

    def report(stage: str, done: int, total: int) -> None:
        for other in [s for s in pending if s != stage]:
            pending.remove(other)
            if shown[other] < 0:
                say(f"{STAGES.get(other, other)}: done")
        start(stage)
        if stage in pending:
            pending.remove(stage)
        step = PLAIN_STEPS * done // total if total > 0 else PLAIN_STEPS
        if step > shown[stage]:
            shown[stage] = step
            say(f"{STAGES.get(stage, stage)}: {done}/{total}")
        after = _next_stage(stage, order)
        if done >= total and after is not None:
            start(after)

    if first is not None:
        start(first)
    return report
