"""Shared fixtures: paths to the optional mlearn data and a few reference structures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MLEARN_DIR = REPO.parent / "shared" / "data" / "mlearn"


@pytest.fixture
def mlearn_dir() -> Path:
    if not (MLEARN_DIR / "Si" / "training.json").exists():
        pytest.skip(f"the mlearn DFT files are not at {MLEARN_DIR} (run `mlpkit data download` and point tests there)")
    return MLEARN_DIR
