"""Tiny scenarios and an in-process ``slit`` runner for the CLI, report and plan tests.

Every tiny scenario serves Llama-3.1-70B on H100 TP4 replicas with the default trace mix and
seed, so all of them share one cached serving surrogate (a few seconds to train once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slit.cli.app import main

TINY_YAML = """\
name: tiny
seed: 0
model: Llama-3.1-70B
sites:
  - {region: US-CAL-CISO, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3}
  - {region: DE-LU, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3, cooling: dry}
  - {region: SG, gpu: H100-SXM5-80GB, tp: 4, installed_replicas: 3}
workload:
  origins: [US-CAL-CISO, DE-LU, SG]
  global_rate_rps: 8
period: {start_utc: "2023-07-12T12:00", hours: 1}
interval_s: 900
slo: {ttft_s: 1.5, percentile: 99}
pins: {DE-LU: [DE-LU]}
search: {population: 16, generations: 5}
"""


def write_tiny(folder: Path, text: str = TINY_YAML, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run_slit(args: list[str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``slit ARGS`` in this process as the console script would: (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["slit", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
