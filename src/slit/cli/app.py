"""The ``slit`` command: one typer app, each command group in its own module."""

from __future__ import annotations

import sys

import typer

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


def _register_commands() -> None:
    # Imported here so that each module can decorate commands on `app` without import cycles.
    from slit.cli import (  # noqa: F401
        data_commands,
        plan_commands,
        run_commands,
        serving_commands,
        workload_commands,
    )


def main() -> None:
    """Entry point: run the app, turning bad input into one line on stderr and exit code 2."""
    _register_commands()
    try:
        app(standalone_mode=False)
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
