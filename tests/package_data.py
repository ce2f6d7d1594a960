"""Where the data shipped inside the packages is (demo, sample files, example tariffs, mappings).

Tests read it as an installed user would: through the packages, not the repository's layout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATA = Path(str(files("bss") / "data"))
DEMO = DATA / "demo"
TARIFFS = DATA / "tariffs"
SAMPLES = DATA / "samples"
MAPPINGS = Path(str(files("collectors.cdr") / "mappings"))
