"""Reproducible splits: random by seed (stratified by group and temperature), and by group or temperature."""

from __future__ import annotations

import numpy as np

from mlpkit.data.dataset import Dataset
from mlpkit.data.outliers import first_copies
from mlpkit.errors import MlpkitError


def shuffled(dataset: Dataset, seed: int) -> Dataset:
    """The frames in a seeded random order, so that ``first(n)`` gives nested random subsets."""
    return dataset.select(np.random.default_rng(seed).permutation(len(dataset)))


def train_val_split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Random split taking the same fraction from every (group, temperature) stratum.

    Each stratum with ≥ 2 frames gives at least one frame to each side. Copies of one structure
    (:func:`~mlpkit.data.outliers.first_copies`) go to the side of the first of them, so no frame is
    validated on a copy of itself. Both parts come out in a seeded random order.
    """
    if not 0 < val_fraction < 1:
        raise MlpkitError(f"the validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    first = first_copies(dataset)
    originals = np.flatnonzero(first == np.arange(len(dataset)))
    strata = np.array([f"{group}@{temperature:g}" for group, temperature in zip(dataset.group, dataset.temperature_k)], dtype=str)
    val = []
    for stratum in np.unique(strata[originals]):
        members = rng.permutation(originals[strata[originals] == stratum])
        count = round(val_fraction * len(members))
        count = min(max(count, 1), len(members) - 1) if len(members) >= 2 else 0
        val.extend(members[:count])
    is_val = np.isin(first, val)
    return dataset.select(rng.permutation(np.flatnonzero(~is_val))), dataset.select(rng.permutation(np.flatnonzero(is_val)))


def select_where(
    dataset: Dataset,
    groups=None,
    min_temperature_k: float | None = None,
    max_temperature_k: float | None = None,
) -> Dataset:
    """Frames in ``groups`` (all if None) with a known temperature inside the given bounds (inclusive).

    With no temperature bound, frames of unknown temperature are kept.
    """
    if isinstance(groups, str):
        groups = [groups]
    keep = np.ones(len(dataset), bool) if groups is None else np.isin(dataset.group, list(groups))
    if min_temperature_k is not None:
        keep &= dataset.temperature_k >= min_temperature_k
    if max_temperature_k is not None:
        keep &= dataset.temperature_k <= max_temperature_k
    return dataset.select(np.flatnonzero(keep))
