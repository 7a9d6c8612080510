"""Shared fixtures: paths to the optional mlearn data, and one small finished study that several test files read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpkit.models import ModelConfig
from mlpkit.study import StudyConfig, run_study
from mlpkit.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# the mlearn files are never part of this repository: MLPKIT_MLEARN_DIR, else the shared folder beside it
MLEARN_DIR = Path(os.environ.get("MLPKIT_MLEARN_DIR", REPO.parent / "shared" / "data" / "mlearn"))


@pytest.fixture
def mlearn_dir() -> Path:
    if not (MLEARN_DIR / "Si" / "training.json").exists():
        pytest.skip(f"the mlearn DFT files are not at {MLEARN_DIR} (run `mlpkit data download --out DIR` and set MLPKIT_MLEARN_DIR=DIR)")
    return MLEARN_DIR


TINY_TRAIN = TrainConfig(model=ModelConfig("painn", features=16, layers=1), max_epochs=2, warmup_epochs=1, batch_size=4)
STUDY_CONFIG = StudyConfig(sizes=(2, 4), seeds=(0, 1), inits=("scratch", "transfer", "transfer-active"), train=TINY_TRAIN)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """(folder, rows) of :data:`STUDY_CONFIG` run to the end. Tests that damage its files restore them."""
    out = tmp_path_factory.mktemp("study")
    return out, run_study(STUDY_CONFIG, out, progress=False)
