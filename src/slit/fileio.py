"""Writing output files whole or not at all, readable as any file the user's umask allows.

Every file the product writes for a user (plans, CSV tables, scenario files, results) and every
cache file goes through ``write_atomically``: a temporary file beside the target, then a rename,
so a reader (a load balancer watching a plan, a second run reading the cache) never sees a
half-written file, and a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from slit.errors import SlitInputError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``.

    ``mkstemp`` creates files with mode 0600; the finished file gets the mode a plain ``open``
    would have given it (0666 less the umask), so other users can read a plan as usual.
    """
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.resolve().parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """``text`` as UTF-8 into ``path``, whole or not at all."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, found by creating and removing one:
    permission bits do not tell (root passes ``os.access`` on /proc, where nothing can be
    created, and a read-only mount or a quota says no only when asked)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".slit-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work starts, an output file that cannot be written: a folder, a
    missing or read-only parent folder. ``option`` names the argument in the error."""
    path = Path(path)
    if path.is_dir():
        raise SlitInputError(f"{option} {path}", "is a folder", "give a file name")
    folder = path.resolve().parent
    if not folder.is_dir():
        raise SlitInputError(f"{option} {path}", f"folder {folder} does not exist",
                             "create it first or give another path")
    if not can_create_in(folder):
        raise SlitInputError(f"{option} {path}", f"folder {folder} is not writable",
                             "give a path in a folder you can write to")
    if path.exists() and not os.access(path, os.W_OK):
        raise SlitInputError(f"{option} {path}", "exists and is not writable",
                             "give another path or change its permissions")
