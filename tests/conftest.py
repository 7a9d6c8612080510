"""Shared fixtures: paths to the optional mlearn data and a few reference structures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the mlearn files are never part of this repository: MLPKIT_MLEARN_DIR, else the shared folder beside it
MLEARN_DIR = Path(os.environ.get("MLPKIT_MLEARN_DIR", REPO.parent / "shared" / "data" / "mlearn"))


@pytest.fixture
def mlearn_dir() -> Path:
    if not (MLEARN_DIR / "Si" / "training.json").exists():
        pytest.skip(f"the mlearn DFT files are not at {MLEARN_DIR} (run `mlpkit data download --out DIR` and set MLPKIT_MLEARN_DIR=DIR)")
    return MLEARN_DIR
