"""Build the embedded default that SLIT ships, from the real data in a data directory.

    python scripts/build_embedded.py [--data-dir ../shared/data] [--out src/slit/embedded]

Writes signal_profiles.parquet and signal_dynamics.json (see slit.data.embedded for what they
hold and how they are used), the workload token profile (slit.workload.tokens), and
PROVENANCE.md. Only derived statistics are written; no row of the source data is copied.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.embedded import DYNAMICS_FILE, PROFILES_FILE, PROVENANCE_FILE, solar_offset_hours
from slit.data.regions import REGIONS
from slit.data.signals import SIGNAL_COLUMNS, available_years, load_region_signals

REPO = Path(__file__).resolve().parents[1]


def region_statistics(hourly: pd.DataFrame, lon_deg: float) -> tuple[pd.DataFrame, dict]:
    """Profiles (month x UTC hour rows) and day-to-day dynamics of one region's hourly table."""
    month = hourly.index.month
    hour = hourly.index.hour
    cells = hourly.groupby([month, hour])
    mean = cells.mean()
    residual = hourly - mean.loc[list(zip(month, hour, strict=True))].to_numpy()

    offset_h = solar_offset_hours(lon_deg)
    solar_day = (hourly.index + pd.Timedelta(hours=offset_h)).normalize()
    day_level = residual.groupby(solar_day).mean()
    within = residual - day_level.loc[solar_day].to_numpy()

    within_std = within.groupby([month, hour]).std(ddof=0)
    day_month = day_level.index.month
    day_std = day_level.groupby(day_month).std(ddof=0)

    profile = pd.DataFrame({"month": mean.index.get_level_values(0),
                            "hour_utc": mean.index.get_level_values(1)})
    for column in SIGNAL_COLUMNS:
        profile[f"mean_{column}"] = mean[column].to_numpy()
        profile[f"std_{column}"] = cells[column].std(ddof=0).to_numpy()
        profile[f"within_std_{column}"] = within_std[column].to_numpy()

    dynamics = {
        "solar_offset_h": offset_h,
        "day_std": {c: [float(v) for v in day_std[c]] for c in SIGNAL_COLUMNS},
        "phi_day": {c: _lag1(day_level[c] / day_std[c].loc[day_month].to_numpy())
                    for c in SIGNAL_COLUMNS},
        "phi_hour": {c: _lag1(within[c]) for c in SIGNAL_COLUMNS},
        "corr_day": _corr(day_level / day_std.loc[day_month].to_numpy()),
        "corr_hour": _corr(within / within_std.loc[list(zip(month, hour, strict=True))]
                           .to_numpy()),
    }
    return profile, dynamics


def _lag1(series: pd.Series) -> float:
    x = series.to_numpy(dtype=float)
    x = x - x.mean()
    denominator = float(np.dot(x, x))
    return round(float(np.dot(x[1:], x[:-1]) / denominator), 4) if denominator > 0 else 0.0


def _corr(frame: pd.DataFrame) -> list[list[float]]:
    # A signal with no variation gives NaN correlations: it is then uncorrelated with the rest.
    corr = np.nan_to_num(np.corrcoef(frame.replace([np.inf, -np.inf], 0).fillna(0).to_numpy().T))
    np.fill_diagonal(corr, 1.0)
    return [[round(float(v), 4) for v in row] for row in corr]


