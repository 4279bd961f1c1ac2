"""Azure LLM inference traces (Patel et al., Splitwise, ISCA 2024; CC-BY 4.0).

``DATA_DIR/traces/azure-llm-2023/{code,conv}.csv`` with columns ``TIMESTAMP`` (UTC, sub-second),
``ContextTokens`` and ``GeneratedTokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slit.errors import SlitInputError
from slit.workload.requests import RequestBatch

TRACE_FOLDER = Path("traces") / "azure-llm-2023"
TRACE_KINDS = ("code", "conv")
TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True, slots=True)
class Trace:
    """One trace file: absolute UTC stamps and token counts, sorted by time."""

    kind: str
    time_utc: pd.DatetimeIndex
    prompt_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32

    def as_requests(self, origin: int = 0) -> RequestBatch:
        """Replay with the trace's own timestamps, seconds counted from its first request."""
        arrival = (self.time_utc.asi8 - self.time_utc.asi8[0]) / 1e9
        return RequestBatch(
            arrival.astype(np.float64), self.prompt_tokens.copy(), self.output_tokens.copy(),
            np.full(len(arrival), origin, np.int16),
        )


def trace_path(data_dir: Path, kind: str) -> Path:
    if kind not in TRACE_KINDS:
        raise SlitInputError("trace", f"unknown trace kind {kind!r}", "use 'code' or 'conv'")
    return Path(data_dir) / TRACE_FOLDER / f"{kind}.csv"


def load_trace(data_dir: Path, kind: str) -> Trace:
    """Read and validate one Azure trace file."""
    return read_trace_file(trace_path(data_dir, kind), kind)


def read_trace_file(path: Path, kind: str = "custom") -> Trace:
    """Read any CSV in the Azure trace format."""
    path = Path(path)
    if not path.is_file():
        raise SlitInputError(str(path), "trace file not found",
                             "point --data-dir at a folder with traces/azure-llm-2023/")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SlitInputError(str(path), f"is not a readable CSV ({first})",
                             "fix the file or export it again") from None
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if missing:
        raise SlitInputError(str(path), f"missing column {missing[0]!r}",
                             f"the trace needs columns {', '.join(TRACE_COLUMNS)}")
    if frame.empty:
        raise SlitInputError(str(path), "has no requests", "use a trace with at least one row")
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(frame["TIMESTAMP"], utc=True, format="ISO8601"))
    except (ValueError, TypeError):
        raise SlitInputError(str(path), "column 'TIMESTAMP' has an unreadable stamp",
                             "use stamps like 2023-11-16 18:15:46.6805900") from None
    tokens = {}
    for col in ("ContextTokens", "GeneratedTokens"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 2
            raise SlitInputError(str(path), f"column {col!r} is not a number at line {row}",
                                 "give whole token counts")
        if (values < 1).any() or (values != np.round(values)).any():
            row = int(np.flatnonzero(((values < 1) | (values != np.round(values))).to_numpy())[0])
            raise SlitInputError(
                str(path), f"column {col!r} = {values.iloc[row]!r} at line {row + 2}",
                "token counts must be whole numbers >= 1",
            )
        tokens[col] = values.to_numpy().astype(np.int32)
    order = np.argsort(stamps.asi8, kind="stable")
    return Trace(kind, stamps[order], tokens["ContextTokens"][order],
                 tokens["GeneratedTokens"][order])
