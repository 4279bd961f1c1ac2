"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slit.errors import SlitInputError

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SLIT_DATA_DIR",
        help="Folder with real data (regions/, traces/, profiles/ as in shared/data). "
        "Without it, the embedded default is used.",
        show_default=False,
    ),
]

# For the commands that read raw traces or profiles, which the embedded default does not carry.
RequiredDataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SLIT_DATA_DIR",
        help="Folder with real data (traces/ and profiles/ as in shared/data); required, as "
        "the embedded default does not carry raw traces or layer timings.",
        show_default=False,
    ),
]

RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Join this Ray cluster (e.g. ray://head:10001 or auto); default: start Ray on this "
        "machine.",
        show_default=False,
    ),
]


def check_ray_options(address: str | None, workers: int | None) -> None:
    """``--workers`` and ``--address`` together, or a worker count below 1, are refused."""
    if workers is not None and workers < 1:
        raise SlitInputError("--workers", f"{workers} is not positive", "give 1 or more")
    if address is not None and workers is not None:
        raise SlitInputError("--workers", "is for the local runtime",
                             "drop --workers when joining a cluster with --address")