def build_signals(data_dir: Path, out_dir: Path) -> tuple[list[int], dict[str, int]]:
    profiles, dynamics, years = [], {}, set()
    filled: dict[str, int] = {}
    for region in REGIONS.values():
        found = available_years(data_dir, region.id)
        if not found:
            sys.exit(f"error: {data_dir}/regions/{region.id}: no data; the embedded default "
                     "needs every region")
        signals = load_region_signals(data_dir, region.id, found[-1])
        years.add(found[-1])
        filled[region.id] = max(signals.filled_hours.values())
        profile, dyn = region_statistics(signals.hourly, region.lon_deg)
        profile.insert(0, "region", region.id)
        profiles.append(profile)
        dynamics[region.id] = dyn
    table = pd.concat(profiles, ignore_index=True)
    value_columns = [c for c in table.columns if c not in ("region", "month", "hour_utc")]
    table[value_columns] = table[value_columns].astype("float32")
    table[["month", "hour_utc"]] = table[["month", "hour_utc"]].astype("int8")
    table.to_parquet(out_dir / PROFILES_FILE, index=False, compression="zstd")
    meta = {"source_years": sorted(years),
            "built_utc": datetime.now(UTC).strftime("%Y-%m-%d"),
            "signals": list(SIGNAL_COLUMNS)}
    (out_dir / DYNAMICS_FILE).write_text(
        json.dumps({"meta": meta, "regions": dynamics}, indent=1) + "\n", encoding="utf-8")
    return sorted(years), filled


def build_tokens(data_dir: Path, out_dir: Path) -> str:
    try:
        from slit.workload.tokens import build_token_profile
    except ImportError:
        message = ("slit.workload.tokens.build_token_profile is not available yet: the token "
                   "profile was NOT built; rerun this script once it exists")
        print(f"warning: {message}", file=sys.stderr)
        return message
    path = build_token_profile(data_dir, out_dir)
    return f"`{Path(path).name}` written by `slit.workload.tokens.build_token_profile`"


PROVENANCE = """# Provenance of the embedded default

Built {built} by `scripts/build_embedded.py` from the real data folder (the layout of
`shared/data`) with:

    python scripts/build_embedded.py --data-dir <data> --out src/slit/embedded

Nothing here is a copy of the source rows: every file holds statistics derived from them.

## Files

- `{profiles}`: for each of the {n_regions} regions, month (1-12) and UTC hour of day (0-23),
  and each hourly signal ({signals}): the mean, the standard deviation, and the standard
  deviation left after removing each (local solar) day's own level (`within_std_*`).
  Derived from {years} hourly data.
- `{dynamics}`: per region, the std of the daily level per month, AR(1) coefficients of the
  daily level and of the within-day residual, and the correlation matrices between signals of
  both; `meta` has the source years and build date. `slit.data.embedded` synthesises any period
  from these (method in its module docstring).
- Token profile: {tokens}.

Hours filled by the loader (edge hold / short gaps) in the source, max over signals, per
region: {filled}.

## Sources and credits

- Grid carbon intensity (gCO2eq/kWh, direct and life-cycle): Electricity Maps
  (https://www.electricitymaps.com), hourly exports.
- Wholesale electricity prices (USD/MWh, standardised to UTC): the regional market operators
  (AEMO, CCEE, IESO, Coordinador Eléctrico Nacional, ENTSO-E/EPEX, IEX, JEPX, KPX, EMC/EMA,
  CAISO, PJM, NYISO, ERCOT, Eskom), as compiled.
- Weather (temperature 2 m, relative humidity 2 m): Open-Meteo historical weather API
  (https://open-meteo.com, CC BY 4.0).
- All three collected and standardised by the SustainCluster benchmark (Hewlett Packard
  Enterprise, MIT licence).
- LLM request token sizes: Azure LLM inference traces 2023 (Microsoft, CC BY 4.0), published
  with Patel et al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting",
  ISCA 2024.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "slit" / "embedded")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    years, filled = build_signals(args.data_dir, args.out)
    tokens = build_tokens(args.data_dir, args.out)
    text = PROVENANCE.format(
        built=datetime.now(UTC).strftime("%Y-%m-%d"), profiles=PROFILES_FILE,
        dynamics=DYNAMICS_FILE, n_regions=len(REGIONS), signals=", ".join(SIGNAL_COLUMNS),
        years=", ".join(str(y) for y in years), tokens=tokens,
        filled=", ".join(f"{r} {n}" for r, n in filled.items()),
    )
    (args.out / PROVENANCE_FILE).write_text(text, encoding="utf-8")
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
