"""``python -m slit.config docs/scenarios.md``: regenerate the settings tables of the docs."""

import sys
from pathlib import Path

from slit.config.example import update_docs

for arg in sys.argv[1:]:
    print(f"{arg}: {'updated' if update_docs(Path(arg)) else 'up to date'}")
