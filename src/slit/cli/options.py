"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
