"""Active selection: which target configurations to label first, by the source ensemble's disagreement.

An ensemble trained on Si, remapped to Ge (:func:`mlpkit.transfer.transferred`), predicts forces on
every unlabelled Ge configuration. Where its members disagree most, the transferred model knows least,
so those frames are the most informative to compute with the reference and train on. Ranking the pool
once and taking its first N frames keeps the selections nested (N = 10 ⊂ N = 25), as for random subsets.
"""

from __future__ import annotations

import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.training.evaluate import predict_members


def force_disagreement(checkpoint: Checkpoint, dataset: Dataset) -> np.ndarray:
    """[F] eV/Å: per frame, the mean over atoms of the members' force spread √(Σ_xyz Var_k F_i)."""
    if checkpoint.ensemble_size < 2:
        raise MlpkitError("active selection needs an ensemble of at least two members to measure disagreement")
    _, forces = predict_members(checkpoint, dataset)  # [K, ΣN, 3]
    spread = np.sqrt(np.sum(np.var(forces, axis=0), axis=-1))  # [ΣN]
    frame_of_atom = np.repeat(np.arange(len(dataset)), dataset.n_atoms)
    return np.bincount(frame_of_atom, weights=spread, minlength=len(dataset)) / dataset.n_atoms


def ranked_by_disagreement(disagreement: np.ndarray) -> np.ndarray:
    """Frame indices, most disputed first (ties keep their pool order): ``order[:n]`` are nested selections."""
    return np.argsort(-np.asarray(disagreement), kind="stable")

