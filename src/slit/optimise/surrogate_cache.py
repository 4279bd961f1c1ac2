"""The disk cache of simulated training samples, keyed by what produced them.

The key hashes the source code that shapes a sample (the simulation, the serving model, request
and token generation, the training design), the design itself and the token data (not its
path). Any edit to that code or data gives a new key, so stale samples are never reused; there
is no version number to remember to bump.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import pandas as pd

import slit
from slit.fileio import write_atomically
from slit.optimise.surrogate_design import SurrogateSpec
from slit.optimise.token_mix import TokenMix

CACHE_ENV = "SLIT_CACHE_DIR"
# Source that determines the samples, relative to the slit package: whole packages and modules.
CODE_PACKAGES = ("simulate", "serving")
CODE_MODULES = ("workload/requests.py", "workload/tokens.py", "optimise/token_mix.py",
                "optimise/surrogate_design.py", "optimise/surrogate_model.py")


def cache_dir() -> Path:
    """Where samples are kept: ``$SLIT_CACHE_DIR`` or ``~/.cache/slit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "slit"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the source files that shape a training sample, in a fixed order."""
    root = Path(slit.__file__).parent
    files = sorted(p for package in CODE_PACKAGES for p in (root / package).rglob("*.py"))
    files += [root / module for module in CODE_MODULES]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def samples_key(spec: SurrogateSpec) -> str:
    """The cache key of ``spec``'s samples: code, design and token data."""
    design = asdict(spec)
    design.pop("token_source")  # the data's hash stands in for where it lives
    design["replicas"] = [asdict(r) for r in spec.replicas]
    doc = {
        "code": code_fingerprint(),
        "design": design,
        "tokens": TokenMix(0.0, spec.token_source).data_key(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def samples_path(spec: SurrogateSpec) -> Path:
    return cache_dir() / f"surrogate-{samples_key(spec)}" / "samples.parquet"


def load_samples(spec: SurrogateSpec) -> pd.DataFrame | None:
    """The cached samples of ``spec``, or None."""
    path = samples_path(spec)
    return pd.read_parquet(path) if path.is_file() else None


def store_samples(spec: SurrogateSpec, samples: pd.DataFrame) -> Path:
    """Write ``spec``'s samples whole or not at all."""
    path = samples_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: samples.to_parquet(tmp))
    return path
