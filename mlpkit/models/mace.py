"""A MACE-style model (Batatia et al., NeurIPS 2022): many-body messages from products of equivariant features.

Each atom carries C channels of irreducible features (scalars 0e and vectors 1o). A layer
1. forms the atomic basis A_i = Σ_j R(r_ij) · (h_j ⊗ Y(r̂_ij)) / n̄: the neighbours' features coupled
   to the spherical harmonics of the edge direction (l ≤ 2) with weights from a radial network, the
   sum divided by √n̄ for a typical neighbour count n̄ (so that A starts of order one);
2. takes products of A within each channel: A, A⊗A and (A⊗A)⊗A, so one layer already holds up to
   four-body terms (correlation order 3), as ACE does;
3. mixes those into the next features and adds a linear self-connection.
Every layer's scalars add an energy through a linear readout; the last one through a small MLP.

Everything is polynomial in the edge directions and smooth in the distances (the radial network has
no biases, so it vanishes with the enveloped basis at the cutoff): the energy has no cusp at
high-symmetry structures. Equivariance comes from e3nn-jax's Clebsch–Gordan products.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp

from mlpkit.models.graph import Graph, gather_neighbors, radial_features

EDGE_L = "0e + 1o + 2e"  # spherical harmonics of the edge direction, and the irreps of the atomic basis A
HIDDEN_L = "0e + 1o"  # irreps of each channel of the atom features between layers


SILU = e3nn.normalize_function(nn.silu)  # silu scaled to unit second moment on unit Gaussian input


class RadialWeights(nn.Module):
    """[N, M, B] enveloped radial basis → [N, M, n_weights]; no biases, so zero basis gives zero weights."""

    n_weights: int
    hidden: int = 64

    @nn.compact
    def __call__(self, radial):
        x = SILU(nn.Dense(self.hidden, use_bias=False)(radial))
        x = SILU(nn.Dense(self.hidden, use_bias=False)(x))
        return nn.Dense(self.n_weights, use_bias=False)(x)


def weighted(array: e3nn.IrrepsArray, weights) -> e3nn.IrrepsArray:
    """Multiply every irrep copy of ``array`` [..., irreps] by its own weight [..., num_irreps]."""
    chunks, start = [], 0
    for mul_ir, chunk in zip(array.irreps, array.chunks):
        chunks.append(None if chunk is None else chunk * weights[..., start:start + mul_ir.mul, None])
        start += mul_ir.mul
    return e3nn.from_chunks(array.irreps, chunks, array.shape[:-1], array.dtype)


class MACEInteraction(nn.Module):
    features: int
    average_neighbors: float

    @nn.compact
    def __call__(self, nodes: e3nn.IrrepsArray, edge_sh: e3nn.IrrepsArray, radial, graph: Graph):
        c = self.features
        nodes = e3nn.flax.Linear(nodes.irreps, name="mix_in")(nodes)
        neighbours = e3nn.IrrepsArray(nodes.irreps, gather_neighbors(nodes.array, graph.neighbor_index))  # [N, M, ·]
        messages = e3nn.tensor_product(neighbours, edge_sh, filter_ir_out=EDGE_L)  # [N, M, ·]
        weights = RadialWeights(messages.irreps.num_irreps, name="radial")(radial)
        weights = jnp.where(graph.edge_mask[..., None], weights, 0.0)
        basis = e3nn.sum(weighted(messages, weights), axis=1) / jnp.sqrt(self.average_neighbors)  # [N, ·]
        basis = e3nn.flax.Linear(e3nn.Irreps(EDGE_L) * c, force_irreps_out=True, name="atomic_basis")(basis)
        a = basis.mul_to_axis(c)  # [N, C, 0e + 1o + 2e]: products are taken channel by channel
        a2 = e3nn.tensor_product(a, a, filter_ir_out=EDGE_L)
        a3 = e3nn.tensor_product(a2, a, filter_ir_out=HIDDEN_L)
        products = e3nn.concatenate([a.filter(HIDDEN_L), a2.filter(HIDDEN_L), a3], axis=-1).regroup().axis_to_mul()
        hidden = e3nn.Irreps(HIDDEN_L) * c
        update = e3nn.flax.Linear(hidden, force_irreps_out=True, name="product_mix")(products)
        return update + e3nn.flax.Linear(hidden, force_irreps_out=True, name="self_connection")(nodes)


class MACE(nn.Module):
    """``MACE(...).apply(params, graph)`` → [N] per-atom energies (before the per-element scale/shift)."""

    n_elements: int
    cutoff_a: float
    features: int
    layers: int
    radial_basis: int
    envelope_exponent: int
    average_neighbors: float

    @nn.compact
    def __call__(self, graph: Graph):
        # the Bessel basis is √(2/c)·sin(nπr/c)/r, of order 0.1 Å⁻¹ on bonds; times c it is of order one, so the
        # radial weights, the atomic basis and its products start of order one rather than vanishing with depth
        radial = self.cutoff_a * radial_features(graph, self.cutoff_a, self.radial_basis, self.envelope_exponent)
        units = graph.vectors_a / graph.distances_a[..., None]  # [N, M, 3]
        edge_sh = e3nn.spherical_harmonics(EDGE_L, units, normalize=False, normalization="component")
        embed = nn.Embed(self.n_elements, self.features, embedding_init=nn.initializers.normal(1.0), name="embedding")
        scalars = embed(graph.slot)  # [N, C]
        nodes = e3nn.IrrepsArray(f"{self.features}x0e", scalars)
        energy = jnp.zeros(scalars.shape[0], scalars.dtype)
        for layer in range(self.layers):
            nodes = MACEInteraction(self.features, self.average_neighbors, name=f"interaction_{layer}")(
                nodes, edge_sh, radial, graph)
            invariants = nodes.filter("0e").array  # [N, C]
            if layer < self.layers - 1:
                energy = energy + nn.Dense(1, use_bias=False, name=f"readout_{layer}")(invariants)[:, 0]
            else:
                hidden = nn.silu(nn.Dense(self.features // 2, name="readout_hidden")(invariants))
                energy = energy + nn.Dense(1, name="readout")(hidden)[:, 0]
        return energy
