"""Composition of a data set: atoms of each element per frame, and the least-squares energy per element (E0)."""

from __future__ import annotations

import numpy as np

from mlpkit.data.dataset import Dataset


def element_counts(dataset: Dataset, numbers) -> np.ndarray:
    """[F, E] atoms of each element of ``numbers`` ([E] atomic numbers, in that order) in each frame."""
    frame_of_atom = np.repeat(np.arange(len(dataset)), dataset.n_atoms)  # [ΣN]
    one_hot = dataset.species[:, None] == np.asarray(numbers)[None, :]  # [ΣN, E]
    counts = np.zeros((len(dataset), len(numbers)))
    np.add.at(counts, frame_of_atom, one_hot)
    return counts


def element_energies_ev(dataset: Dataset, numbers) -> np.ndarray:
    """[E] eV: E0 of each element of ``numbers``, by least squares of the frames' total energies on their
    :func:`element_counts` (the minimum-norm solution: 0 for an element no frame holds)."""
    e0_ev, *_ = np.linalg.lstsq(element_counts(dataset, numbers), dataset.energy_ev, rcond=None)
    return e0_ev
