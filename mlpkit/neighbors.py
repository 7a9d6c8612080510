"""Periodic neighbour lists, padded to a fixed width so that jit compiles once per size.

The list is built on the host with a k-d tree over the atoms and their periodic images near the cell
(every image within the cutoff, so it stays correct when the cell is shorter than twice the cutoff)
and stored densely: row ``i`` holds the neighbours of atom ``i``. MD in periodic cells three list
cutoffs wide or more rebuilds the same list on the device instead, by a cell list
(:func:`device_neighbors`), so that a GPU never waits on the host. Geometry is recomputed from it in
JAX, so positions may move (MD) or the cell may be strained (stress) while the list is reused, as long
as no atom travels half the skin.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from mlpkit.cell import face_distances_a
from mlpkit.errors import MlpkitError

COINCIDENT_A = 0.01  # atoms closer than this (Å) are one atom counted twice

ROW_PADDING = 8  # rows are padded to a multiple of this to limit recompilation
# geometry in full float32 at least: a GPU's default float32 matrix product rounds its inputs to TF32's
# 10-bit mantissa, which would move an atom 40 Å from the origin by up to 0.02 Å
EXACT = jax.lax.Precision.HIGHEST


@functools.partial(jax.tree_util.register_dataclass, data_fields=["index", "shift", "mask"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Neighbors:
    """Dense neighbour list of a structure with N atoms and room for M neighbours per atom.

    index: [N, M] int32, neighbour atom; padding entries point at the atom itself.
    shift: [N, M, 3] int32, integer cell offsets of the neighbour's periodic image.
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
    _check_finite(positions_a, np.asarray(cell_a, np.float64))
    first, second, shift = neighbor_pairs(positions_a, np.asarray(cell_a, np.float64), np.asarray(pbc, bool), cutoff_a)
    _check_apart(positions_a, np.asarray(cell_a, np.float64), first, second, shift)
    counts = np.bincount(first, minlength=n_atoms)
    width = padded_width(int(counts.max(initial=0)))
    if capacity is not None:
        width = max(width, capacity)
    slot = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.tile(np.arange(n_atoms, dtype=np.int32)[:, None], (1, width))
    shifts = np.zeros((n_atoms, width, 3), np.int32)
    mask = np.zeros((n_atoms, width), bool)
    index[first, slot] = second
    shifts[first, slot] = shift
    mask[first, slot] = True
    return Neighbors(index=index, shift=shifts, mask=mask)


def _check_finite(positions_a: np.ndarray, cell_a: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(positions_a).all(axis=1))
    if len(bad) or not np.isfinite(cell_a).all():
        where = f"the positions of atoms {bad[:5].tolist()}" if len(bad) else "the cell"
        raise MlpkitError(f"{where} are not finite numbers: a structure needs finite positions and cell (Å)")


def _check_apart(positions_a: np.ndarray, cell_a: np.ndarray, first, second, shift) -> None:
    """Refuse atoms on top of each other: every model's bond directions are undefined there (a NaN energy)."""
    lengths = np.linalg.norm(positions_a[second] - positions_a[first] + shift @ cell_a, axis=1)  # [P] Å
    close = np.flatnonzero(lengths < COINCIDENT_A)
    if len(close):
        i, j = int(first[close[0]]), int(second[close[0]])
        raise MlpkitError(f"atoms {i} and {j} are {lengths[close[0]]:.2g} Å apart (closer than {COINCIDENT_A} Å: one "
                          "atom on top of another, or an image of itself in a far too small cell)")


