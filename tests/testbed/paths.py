"""Where the test bed keeps what outlives one run, and where its assets lie."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
FIXTURES_DIR = PACKAGE_DIR.parent / "fixtures"
NVIDIA_SMI_FIXTURES = FIXTURES_DIR / "nvidia-smi"


def cache_dir() -> Path:
    """The persistent cache: images built here survive between runs on one machine."""
    return Path(os.environ.get("GPUPROV_CACHE", "/var/cache/gpuprov")) / "testbed"
