"""Write scenarios/homogeneous.yaml: the default scenario with every site on H100.

    python scripts/make_homogeneous.py

Each site serves the default models on H100 (8B on one GPU, 70B on four) and is sized by the
same rule as the default fleet, so comparing the two runs separates what scheduling earns from
what moving work off older GPUs gives. Rerun after a change to the sizing rule (a test checks).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from slit.data.regions import DEFAULT_REGION_IDS
from slit.experiment.scenario import DEFAULT_GLOBAL_RATE_RPS, DEFAULT_START_UTC, default_sites

TARGET = Path(__file__).resolve().parents[1] / "scenarios" / "homogeneous.yaml"
HEADER = """\
# The default scenario with every site on the same GPU generation (H100: Llama-3.1-8B on one
# GPU, Llama-3.1-70B on four), each sized to its own region's peak by the default fleet's rule.
# Beside the default (H100 in eight regions, A100 elsewhere) it separates what scheduling earns
# from what moving work off older GPUs gives. Written by scripts/make_homogeneous.py.
#   slit run scenarios/homogeneous.yaml
"""


def homogeneous_document() -> dict:
    sites = default_sites(DEFAULT_GLOBAL_RATE_RPS, DEFAULT_START_UTC,
                          h100_regions=frozenset(DEFAULT_REGION_IDS))
    return {
        "name": "homogeneous-h100",
        "fleet": None,
        "sites": [{
            "region": site.region_id,
            "gpus": dict(site.gpus),
            "replica_for": {m: {"gpu": r.gpu, "tp": r.tp} for m, r in site.replica_for.items()},
            "reserved": dict(site.reserved),
            "cooling": "evaporative",
        } for site in sites],
        "period": {"start_utc": f"{DEFAULT_START_UTC:%Y-%m-%dT%H:%M}", "hours": 24.0},
    }


def main() -> None:
    text = yaml.safe_dump(homogeneous_document(), sort_keys=False, default_flow_style=None,
                          width=200)
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(HEADER + text, encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