def padded_width(count: int) -> int:
    """The row width for ``count`` neighbours: a multiple of ``ROW_PADDING``, at least one."""
    return -(-max(count, 1) // ROW_PADDING) * ROW_PADDING


def neighbor_pairs(positions_a, cell_a, pbc, cutoff_a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i, j, S) with |r_j + S·cell − r_i| < ``cutoff_a``, i ≠ j or S ≠ 0, sorted by i then j.

    The atoms, wrapped into the cell, are searched against their images (integer shifts S) that lie
    within the cutoff of the cell, by a k-d tree: O(N log N) for any cell shape and size.
    """
    basis = _invertible_basis(cell_a, pbc)
    fractional = positions_a @ np.linalg.inv(basis)
    floor = np.where(pbc, np.floor(fractional), 0.0)
    wrapped_a = positions_a - floor @ basis
    margin = cutoff_a / face_distances_a(basis)  # the cutoff in fractional units
    reach = np.where(pbc, np.ceil(margin), 0).astype(int)
    images, image_atom, image_shift = [], [], []
    for image in itertools.product(*(range(-r, r + 1) for r in reach)):
        image = np.array(image, float)
        near = np.all(~pbc | ((fractional - floor + image > -margin) & (fractional - floor + image < 1 + margin)), axis=1)
        atoms = np.flatnonzero(near)
        images.append(wrapped_a[atoms] + image @ basis)
        image_atom.append(atoms)
        image_shift.append(np.broadcast_to(image, (len(atoms), 3)))
    image_atom, image_shift = np.concatenate(image_atom), np.concatenate(image_shift)
    found = cKDTree(wrapped_a).sparse_distance_matrix(cKDTree(np.concatenate(images)), cutoff_a, output_type="ndarray")
    first, second, shift = found["i"], image_atom[found["j"]], image_shift[found["j"]]
    distinct = (first != second) | np.any(shift != 0, axis=1)
    first, second, shift = first[distinct], second[distinct], shift[distinct]
    order = np.lexsort((second, first))
    shift = shift[order] - floor[second[order]] + floor[first[order]]  # back to the unwrapped positions
    return first[order], second[order], shift.astype(np.int64)


def _invertible_basis(cell_a, pbc) -> np.ndarray:
    """The cell's periodic vectors, completed by orthonormal vectors normal to them (a non-periodic
    direction may have any vector, zero included)."""
    periodic = cell_a[pbc]
    if len(periodic) and np.linalg.matrix_rank(periodic, tol=1e-6) < len(periodic):
        raise MlpkitError(f"the periodic cell vectors {periodic.tolist()} are linearly dependent (a zero or flat cell)")
    basis = np.array(cell_a, np.float64)
    if not pbc.all():
        basis[~pbc] = np.linalg.svd(periodic, full_matrices=True)[2][len(periodic):] if len(periodic) else np.eye(3)
    return basis


def edge_vectors(positions_a, cell_a, neighbors: Neighbors):
    """Vectors r_j + S·cell − r_i from each atom to its neighbours: [N, M, 3] Å (zero on padding)."""
    images = jnp.matmul(neighbors.shift.astype(positions_a.dtype), cell_a, precision=EXACT)  # [N, M, 3]
    vectors = positions_a[neighbors.index] - positions_a[:, None, :] + images
    return jnp.where(neighbors.mask[..., None], vectors, 0.0)


def safe_norm(vectors, mask, fill: float = 1.0):
    """|v| where ``mask``, ``fill`` elsewhere; padding entries get a finite gradient (zero)."""
    squared = jnp.sum(vectors**2, axis=-1)
    return jnp.where(mask, jnp.sqrt(jnp.where(mask, squared, fill**2)), fill)


@dataclasses.dataclass(frozen=True)
class CellGrid:
    """Layout of an on-device cell list: bins along each cell vector, and room for atoms per bin."""

    bins: tuple[int, int, int]
    per_bin: int


def cell_grid(cell_a, pbc, cutoff_a: float, positions_a) -> CellGrid | None:
    """The cell list for :func:`device_neighbors` on this cell, or None where it does not apply: a
    direction that is not periodic, or one fewer than three cutoffs wide (the k-d tree handles those).

    positions_a: [..., N, 3] Å; ``per_bin`` leaves a quarter spare over the fullest bin of any of them.
    """
    if not np.all(pbc):
        return None
    bins = np.floor(face_distances_a(cell_a) / cutoff_a).astype(int)
    if np.any(bins < 3):
        return None
    fractional = np.reshape(positions_a, (-1, np.shape(positions_a)[-2], 3)) @ np.linalg.inv(np.asarray(cell_a, np.float64))
    cells = np.minimum(np.floor((fractional % 1.0) * bins).astype(int), bins - 1)
    flat = np.ravel_multi_index(np.moveaxis(cells, -1, 0), bins)
    fullest = max(np.bincount(row, minlength=bins.prod()).max() for row in flat)
    return CellGrid(tuple(int(b) for b in bins), int(fullest + max(2, fullest // 4)))


def device_neighbors(positions_a, cell_a, cutoff_a, grid: CellGrid, capacity: int):
    """The pairs of :func:`build_neighbors`, found on the device by a cell list (jit-able; ``grid`` and
    ``capacity`` are static), and ``needed``: [2] int32, the largest row and bin counts met.

    Rows hold at most ``capacity`` neighbours and bins ``grid.per_bin`` atoms; where ``needed`` exceeds
    either, the list is incomplete and must be rebuilt larger. Each atom is searched against the 27
    bins around its own; with three or more bins a cutoff wide per direction, each periodic image of a
    neighbour lies in exactly one of them.
    """
    n_atoms, bins = positions_a.shape[0], np.array(grid.bins)
    fractional = jnp.matmul(positions_a, jnp.linalg.inv(cell_a), precision=EXACT)
    floor = jnp.floor(fractional)
    wrapped = fractional - floor  # [N, 3] in [0, 1)
    home = jnp.minimum(jnp.floor(wrapped * bins).astype(jnp.int32), bins - 1)  # [N, 3]
    bin_id = (home[:, 0] * bins[1] + home[:, 1]) * bins[2] + home[:, 2]
    order = jnp.argsort(bin_id, stable=True)
    sorted_id = bin_id[order]
    first_in_bin = jnp.searchsorted(sorted_id, jnp.arange(bins.prod()))
    rank = jnp.arange(n_atoms) - first_in_bin[sorted_id]
    table = jnp.full((bins.prod(), grid.per_bin), -1, jnp.int32).at[sorted_id, rank].set(order.astype(jnp.int32), mode="drop")

    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=3)))  # [27, 3]
    around = home[:, None, :] + offsets  # [N, 27, 3]
    wrap = jnp.floor_divide(around, bins)  # which periodic image of the bin, -1 … 1
    around = around - wrap * bins
    candidate = table[(around[..., 0] * bins[1] + around[..., 1]) * bins[2] + around[..., 2]]  # [N, 27, K]
    candidate = candidate.reshape(n_atoms, -1)  # [N, 27K]
    wrap = jnp.repeat(wrap, grid.per_bin, axis=1)  # [N, 27K, 3]
    other = jnp.maximum(candidate, 0)
    vectors = jnp.matmul(wrapped[other] + wrap - wrapped[:, None, :], cell_a, precision=EXACT)  # [N, 27K, 3]
    itself = (other == jnp.arange(n_atoms)[:, None]) & jnp.all(wrap == 0, axis=-1)
    keep = (candidate >= 0) & ~itself & (jnp.sum(vectors**2, axis=-1) < cutoff_a**2)

    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, capacity)  # past the end: dropped by the scatter
    rows = jnp.broadcast_to(jnp.arange(n_atoms)[:, None], slot.shape)
    shift = (wrap - floor[other] + floor[:, None, :]).astype(jnp.int32)  # back to the unwrapped positions
    index = jnp.broadcast_to(jnp.arange(n_atoms, dtype=jnp.int32)[:, None], (n_atoms, capacity))
    neighbors = Neighbors(
        index=index.at[rows, slot].set(other.astype(jnp.int32), mode="drop"),
        shift=jnp.zeros((n_atoms, capacity, 3), jnp.int32).at[rows, slot].set(shift, mode="drop"),
        mask=jnp.zeros((n_atoms, capacity), bool).at[rows, slot].set(True, mode="drop"),
    )
    needed = jnp.stack([jnp.max(jnp.sum(keep, axis=1)), jnp.max(rank) + 1]).astype(jnp.int32)
    return neighbors, needed
