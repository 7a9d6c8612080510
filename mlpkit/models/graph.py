"""The graph every model reads: edges within the cutoff, an element table, radial basis and envelope.

A structure enters a model as a :class:`Graph` built from the shared dense neighbour list
(:mod:`mlpkit.neighbors`). Padding is explicit: padded atoms carry atomic number 0 and no edges,
padded edges are masked, so structures of different sizes batch into one compiled shape.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from mlpkit.elements import PADDING_SPECIES, check_elements, unknown_elements
from mlpkit.errors import MlpkitError
from mlpkit.neighbors import Neighbors, edge_vectors, safe_norm


@dataclasses.dataclass(frozen=True)
class ElementTable:
    """The elements a model knows, in the order of its embedding rows.

    Remapping keeps the rows and renames them: ``ElementTable(("Si",)).remapped({"Si": "Ge"})`` lets a
    silicon model start a germanium one, the embedding learnt for Si becoming the one for Ge.
    """

    symbols: tuple[str, ...]

    def __post_init__(self):
        symbols = all(isinstance(s, str) for s in self.symbols) and not unknown_elements(self.symbols)
        if not symbols or not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise MlpkitError(f"an element table needs distinct chemical symbols, got {list(self.symbols)}")

    @classmethod
    def from_species(cls, species) -> ElementTable:
        return cls(tuple(chemical_symbols[z] for z in np.unique(species) if z != PADDING_SPECIES))

    def __len__(self) -> int:
        return len(self.symbols)

    def remapped(self, mapping: dict[str, str]) -> ElementTable:
        return ElementTable(tuple(mapping.get(s, s) for s in self.symbols))

    @property
    def numbers(self) -> tuple[int, ...]:
        """The atomic numbers of the elements, in table order."""
        return tuple(atomic_numbers[s] for s in self.symbols)

    def slot_lookup(self) -> np.ndarray:
        """[119] int32: embedding row of each atomic number, −1 for padding and unknown elements."""
        lookup = np.full(len(chemical_symbols), -1, np.int32)
        lookup[list(self.numbers)] = np.arange(len(self.symbols), dtype=np.int32)
        return lookup

    def check(self, species, where: str = "the structure") -> None:
        """Raise a clear error if ``species`` (atomic numbers) holds elements outside the table."""
        check_elements(species, self.symbols, where, "the model")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["vectors_a", "distances_a", "edge_mask", "neighbor_index", "slot", "atom_mask"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Graph:
    """One structure of N atoms (padded) with up to M edges per atom.

    vectors_a: [N, M, 3] Å from atom i to its neighbour; distances_a: [N, M] Å (1 on masked edges);
    edge_mask: [N, M] bool, real edges shorter than the cutoff; neighbor_index: [N, M] int32;
    slot: [N] int32 embedding row (0 on padding); atom_mask: [N] bool, real atoms.
    """

    vectors_a: jax.Array
    distances_a: jax.Array
    edge_mask: jax.Array
    neighbor_index: jax.Array
    slot: jax.Array
    atom_mask: jax.Array


def build_graph(positions_a, cell_a, species, neighbors: Neighbors, slot_lookup, cutoff_a: float) -> Graph:
    """Graph of one structure; edges of the list beyond ``cutoff_a`` (an MD skin) are masked out."""
    slot = jnp.asarray(slot_lookup)[species]  # [N]
    atom_mask = slot >= 0
    vectors = edge_vectors(positions_a, cell_a, neighbors)  # [N, M, 3]
    listed = neighbors.mask & atom_mask[:, None]
    distances = safe_norm(vectors, listed)
    edge_mask = listed & (distances < cutoff_a)
    return Graph(
        vectors_a=vectors,
        distances_a=jnp.where(edge_mask, distances, 1.0),
        edge_mask=edge_mask,
        neighbor_index=neighbors.index,
        slot=jnp.maximum(slot, 0),
        atom_mask=atom_mask,
    )


def gather_neighbors(features, neighbor_index):
    """[N, ...] per-atom ``features`` → [N, M, ...] at each atom's neighbours (indices are always valid)."""
    return features.at[neighbor_index].get(mode="promise_in_bounds")


def polynomial_envelope(scaled_distance, exponent: int = 6):
    """Smooth cutoff u(x), x = r / r_c: u(0) = 1, u(1) = 0 with vanishing first and second derivatives."""
    p = exponent
    x = scaled_distance
    value = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return jnp.where(x < 1.0, value, 0.0)


def bessel_basis(distances_a, cutoff_a: float, n_basis: int):
    """[..., n_basis] radial Bessel functions √(2/c) sin(nπr/c) / r, n = 1 … n_basis."""
    n = jnp.arange(1, n_basis + 1, dtype=distances_a.dtype)
    r = distances_a[..., None]
    return jnp.sqrt(2.0 / cutoff_a) * jnp.sin(n * jnp.pi * r / cutoff_a) / r


def radial_features(graph: Graph, cutoff_a: float, n_basis: int, envelope_exponent: int):
    """[N, M, n_basis] enveloped Bessel basis of every edge, zero on masked edges."""
    envelope = polynomial_envelope(graph.distances_a / cutoff_a, envelope_exponent)
    basis = bessel_basis(graph.distances_a, cutoff_a, n_basis) * envelope[..., None]
    return jnp.where(graph.edge_mask[..., None], basis, 0.0)
