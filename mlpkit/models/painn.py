"""PaiNN (Schütt, Unke & Gastegger, ICML 2021): equivariant message passing with scalar and vector features.

Each atom carries scalars s [F] and vectors v [3, F]. Messages mix the neighbour's features with
the edge's radial basis and unit vector; updates couple the vector norms back into the scalars.
Rotating the input rotates v and leaves s, hence the energy, unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mlpkit.models.graph import Graph, gather_neighbors, radial_features



def smooth_norm(vectors, axis: int):
    """√(|v|² + 1) − 1: grows like |v| for large vectors and like |v|²/2 near zero.

    A plain norm (even √(|v|² + ε)) has a cusp at v = 0, which is where a vector feature sits at any
    site whose neighbour directions cancel (every atom of a perfect crystal): the restoring force on a
    displaced atom would then fall like √h rather than h, and phonons, elastic constants and
    relaxations would inherit the cusp. This invariant is smooth everywhere.
    """
    return jnp.sqrt(jnp.sum(vectors**2, axis=axis) + 1.0) - 1.0


class PaiNNMessage(nn.Module):
    features: int

    @nn.compact
    def __call__(self, scalars, vectors, radial, graph: Graph):
        f = self.features
        context = nn.Dense(3 * f)(nn.silu(nn.Dense(f)(scalars)))  # [N, 3F]
        # no bias: the enveloped basis, hence the filter, goes smoothly to zero at the cutoff
        filters = jnp.where(graph.edge_mask[..., None], nn.Dense(3 * f, use_bias=False)(radial), 0.0)  # [N, M, 3F]
        mixed = gather_neighbors(context, graph.neighbor_index) * filters  # [N, M, 3F]
        d_scalar, gate_vector, gate_direction = jnp.split(mixed, 3, axis=-1)
        units = graph.vectors_a / graph.distances_a[..., None]  # [N, M, 3]
        d_vectors = (
            gather_neighbors(vectors, graph.neighbor_index) * gate_vector[:, :, None, :]
            + units[..., None] * gate_direction[:, :, None, :]
        )  # [N, M, 3, F]
        return scalars + d_scalar.sum(axis=1), vectors + d_vectors.sum(axis=1)


class PaiNNUpdate(nn.Module):
    features: int

    @nn.compact
    def __call__(self, scalars, vectors):
        f = self.features
        u = nn.Dense(f, use_bias=False)(vectors)  # [N, 3, F]
        v = nn.Dense(f, use_bias=False)(vectors)
        v_norm = smooth_norm(v, axis=1)  # [N, F]
        gates = nn.Dense(3 * f)(nn.silu(nn.Dense(f)(jnp.concatenate([scalars, v_norm], axis=-1))))
        gate_vv, gate_sv, gate_ss = jnp.split(gates, 3, axis=-1)
        return (
            scalars + gate_sv * jnp.sum(u * v, axis=1) + gate_ss,
            vectors + gate_vv[:, None, :] * u,
        )


class PaiNN(nn.Module):
    """``PaiNN(...).apply(params, graph)`` → [N] per-atom energies (before the per-element scale/shift).

    Built by :func:`mlpkit.models.build_model` from a :class:`~mlpkit.models.ModelConfig`, which holds the defaults.
    """

    n_elements: int
    cutoff_a: float
    features: int
    layers: int
    radial_basis: int
    envelope_exponent: int

    @nn.compact
    def __call__(self, graph: Graph):
        n_atoms = graph.slot.shape[0]
        radial = radial_features(graph, self.cutoff_a, self.radial_basis, self.envelope_exponent)
        scalars = nn.Embed(self.n_elements, self.features, name="embedding")(graph.slot)  # [N, F]
        vectors = jnp.zeros((n_atoms, 3, self.features), scalars.dtype)
        for layer in range(self.layers):
            scalars, vectors = PaiNNMessage(self.features, name=f"message_{layer}")(scalars, vectors, radial, graph)
            scalars, vectors = PaiNNUpdate(self.features, name=f"update_{layer}")(scalars, vectors)
        self.sow("intermediates", "atom_features", scalars)  # read by models.energy.atom_features_fn
        hidden = nn.silu(nn.Dense(self.features // 2, name="readout_hidden")(scalars))
        return nn.Dense(1, name="readout")(hidden)[:, 0]
