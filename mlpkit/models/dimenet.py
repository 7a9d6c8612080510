"""DimeNet++ (Gasteiger et al. 2020): directional message passing over edges with angular (triplet) terms.

Messages live on edges: m[i, a] carries information from neighbour j = index[i, a] to atom i.
Each interaction updates it from the messages m[j, b] arriving at j from its neighbours k ≠ i,
weighted by a basis of the distance r_jk and the angle ∠(i, j, k). The angular basis here is
Legendre polynomials P_l(cos θ) times the radial Bessel basis of r_jk, a separable stand-in for
DimeNet's spherical Bessel × spherical harmonic basis with the same symmetry and smoothness.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mlpkit.models.graph import Graph, gather_neighbors, radial_features
from mlpkit.neighbors import EXACT

BACKTRACK_A2 = 1e-2  # |r_jk + r_ij|² below this means k is atom i itself (the same periodic image)


def legendre(cosines, n_orders: int):
    """[..., n_orders] Legendre polynomials P_0 … P_{n−1} of ``cosines``."""
    orders = [jnp.ones_like(cosines), cosines]
    for ell in range(1, n_orders - 1):
        orders.append(((2 * ell + 1) * cosines * orders[ell] - ell * orders[ell - 1]) / (ell + 1))
    return jnp.stack(orders[:n_orders], axis=-1)


def angular_features(graph: Graph, radial, n_orders: int):
    """[N, M, M, n_orders · R] basis of each triplet (edge i→j = (i, a), edge j→k = (j, b)), zero when masked."""
    to_j = graph.vectors_a  # [N, M, 3]
    j_to_k = gather_neighbors(graph.vectors_a, graph.neighbor_index)  # [N, M, M, 3]
    cosines = -jnp.einsum("nax,nabx->nab", to_j, j_to_k, precision=EXACT) / (
        graph.distances_a[..., None] * gather_neighbors(graph.distances_a, graph.neighbor_index)
    )
    backtrack = jnp.sum((j_to_k + to_j[:, :, None, :]) ** 2, axis=-1) < BACKTRACK_A2
    mask = graph.edge_mask[..., None] & gather_neighbors(graph.edge_mask, graph.neighbor_index) & ~backtrack  # [N, M, M]
    basis = legendre(jnp.clip(cosines, -1.0, 1.0), n_orders)[..., :, None] * gather_neighbors(radial, graph.neighbor_index)[..., None, :]
    basis = basis.reshape(*mask.shape, -1)
    return jnp.where(mask[..., None], basis, 0.0)


class Residual(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return x + nn.silu(nn.Dense(self.features)(nn.silu(nn.Dense(self.features)(x))))


class Interaction(nn.Module):
    features: int
    triplet_features: int
    basis_features: int

    @nn.compact
    def __call__(self, messages, radial, angular, graph: Graph):
        f, t, b = self.features, self.triplet_features, self.basis_features
        own = nn.silu(nn.Dense(f)(messages))  # [N, M, F]
        incoming = nn.silu(nn.Dense(f)(messages)) * nn.Dense(f, use_bias=False)(nn.Dense(b, use_bias=False)(radial))
        incoming = nn.silu(nn.Dense(t)(incoming))  # [N, M, T], down-projected before the triplet sum
        weights = nn.Dense(t, use_bias=False)(nn.Dense(b, use_bias=False)(angular))  # [N, M, M, T]
        gathered = jnp.sum(gather_neighbors(incoming, graph.neighbor_index) * weights, axis=2)  # [N, M, T]
        update = own + nn.silu(nn.Dense(f)(gathered))
        update = Residual(f)(update)
        update = messages + nn.silu(nn.Dense(f)(update))
        update = Residual(f)(Residual(f)(update))
        return jnp.where(graph.edge_mask[..., None], update, 0.0)


class Output(nn.Module):
    features: int

    @nn.compact
    def __call__(self, messages, radial, graph: Graph):
        per_edge = nn.Dense(self.features, use_bias=False)(radial) * messages  # zero on masked edges
        atoms = nn.Dense(self.features)(per_edge.sum(axis=1))  # [N, F]
        for _ in range(2):
            atoms = nn.silu(nn.Dense(self.features)(atoms))
        return nn.Dense(1, use_bias=False, kernel_init=nn.initializers.zeros)(atoms)[:, 0]


class DimeNetPP(nn.Module):
    """``DimeNetPP(...).apply(params, graph)`` → [N] per-atom energies (before the per-element scale/shift).

    Built by :func:`mlpkit.models.build_model` from a :class:`~mlpkit.models.ModelConfig`, which holds the defaults.
    """

    n_elements: int
    cutoff_a: float
    features: int
    layers: int
    radial_basis: int
    angular_basis: int
    triplet_features: int
    basis_features: int
    envelope_exponent: int

    @nn.compact
    def __call__(self, graph: Graph):
        radial = radial_features(graph, self.cutoff_a, self.radial_basis, self.envelope_exponent)  # [N, M, R]
        angular = angular_features(graph, radial, self.angular_basis)  # [N, M, M, L·R]
        atoms = nn.Embed(self.n_elements, self.features, name="embedding")(graph.slot)  # [N, F]
        pair = jnp.concatenate(
            [
                jnp.broadcast_to(atoms[:, None, :], (*graph.edge_mask.shape, self.features)),
                gather_neighbors(atoms, graph.neighbor_index),
                nn.silu(nn.Dense(self.features, name="embedding_radial")(radial)),
            ],
            axis=-1,
        )
        messages = nn.silu(nn.Dense(self.features, name="embedding_edges")(pair))
        messages = jnp.where(graph.edge_mask[..., None], messages, 0.0)
        energy = Output(self.features, name="readout_0")(messages, radial, graph)
        for layer in range(self.layers):
            interaction = Interaction(self.features, self.triplet_features, self.basis_features, name=f"interaction_{layer}")
            messages = interaction(messages, radial, angular, graph)
            energy = energy + Output(self.features, name=f"readout_{layer + 1}")(messages, radial, graph)
        self.sow("intermediates", "atom_features", messages.sum(axis=1))  # read by models.energy.atom_features_fn
        return energy
