"""Geometry of a periodic cell (``cell_a`` [..., 3, 3] Å, rows are the cell vectors) and the Voigt order of
3 × 3 tensors: facts every layer uses, so this module imports nothing of mlpkit's."""

from __future__ import annotations

import numpy as np


def cell_volume_a3(cell_a, xp=np):
    """[...] Å³: |det cell|; ``xp=jax.numpy`` inside traced code."""
    return xp.abs(xp.linalg.det(cell_a))


def face_distances_a(cell_a) -> np.ndarray:
    """[..., 3] Å: for each cell vector a_k, the distance between the two cell faces it joins, V / |a_i × a_j|
    (i, j the other two)."""
    return 1.0 / np.linalg.norm(np.linalg.inv(np.asarray(cell_a, np.float64)), axis=-2)  # 1 / |k-th reciprocal vector|


def voigt_from_tensor(tensor):
    """[..., 3, 3] → [..., 6] in ASE's Voigt order [xx, yy, zz, yz, xz, xy]."""
    return tensor[..., [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def tensor_from_voigt(voigt):
    """[..., 6] in ASE's Voigt order [xx, yy, zz, yz, xz, xy] → the symmetric [..., 3, 3] tensor."""
    voigt = np.asarray(voigt)
    return voigt[..., [[0, 5, 4], [5, 1, 3], [4, 3, 2]]]
