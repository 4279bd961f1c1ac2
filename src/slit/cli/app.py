"""The ``slit`` command: one typer app; each command group lives in its own module and is
registered here, so no command module imports this one back."""

from __future__ import annotations

import sys

import typer

from slit.cli import (
    data_commands,
    plan_commands,
    run_commands,
    serving_commands,
    sweep_commands,
    workload_commands,
)
from slit.errors import SlitInputError

app = typer.Typer(
    name="slit",
    help="SLIT: co-optimise TTFT, carbon, water and energy cost of LLM inference across regions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """SLIT: co-optimise TTFT, carbon, water and energy cost of LLM inference across regions."""


# In the order `slit --help` lists them.
for command in (data_commands.regions, data_commands.signals, serving_commands.calibrate,
                serving_commands.simulate_site, workload_commands.latency,
                workload_commands.forecast_eval, run_commands.run, run_commands.init,
                plan_commands.plan, sweep_commands.sweep):
    app.command(command.__name__.replace("_", "-"))(command)


def main() -> None:
    """Entry point: run the app, turning bad input into one line on stderr and exit code 2."""
    try:
        # Without standalone mode click returns a command's `typer.Exit` code instead of exiting.
        code = app(standalone_mode=False)
    except SlitInputError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:
        # Usage errors (unknown option, bad value) arrive here with standalone_mode=False; they
        # come from typer's bundled click, so they are recognised by their interface.
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            sys.exit(2)
        raise
    if isinstance(code, int) and code != 0:
        sys.exit(code)
