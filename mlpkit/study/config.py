"""What a study sweeps (:class:`StudyConfig`) and the data it reads (:class:`StudyData`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np

from mlpkit.data import load_dataset, shuffled, sw_data_path, train_val_split
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import dataclass_from_dict, sha256_of
from mlpkit.study.recipe import INITS
from mlpkit.training import TrainConfig
from mlpkit.transfer import TransferConfig

QUICK_STUDY_EPOCHS = 20  # half the quick training preset's epochs: the quick sweep is 11 trainings (timings: RESULTS.md)
STUDY_FILES = (("Si", "training"), ("Ge", "training"), ("Ge", "test"))
# the Si model every study of a data type transfers from unless told otherwise (mlpkit/pretrained/README.md)
SHIPPED_SOURCES = {"sw": "pretrained:si_mace_sw", "mlearn": "pretrained:si_mace_mlearn"}
PAPER_STEPS_PER_RUN = 500  # optimiser steps per Ge training of the paper preset: 36 runs in ≤ 150 min on 2 cores


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What to sweep. ``sizes``: Ge training frames per run, 0 meaning all of them. ``inits``: names of
    :func:`~mlpkit.study.recipe.parse_init`."""

    data: str = "sw"  # "sw" (shipped Stillinger–Weber sets) or "mlearn" (DFT, from mlearn_dir)
    mlearn_dir: str | None = None
    sizes: tuple[int, ...] = (5, 10, 25, 50, 100, 0)
    seeds: tuple[int, ...] = (0, 1, 2)
    inits: tuple[str, ...] = ("scratch", "transfer")
    train: TrainConfig = TrainConfig()
    transfer: TransferConfig = TransferConfig()
    # "transfer" models see Ge scaled by a_Si / a_Ge of this data's reference: the best protocol measured
    # (benchmarks/transfer_protocols.py); "transfer-plain" never is
    rescale_lengths: bool = True
    validation_fraction: float = 0.1
    data_seed: int = 0
    source: str | None = None  # a trained Si checkpoint (path or pretrained:NAME) used instead of training one
    # True: each seed is a draw of its own (its Ge subset, validation split and batch order from data_seed + seed,
    # one model initialised by the seed); False: the seeds are the members of one ensemble per cell, on one draw
    independent_draws: bool = False
    # temperature transferability: the Ge models train and validate only on frames at or below this temperature
    # (frames without a temperature, such as Elastic, are kept); the test set keeps every frame
    max_train_temperature_k: float | None = None
    # each Ge training runs for about this many optimiser steps (epochs = steps / batches per epoch, at most
    # train.max_epochs), so a small set trains as long as a large one; None: train.max_epochs for every size
    steps_per_run: int | None = None

    def __post_init__(self):
        if self.data not in ("sw", "mlearn"):
            raise MlpkitError(f"unknown data source {self.data!r}: use 'sw' or 'mlearn'")
        if self.data == "mlearn" and not self.mlearn_dir:
            raise MlpkitError("the mlearn study needs mlearn_dir, the folder with {Si,Ge}/{training,test}.json")
        unknown = sorted(set(self.inits) - set(INITS))
        if unknown or not self.inits or not self.seeds or min(self.sizes, default=-1) < 0:
            raise MlpkitError(f"invalid study: inits must come from {list(INITS)}, seeds and sizes ≥ 0 non-empty")
        if len(set(self.sizes)) != len(self.sizes) or len(set(self.seeds)) != len(self.seeds) or len(set(self.inits)) != len(self.inits):
            raise MlpkitError(f"invalid study: sizes {list(self.sizes)}, seeds {list(self.seeds)} and inits "
                              f"{list(self.inits)} must each be distinct (a repeat would count one run twice)")
        if min(self.seeds) < 0 or self.data_seed < 0:
            raise MlpkitError(f"invalid study: seeds and data_seed must be ≥ 0, got {list(self.seeds)} and {self.data_seed}")
        if self.steps_per_run is not None and self.steps_per_run < 1:
            raise MlpkitError(f"invalid study: steps_per_run must be ≥ 1, got {self.steps_per_run}")
        if self.max_train_temperature_k is not None and not 0 < self.max_train_temperature_k < math.inf:
            raise MlpkitError(f"invalid study: max_train_temperature_k must be a temperature > 0 K, got {self.max_train_temperature_k}")

    def quick(self) -> StudyConfig:
        """A demonstration in minutes: sizes 5 and 25, one seed, quick models trained for half the quick epochs."""
        train = dataclasses.replace(self.train.quick(), max_epochs=QUICK_STUDY_EPOCHS, patience_epochs=QUICK_STUDY_EPOCHS // 2)
        return dataclasses.replace(self, sizes=(5, 25), seeds=(0,), train=train)

    def paper(self) -> StudyConfig:
        """The paper's study sized for two CPU cores: sizes 5 … all, three independent draws, the quick model
        trained for :data:`PAPER_STEPS_PER_RUN` steps (at most 250 epochs), from the shipped source of the data."""
        train = dataclasses.replace(self.train.quick(), max_epochs=250, patience_epochs=60)
        return dataclasses.replace(self, sizes=(5, 10, 25, 50, 100, 0), seeds=(0, 1, 2), independent_draws=True, train=train,
                                   steps_per_run=PAPER_STEPS_PER_RUN, source=self.source or SHIPPED_SOURCES[self.data])

    def gpu(self) -> StudyConfig:
        """The paper's study at full size, for a GPU: the default model, up to 300 epochs, three independent draws."""
        return dataclasses.replace(self, sizes=(5, 10, 25, 50, 100, 0), seeds=(0, 1, 2), independent_draws=True)

    def draws(self) -> list[StudyConfig]:
        """The study as draws of the Ge data: one per seed with ``independent_draws`` (each an ordinary study of
        one seed, its data seed offset by the seed), else the study itself."""
        if not self.independent_draws:
            return [self]
        return [dataclasses.replace(self, seeds=(seed,), data_seed=self.data_seed + seed, independent_draws=False,
                                    train=dataclasses.replace(self.train, data_seed=self.data_seed + seed))
                for seed in self.seeds]

    @property
    def members(self) -> TrainConfig:
        """The training configuration of every cell: one ensemble member per seed."""
        return dataclasses.replace(self.train, seeds=self.seeds)

    def members_for(self, n_frames: int) -> TrainConfig:
        """:attr:`members` with its epochs set by ``steps_per_run`` for a training set of ``n_frames``."""
        if self.steps_per_run is None:
            return self.members
        batches = max(1, math.ceil(n_frames / self.train.batch_size))
        epochs = min(self.train.max_epochs, max(1, math.ceil(self.steps_per_run / batches)))
        patience = min(self.train.patience_epochs, max(1, epochs // 4))
        return dataclasses.replace(self.members, max_epochs=epochs, patience_epochs=patience,
                                   warmup_epochs=min(self.train.warmup_epochs, epochs - 1))

    @classmethod
    def from_dict(cls, values: dict) -> StudyConfig:
        """From parsed JSON (``results.json``'s ``config``), every field type-checked; bad input raises MlpkitError."""
        return dataclass_from_dict(cls, values, "study configuration")


@dataclasses.dataclass(frozen=True)
class StudyData:
    """The study's frames: Si training/validation, the shuffled Ge pool (nested subsets: the first N frames),
    Ge validation and test. ``ranked_pools`` holds the pool in the order of each frame selection other than
    "random" (see :mod:`mlpkit.study.recipe`)."""

    name: str  # "sw" or "mlearn": the reference, and so the lattice constants of the length scaling
    si_train: Dataset
    si_validation: Dataset
    ge_pool: Dataset
    ge_validation: Dataset
    ge_test: Dataset
    ranked_pools: Mapping[str, Dataset] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def frames(self, selection: str, size: int) -> Dataset:
        """The first ``size`` frames (0: all) of the pool in the order of ``selection``: N = 10 ⊂ N = 25."""
        if selection == "random":
            pool = self.ge_pool
        elif selection in self.ranked_pools:
            pool = self.ranked_pools[selection]
        else:
            raise MlpkitError(f"the study data holds no {selection!r} ranking of the Ge pool (it holds "
                              f"{['random', *self.ranked_pools]})")
        return pool.first(size or len(pool))

    def with_ranking(self, selection: str, order) -> StudyData:
        """The same data with the Ge pool also ranked by ``order`` (pool indices, best first) as ``selection``."""
        pools = {**self.ranked_pools, selection: self.ge_pool.select(order)}
        return dataclasses.replace(self, ranked_pools=MappingProxyType(pools))


def data_path(config: StudyConfig, element: str, split: str) -> Path:
    if config.data == "sw":
        return sw_data_path(element, split)
    return Path(config.mlearn_dir) / element / f"{split}.json"


def load_study_data(config: StudyConfig) -> StudyData:
    """Every frame the study uses, split as ``config`` says (validation fraction and seed)."""
    si_train, si_validation = train_val_split(load_dataset(data_path(config, "Si", "training")), config.validation_fraction,
                                              config.data_seed)
    ge_pool, ge_validation = train_val_split(load_dataset(data_path(config, "Ge", "training")), config.validation_fraction,
                                             config.data_seed)
    if config.max_train_temperature_k is not None:
        ge_pool, ge_validation = (at_most(frames, config.max_train_temperature_k) for frames in (ge_pool, ge_validation))
    return StudyData(config.data, si_train, si_validation, shuffled(ge_pool, config.data_seed), ge_validation,
                     load_dataset(data_path(config, "Ge", "test")))


def at_most(frames: Dataset, temperature_k: float) -> Dataset:
    """The frames at or below ``temperature_k``, and those of unknown temperature (such as Elastic)."""
    return frames.select(np.flatnonzero(~(frames.temperature_k > temperature_k)))


def data_checksums(config: StudyConfig) -> dict[str, str]:
    """SHA-256 of every data file the study reads, by ``El/split``: part of every run's key."""
    return {f"{element}/{split}": sha256_of(data_path(config, element, split)) for element, split in STUDY_FILES}
