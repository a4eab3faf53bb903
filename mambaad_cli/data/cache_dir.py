"""Where mambaad keeps what it generates for reuse: the demo dataset, the image cache."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """$MAMBAAD_CACHE, else ~/.cache/mambaad."""
    base = os.environ.get("MAMBAAD_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "mambaad"
