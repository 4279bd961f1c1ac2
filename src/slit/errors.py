"""The one error type users see: a bad input, reported as a single line and exit code 2."""

from __future__ import annotations


class SlitInputError(Exception):
    """Bad user input: a missing/malformed file, column, field or argument.

    The message must fit on one line, name the file or field at fault, and say how to fix it.
    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """

    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(f"{where}: {problem}; {fix}")
