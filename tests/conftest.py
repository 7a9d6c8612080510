"""Shared test helpers: the optional mlearn data, random and distorted inputs for the models, one small
finished study that several test files read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

from mlpkit.calculator import MLPCalculator
from mlpkit.checkpoint import Checkpoint
from mlpkit.models import ModelConfig, init_params
from mlpkit.models.energy import Normalisation
from mlpkit.models.graph import ElementTable
from mlpkit.structures import diamond, rattled, strained
from mlpkit.study import StudyConfig, run_study
from mlpkit.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# the mlearn files are never part of this repository: MLPKIT_MLEARN_DIR, else the shared folder beside it
MLEARN_DIR = Path(os.environ.get("MLPKIT_MLEARN_DIR", REPO.parent / "shared" / "data" / "mlearn"))


CACHE_SETTINGS = {"JAX_COMPILATION_CACHE_DIR": "jax_compilation_cache_dir",
                  "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "jax_persistent_cache_min_compile_time_secs"}


def pytest_configure(config):
    """One XLA compilation cache and one DFT label cache for the whole run: the CLI subprocesses, the notebook
    kernels and this process compile the same small models over and over (a killed-and-resumed training test
    takes 64 s with it instead of 94 s on one core), and the oracle's tests, benchmarks and notebook label some of
    the same cells. Fresh for each run, so that no run is timed on another's programs or labels and the user's
    own label cache is left alone; a cache already named in the environment is used as it is."""
    config.own_caches = []
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config.own_caches.append(tempfile.mkdtemp(prefix="mlpkit-tests-xla-cache-"))
        values = {"JAX_COMPILATION_CACHE_DIR": config.own_caches[-1], "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1"}
        for variable, value in values.items():
            os.environ[variable] = value  # inherited by every process a test starts
            jax.config.update(CACHE_SETTINGS[variable], float(value) if "TIME" in variable else value)
    if "MLPKIT_CACHE_DIR" not in os.environ:  # read by mlpkit.oracle.default_cache_dir at each label
        config.own_caches.append(tempfile.mkdtemp(prefix="mlpkit-tests-cache-"))
        os.environ["MLPKIT_CACHE_DIR"] = config.own_caches[-1]


def pytest_unconfigure(config):
    for folder in getattr(config, "own_caches", []):
        shutil.rmtree(folder, ignore_errors=True)


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


MODEL_VARIANTS = {"mace-vectors": ModelConfig("mace", vector_messages=True),  # besides the plain architectures
                  "mace-symmetric": ModelConfig("mace", product="symmetric")}


def random_checkpoint(architecture: str, symbols=("Si",), members: int = 1) -> Checkpoint:
    """A model whose zero-initialised parameters (biases, DimeNet++'s readout) are made random, so every path counts.
    ``architecture`` is one of ``mlpkit.models.ARCHITECTURES`` or of ``MODEL_VARIANTS``."""
    config = (MODEL_VARIANTS[architecture] if architecture in MODEL_VARIANTS else ModelConfig(architecture)).quick()
    stacked = []
    for seed in range(members):
        params = init_params(config, len(symbols), seed)
        leaves, tree = jax.tree_util.tree_flatten(params)
        rng = np.random.default_rng(seed)
        leaves = [leaf if np.any(leaf) else 0.2 * rng.standard_normal(leaf.shape).astype(np.float32) for leaf in leaves]
        stacked.append(jax.tree_util.tree_unflatten(tree, leaves))
    params = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *stacked)
    normalisation = Normalisation(tuple(-4.0 - k for k in range(len(symbols))), tuple(0.5 for _ in symbols))
    return Checkpoint(config, ElementTable(tuple(symbols)), normalisation, params)


def distorted(element="Si", repeat=(1, 1, 1), seed=0):
    rng = np.random.default_rng(seed)
    return rattled(strained(diamond(element, repeat), rng.uniform(-0.03, 0.03, 6)), 0.15, seed)


def rigidly_moved(atoms, seed: int):
    """(``atoms`` rotated by a random orthogonal matrix and translated, that matrix)."""
    rotation = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))[0]
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    moved.positions = atoms.positions @ rotation.T + np.array([0.7, -1.3, 2.1])
    return moved, rotation


def results(atoms, checkpoint):
    atoms = atoms.copy()
    atoms.calc = MLPCalculator(checkpoint, float64=True)
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(), atoms


def self_force_constant_ev_per_a2(calculator, displacement_a: float) -> float:
    """−F_x / h on one atom of the perfect 64-atom Si diamond crystal displaced by h along x (eV/Å²)."""
    atoms = diamond("Si")
    atoms.positions[0, 0] += displacement_a
    atoms.calc = calculator
    return -atoms.get_forces()[0, 0] / displacement_a
