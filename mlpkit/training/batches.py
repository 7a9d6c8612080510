"""Padded batches: structures of any size grouped into a few fixed shapes, so jit compiles once per shape.

Frames are binned by atom count rounded up to a multiple of ``ATOM_BUCKET`` (mlearn's 12–96 atoms give
up to three shapes: 32, 64 and 96). A bucket's last batch is filled with empty frames (no atoms, weight
zero), which cost as much as real ones, so a bucket whose frames fit the larger bucket's batches for no
more padded atom slots joins it (a handful of 32-atom surfaces rides in the 64-atom batches instead of
taking a batch of its own). Every frame of a data set shares one neighbour capacity M. Buckets live on
the default device; a batch is one compiled gather of their rows, so nothing is copied from the host
per step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import jax
import numpy as np

from mlpkit.data.dataset import Dataset
from mlpkit.models.graph import PADDING_SPECIES
from mlpkit.neighbors import ROW_PADDING, Neighbors, build_neighbors

ATOM_BUCKET = 32


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["positions_a", "cell_a", "species", "neighbors", "energy_ev", "forces_ev_per_a",
                 "stress_ev_per_a3", "has_stress", "n_atoms"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Batch:
    """B frames padded to N atoms and M neighbours. Padding atoms have species 0; empty frames n_atoms 0.

    positions_a [B, N, 3] Å; cell_a [B, 3, 3] Å; species [B, N]; neighbors [B, N, M]; energy_ev [B];
    forces_ev_per_a [B, N, 3]; stress_ev_per_a3 [B, 6] Voigt (0 where unknown); has_stress [B]; n_atoms [B].
    """

    positions_a: np.ndarray
    cell_a: np.ndarray
    species: np.ndarray
    neighbors: Neighbors
    energy_ev: np.ndarray
    forces_ev_per_a: np.ndarray
    stress_ev_per_a3: np.ndarray
    has_stress: np.ndarray
    n_atoms: np.ndarray


def _padded_slots(frames: int, n_pad: int, batch_size: int) -> int:
    """Atom slots a bucket of ``frames`` frames padded to ``n_pad`` atoms computes: full batches of ``batch_size``."""
    return -(-frames // batch_size) * batch_size * n_pad


def bucket_sizes(n_atoms: np.ndarray, batch_size: int) -> np.ndarray:
    """Padded atom count of each frame: rounded up to ``ATOM_BUCKET``, a bucket merged upwards where that is not dearer."""
    n_pad = -(-np.asarray(n_atoms) // ATOM_BUCKET) * ATOM_BUCKET
    sizes = np.unique(n_pad)
    for small, large in zip(sizes[:-1], sizes[1:]):
        n_small, n_large = int((n_pad == small).sum()), int((n_pad == large).sum())
        apart = _padded_slots(n_small, small, batch_size) + _padded_slots(n_large, large, batch_size)
        if _padded_slots(n_small + n_large, large, batch_size) <= apart:
            n_pad[n_pad == small] = large
    return n_pad


def _padded_frame(dataset: Dataset, index: int, n_pad: int, neighbors: Neighbors, capacity: int, dtype) -> dict:
    start, stop = dataset.offsets[index], dataset.offsets[index + 1]
    n = stop - start
    pad_atoms = ((0, n_pad - n), (0, 0))
    index_rows = np.concatenate([neighbors.index, np.zeros((n_pad - n, neighbors.capacity), np.int32)])
    index_rows[n:] = np.arange(n, n_pad)[:, None]  # padding atoms point at themselves
    width = ((0, 0), (0, capacity - neighbors.capacity))
    self_index = np.broadcast_to(np.arange(n_pad)[:, None], (n_pad, capacity - neighbors.capacity))
    return dict(
        positions_a=np.pad(dataset.positions_a[start:stop], pad_atoms).astype(dtype),
        cell_a=dataset.cell_a[index].astype(dtype),
        species=np.pad(dataset.species[start:stop], (0, n_pad - n), constant_values=PADDING_SPECIES).astype(np.int32),
        neighbors=Neighbors(
            index=np.concatenate([index_rows, self_index], axis=1).astype(np.int32),
            shift=np.pad(np.pad(neighbors.shift, pad_atoms + ((0, 0),)), width + ((0, 0),)).astype(dtype),
            mask=np.pad(np.pad(neighbors.mask, pad_atoms), width),
        ),
        energy_ev=np.asarray(dataset.energy_ev[index], dtype),
        forces_ev_per_a=np.pad(dataset.forces_ev_per_a[start:stop], pad_atoms).astype(dtype),
        stress_ev_per_a3=np.nan_to_num(dataset.stress_ev_per_a3[index]).astype(dtype),
        has_stress=np.asarray(dataset.has_stress[index]),
        n_atoms=np.asarray(n, np.int32),
    )


def _empty_frame(template: dict) -> dict:
    """A frame of the template's shape with no atoms: it fills a bucket's last batch and weighs nothing."""
    neighbors = template["neighbors"]
    return {
        **template,
        "species": np.zeros_like(template["species"]),
        "neighbors": dataclasses.replace(neighbors, mask=np.zeros_like(neighbors.mask)),
        "has_stress": np.asarray(False),
        "n_atoms": np.asarray(0, np.int32),
    }


def _stack(frames: list[dict]) -> Batch:
    fields = {name: np.stack([f[name] for f in frames]) for name in frames[0] if name != "neighbors"}
    neighbors = Neighbors(*(np.stack([getattr(f["neighbors"], k) for f in frames]) for k in ("index", "shift", "mask")))
    return Batch(neighbors=neighbors, **fields)


@jax.jit
def _gather(stacked: Batch, rows) -> Batch:
    return jax.tree_util.tree_map(lambda leaf: leaf[rows], stacked)


class BatchPlan:
    """All frames of ``dataset`` padded once; yields :class:`Batch` es of ``batch_size`` frames.

    The neighbour lists are computed here, once, with the model's ``cutoff_a``.
    """

    def __init__(self, dataset: Dataset, cutoff_a: float, batch_size: int, dtype=np.float32):
        self.batch_size = batch_size
        lists = [
            build_neighbors(dataset.positions_a[a:b], dataset.cell_a[i], dataset.pbc[i], cutoff_a)
            for i, (a, b) in enumerate(zip(dataset.offsets[:-1], dataset.offsets[1:]))
        ]
        capacity = max((nl.capacity for nl in lists), default=ROW_PADDING)
        n_pad = bucket_sizes(dataset.n_atoms, batch_size)
        self.buckets: dict[int, np.ndarray] = {int(n): np.flatnonzero(n_pad == n) for n in np.unique(n_pad)}
        frames = [_padded_frame(dataset, i, int(n_pad[i]), lists[i], capacity, dtype) for i in range(len(dataset))]
        # each bucket stacked once, with one empty frame as its last row; a batch is a gather of rows
        self._row = np.zeros(len(dataset), int)
        self._stacked: dict[int, Batch] = {}
        for n, indices in self.buckets.items():
            self._row[indices] = np.arange(len(indices))
            members = [frames[i] for i in indices]
            self._stacked[n] = jax.device_put(_stack(members + [_empty_frame(members[0])]))

    def __len__(self) -> int:
        return sum(-(-len(idx) // self.batch_size) for idx in self.buckets.values())

    @property
    def largest_batch(self) -> tuple[int, int, int]:
        """(frames, padded atoms, neighbour capacity) of the largest batch: it sets the memory a step needs."""
        n_pad = max(self.buckets)
        return self.batch_size, n_pad, self._stacked[n_pad].neighbors.index.shape[-1]

    def _batch(self, n_pad: int, indices: np.ndarray) -> Batch:
        rows = np.full(self.batch_size, len(self.buckets[n_pad]))  # the bucket's empty frame
        rows[: len(indices)] = self._row[indices]
        return _gather(self._stacked[n_pad], rows)

    def batches(self, rng: np.random.Generator | None = None) -> Iterator[Batch]:
        """Every frame once; shuffled within buckets and in batch order when ``rng`` is given."""
        for _, batch in self.indexed_batches(rng):
            yield batch

    def indexed_batches(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, Batch]]:
        """As :meth:`batches`, each batch with the data set indices of its frames."""
        chunks = []
        for n_pad, indices in self.buckets.items():
            indices = rng.permutation(indices) if rng is not None else indices
            chunks += [(n_pad, indices[k:k + self.batch_size]) for k in range(0, len(indices), self.batch_size)]
        order = rng.permutation(len(chunks)) if rng is not None else range(len(chunks))
        for k in order:
            yield chunks[k][1], self._batch(*chunks[k])
