"""Data sets: one Dataset type, its readers and writers, splits and the default SW sets."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlpkit.data.cache import load_npz, save_npz
from mlpkit.data.dataset import Dataset, concatenate, from_frames, validate
from mlpkit.data.extxyz import LabelKeys, read_extxyz, write_extxyz
from mlpkit.data.mlearn import download_mlearn, read_mlearn
from mlpkit.data.outliers import Outlier, outlier_report
from mlpkit.data.splits import select_where, shuffled, train_val_split
from mlpkit.errors import DataError


SW_DATA_DIR = Path(str(resources.files("mlpkit.data") / "sw"))  # package data: travels inside the wheel


def sw_data_path(element: str, split: str = "training") -> Path:
    """Path of a shipped SW data set, ``split`` being ``"training"`` or ``"test"``."""
    path = SW_DATA_DIR / element / f"{split}.extxyz"
    if not path.exists():
        raise DataError(f"no shipped SW data here; make it with `mlpkit data generate --element {element} --out {SW_DATA_DIR}`", path=path)
    return path


def load_dataset(path, keys: LabelKeys = LabelKeys()) -> Dataset:
    """Read a data set by its suffix: ``.xyz``/``.extxyz``, ``.npz`` (mlpkit cache) or ``.json`` (mlearn)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        return read_extxyz(path, keys)
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".json":
        return read_mlearn(path)
    raise DataError(f"unknown data format {suffix!r}: use .xyz/.extxyz, .npz or mlearn .json", path=path)


__all__ = [
    "Dataset",
    "LabelKeys",
    "Outlier",
    "concatenate",
    "download_mlearn",
    "from_frames",
    "load_dataset",
    "load_npz",
    "outlier_report",
    "read_extxyz",
    "read_mlearn",
    "save_npz",
    "select_where",
    "sw_data_path",
    "shuffled",
    "train_val_split",
    "validate",
    "write_extxyz",
]
