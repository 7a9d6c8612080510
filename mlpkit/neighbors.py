"""Periodic neighbour lists, padded to a fixed width so that jit compiles once per size.

The list is built on the host (ASE's cell-binned builder, which enumerates every periodic image and
so stays correct when the cell is shorter than twice the cutoff) and stored densely: row ``i`` holds
the neighbours of atom ``i``. Geometry is recomputed from it in JAX, so positions may move (MD) or the
cell may be strained (stress) while the list is reused, as long as no atom travels half the skin.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase.neighborlist import primitive_neighbor_list

ROW_PADDING = 8  # rows are padded to a multiple of this to limit recompilation


@functools.partial(jax.tree_util.register_dataclass, data_fields=["index", "shift", "mask"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Neighbors:
    """Dense neighbour list of a structure with N atoms and room for M neighbours per atom.

    index: [N, M] int32, neighbour atom; padding entries point at the atom itself.
    shift: [N, M, 3] float, integer cell offsets of the neighbour's periodic image.
    mask:  [N, M] bool, True where the entry is a real neighbour.
    """

    index: np.ndarray
    shift: np.ndarray
    mask: np.ndarray

    @property
    def capacity(self) -> int:
        return self.index.shape[1]


def build_neighbors(positions_a, cell_a, pbc, cutoff_a: float, capacity: int | None = None) -> Neighbors:
    """All pairs closer than ``cutoff_a`` (Å), every periodic image included.

    positions_a: [N, 3] Å; cell_a: [3, 3] Å, rows are cell vectors; pbc: [3] bool.
    ``capacity`` fixes the row width M; by default (or if the structure needs more) the
    largest neighbour count rounded up to a multiple of ``ROW_PADDING``.
    """
    positions_a = np.asarray(positions_a, dtype=np.float64)
    n_atoms = len(positions_a)
    first, second, shift = primitive_neighbor_list(
        "ijS", np.asarray(pbc, bool), np.asarray(cell_a, np.float64), positions_a, cutoff_a,
        self_interaction=False,
    )
    counts = np.bincount(first, minlength=n_atoms)
    needed = max(int(counts.max(initial=0)), 1)
    width = -(-needed // ROW_PADDING) * ROW_PADDING
    if capacity is not None:
        width = max(width, capacity)
    order = np.argsort(first, kind="stable")
    first, second, shift = first[order], second[order], shift[order]
    slot = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.tile(np.arange(n_atoms, dtype=np.int32)[:, None], (1, width))
    shifts = np.zeros((n_atoms, width, 3))
    mask = np.zeros((n_atoms, width), bool)
    index[first, slot] = second
    shifts[first, slot] = shift
    mask[first, slot] = True
    return Neighbors(index=index, shift=shifts, mask=mask)


def edge_vectors(positions_a, cell_a, neighbors: Neighbors):
    """Vectors r_j + S·cell − r_i from each atom to its neighbours: [N, M, 3] Å (zero on padding)."""
    images = neighbors.shift.astype(positions_a.dtype) @ cell_a  # [N, M, 3]
    vectors = positions_a[neighbors.index] - positions_a[:, None, :] + images
    return jnp.where(neighbors.mask[..., None], vectors, 0.0)


def safe_norm(vectors, mask, fill: float = 1.0):
    """|v| where ``mask``, ``fill`` elsewhere; padding entries get a finite gradient (zero)."""
    squared = jnp.sum(vectors**2, axis=-1)
    return jnp.where(mask, jnp.sqrt(jnp.where(mask, squared, fill**2)), fill)

