"""What a study sweeps (:class:`StudyConfig`) and the data it reads (:class:`StudyData`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from mlpkit.data import load_dataset, shuffled, sw_data_path, train_val_split
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import dataclass_from_dict, sha256_of
from mlpkit.study.recipe import INITS
from mlpkit.training import TrainConfig
from mlpkit.transfer import TransferConfig

QUICK_STUDY_EPOCHS = 20  # half the quick training preset's epochs: the quick sweep is 11 trainings (timings: RESULTS.md)
STUDY_FILES = (("Si", "training"), ("Ge", "training"), ("Ge", "test"))


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

    def __post_init__(self):
        if self.data not in ("sw", "mlearn"):
            raise MlpkitError(f"unknown data source {self.data!r}: use 'sw' or 'mlearn'")
        if self.data == "mlearn" and not self.mlearn_dir:
            raise MlpkitError("the mlearn study needs mlearn_dir, the folder with {Si,Ge}/{training,test}.json")
        unknown = sorted(set(self.inits) - set(INITS))
        if unknown or not self.inits or not self.seeds or min(self.sizes, default=-1) < 0:
            raise MlpkitError(f"invalid study: inits must come from {list(INITS)}, seeds and sizes ≥ 0 non-empty")

    def quick(self) -> StudyConfig:
        """Sizes up to 100 and quick models trained for half the quick epochs (the sweep is 11 trainings)."""
        train = dataclasses.replace(self.train.quick(), max_epochs=QUICK_STUDY_EPOCHS, patience_epochs=QUICK_STUDY_EPOCHS // 2)
        return dataclasses.replace(self, sizes=(5, 10, 25, 50, 100), train=train)

    @property
    def members(self) -> TrainConfig:
        """The training configuration of every cell: one ensemble member per seed."""
        return dataclasses.replace(self.train, seeds=self.seeds)

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
    return StudyData(config.data, si_train, si_validation, shuffled(ge_pool, config.data_seed), ge_validation,
                     load_dataset(data_path(config, "Ge", "test")))


def data_checksums(config: StudyConfig) -> dict[str, str]:
    """SHA-256 of every data file the study reads, by ``El/split``: part of every run's key."""
    return {f"{element}/{split}": sha256_of(data_path(config, element, split)) for element, split in STUDY_FILES}
