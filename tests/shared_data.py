"""Where the project's shared folder is: beside the repository (as CI lays it out).

``$RATING_ENGINE_SHARED`` overrides it, e.g. for a clone somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(
    os.environ.get("RATING_ENGINE_SHARED", Path(__file__).resolve().parents[2] / "shared")
)
CAPTURES = SHARED / "data" / "captures"
