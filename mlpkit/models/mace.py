"""A MACE-style model (Batatia et al., NeurIPS 2022): many-body messages from products of equivariant features.

Each atom carries C channels of irreducible features (scalars 0e and vectors 1o). A layer
1. forms the atomic basis A_i = Σ_j R(r_ij) Y(r̂_ij) s_j / √n̄: the neighbours' scalar features times the
   spherical harmonics of the edge direction (l ≤ 2) with weights from a radial network, the sum divided
   by √n̄ for a typical neighbour count n̄ (so that A starts of order one);
2. takes products within each channel: A, A⊗A and (A⊗A)⊗A, so one layer already holds up to four-body
   terms (correlation order 3), as ACE does, and A ⊗ h_i with the atom's own scalars and vectors. With
   ``product="symmetric"`` the first three are MACE's symmetric contraction instead: e3nn-jax's reduced basis of
   symmetric powers of A, weighted per element, channel and coupling path, contracted in nested form
   (:func:`symmetric_contraction`; a third of the dense form's FLOPs);
3. mixes those into the next features and adds a linear self-connection. The last layer makes scalars only:
   its readout reads nothing else, so its vector outputs (and the products that fed only them) are not computed.
Messages carry only the neighbours' scalars, which makes the per-edge work an outer product rather than
a Clebsch–Gordan product; vectors still carry directional information
from layer to layer through the atom's own products. Every layer's scalars add an energy through a linear readout; the last one through a small MLP.

Everything is polynomial in the edge directions and smooth in the distances (the radial network has
no biases, so it vanishes with the enveloped basis at the cutoff): the energy has no cusp at
high-symmetry structures. Equivariance comes from e3nn-jax's Clebsch–Gordan products.
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.models.graph import Graph, gather_neighbors, radial_features

EDGE_L = "0e + 1o + 2e"  # spherical harmonics of the edge direction, and the irreps of the atomic basis A
HIDDEN_L = "0e + 1o"  # irreps of each channel of the atom features between layers
LAST_L = "0e"  # of the last layer's features: the readout reads scalars only


@functools.cache
def _silu():
    """silu scaled to unit second moment on unit Gaussian input; made on first use, since computing the scale
    starts a JAX backend, which must not happen at import (``jax.distributed.initialize`` comes first)."""
    with jax.ensure_compile_time_eval():
        return e3nn.normalize_function(nn.silu)


class RadialWeights(nn.Module):
    """[N, M, B] enveloped radial basis → [N, M, n_weights]; no biases, so zero basis gives zero weights."""

    n_weights: int
    hidden: int  # 64 instead of 16: 11 % lower mlearn Ge forces for 9 % more time (benchmarks/RESULTS.md)

    @nn.compact
    def __call__(self, radial):
        x = _silu()(nn.Dense(self.hidden, use_bias=False)(radial))
        return nn.Dense(self.n_weights, use_bias=False)(x)


@functools.lru_cache(maxsize=None)
def _coupling(irreps_1: str, irreps_2: str, irreps_out: str) -> tuple[np.ndarray, e3nn.Irreps]:
    """The Clebsch–Gordan products of two irreps arrays as one dense [d1, d2, d_out] tensor, and its irreps.

    e3nn's ``tensor_product`` is bilinear, so its value on pairs of unit vectors is that tensor; one einsum
    with it is several times faster on a CPU than e3nn's path-by-path products (and their derivatives).
    """
    with jax.ensure_compile_time_eval():  # a constant, also when first asked for inside a trace (jax.eval_shape)
        first = e3nn.IrrepsArray(irreps_1, np.eye(e3nn.Irreps(irreps_1).dim))[:, None]
        second = e3nn.IrrepsArray(irreps_2, np.eye(e3nn.Irreps(irreps_2).dim))[None, :]
        product = e3nn.tensor_product(first, second, filter_ir_out=irreps_out)
        return np.asarray(product.array), product.irreps


def coupled(x: e3nn.IrrepsArray, y: e3nn.IrrepsArray, irreps_out: str) -> e3nn.IrrepsArray:
    """Channel-wise ``e3nn.tensor_product(x, y, filter_ir_out=irreps_out)`` of [N, C, ·] arrays, as one einsum."""
    tensor, irreps = _coupling(str(x.irreps), str(y.irreps), irreps_out)
    return e3nn.IrrepsArray(irreps, jnp.einsum("nci,ncj,ijk->nck", x.array, y.array, tensor.astype(x.dtype)))


def _path_degrees(irreps: e3nn.Irreps, dtype) -> np.ndarray:
    """[P, dim] 0/1 matrix from each of the P irreps instances of ``irreps`` to its components."""
    sizes = [ir.dim for mul, ir in irreps for _ in range(mul)]
    return np.repeat(np.eye(len(sizes)), sizes, axis=1).astype(dtype)


CORRELATION = 3  # the highest power of A in a product: four-body terms per layer


@functools.lru_cache(maxsize=None)
def symmetric_basis(irreps_in: str, irreps_out: str, order: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """e3nn-jax's reduced basis of symmetric order-ν products of ``irreps_in`` for ν = 1 … ``order``, split by
    output irrep: ``basis[ν - 1][k]`` is [d]*ν + [paths, 2l + 1] for the k-th irrep of ``irreps_out`` (paths:
    the independent ways ν copies of A couple to it; zero paths where none do)."""
    with jax.ensure_compile_time_eval():
        per_order = []
        for nu in range(1, order + 1):
            full = e3nn.reduced_symmetric_tensor_product_basis(e3nn.Irreps(irreps_in), nu, keep_ir=e3nn.Irreps(irreps_out))
            blocks = []
            for _, ir in e3nn.Irreps(irreps_out):
                block = full.filter(keep=[ir])
                paths = block.irreps.count(ir)
                blocks.append(np.asarray(block.array).reshape(block.shape[:-1] + (paths, ir.dim)))
            per_order.append(tuple(blocks))
        return tuple(per_order)


def symmetric_contraction(a, weights: list[list[jnp.ndarray]], slot, irreps_in: str, irreps_out: str):
    """MACE's product B[n, c] = Σ_ν Σ_p w[z_n, c, ν, p] U_νp · A[n, c]^⊗ν for every irrep of ``irreps_out``,
    contracted in nested form: (((c₃·A + c₂)·A + c₁)·A) with c_ν = Σ_p w_νp U_νp made per element, so the
    order-3 tensor meets A once per atom rather than A⊗A⊗A being formed. ``a``: [N, C, d]; ``weights[ν - 1][k]``:
    [elements, C, paths] for the k-th output irrep; ``slot``: [N] element rows. Returns [N, C, irreps_out.dim]."""
    basis = symmetric_basis(irreps_in, irreps_out, len(weights))
    n_elements = weights[0][0].shape[0]
    one_hot = jax.nn.one_hot(slot, n_elements, dtype=a.dtype)  # [N, elements]
    outputs = []
    for k in range(len(e3nn.Irreps(irreps_out))):
        total = 0.0
        for element in range(n_elements):
            t = None
            for nu in range(len(weights), 0, -1):  # c₃ first, then down to c₁
                c = jnp.einsum("...pm,cp->c...m", basis[nu - 1][k].astype(a.dtype), weights[nu - 1][k][element])
                t = jnp.einsum("c...im,nci->nc...m", c, a) if t is None else jnp.einsum("nc...im,nci->nc...m", t + c, a)
            total = total + one_hot[:, element, None, None] * t  # [N, C, 2l + 1]
        outputs.append(total)
    return jnp.concatenate(outputs, axis=-1)


class MACEInteraction(nn.Module):
    features: int
    average_neighbors: float
    radial_hidden: int
    vector_messages: bool
    n_elements: int
    product: str  # "dense": A, A⊗A, (A⊗A)⊗A mixed by one Linear; "symmetric": MACE's contraction (see above)
    output_irreps: str = HIDDEN_L  # of each channel of the new features; the last layer's: "0e"

    @nn.compact
    def __call__(self, nodes: e3nn.IrrepsArray, edge_sh: e3nn.IrrepsArray, radial, graph: Graph):
        c = self.features
        sh = e3nn.Irreps(EDGE_L)
        # the atomic basis: A[i, c, lm] = Σ_j R_cl(r_ij) Y_lm(r̂_ij) s_jc / √n̄ from the neighbours' scalars s_j
        # (an outer product per edge; the atom's own vectors enter below, at the atom, where they are cheap)
        scalars = nn.Dense(c, use_bias=False, name="mix_in")(nodes.filter("0e").array)  # [N, C]
        weights = self.edge_weights(len(sh), radial, graph, "radial")  # [N, M, C, L]
        neighbours = gather_neighbors(scalars, graph.neighbor_index)  # [N, M, C]
        basis = jnp.einsum("nmc,nmcl,nmk,lk->nck", neighbours, weights, edge_sh.array, _path_degrees(sh, weights.dtype))
        a = e3nn.IrrepsArray(sh, basis / jnp.sqrt(self.average_neighbors))  # [N, C, 0e + 1o + 2e]
        if self.vector_messages and nodes.filter("1o").irreps.dim:
            a = e3nn.concatenate([a, self.vector_basis(nodes, edge_sh, radial, graph)], axis=-1).regroup()
        a = e3nn.flax.Linear(sh, channel_out=c, name="atomic_basis")(a)
        # products within each channel: A, A⊗A, (A⊗A)⊗A (up to four-body), and A ⊗ the atom's own features
        own = nodes.mul_to_axis(c)  # [N, C, irreps of one channel]
        out = self.output_irreps
        if self.product == "symmetric":
            weights = [[self.param(f"symmetric_{nu}_{ir}", nn.initializers.normal(1.0 / max(1, block.shape[-2])),
                                   (self.n_elements, c, block.shape[-2]))
                        for (_, ir), block in zip(e3nn.Irreps(out), blocks)]
                       for nu, blocks in enumerate(symmetric_basis(EDGE_L, out, CORRELATION), start=1)]
            b = e3nn.IrrepsArray(out, symmetric_contraction(a.array, weights, graph.slot, EDGE_L, out))
            products = e3nn.concatenate([b, coupled(a, own, out)], axis=-1)
        else:
            a2 = coupled(a, a, EDGE_L)
            a3 = coupled(a2, a, out)
            products = e3nn.concatenate([a.filter(out), a2.filter(out), a3, coupled(a, own, out)], axis=-1)
        hidden = e3nn.Irreps(out) * c
        update = e3nn.flax.Linear(hidden, force_irreps_out=True, name="product_mix")(products.regroup().axis_to_mul())
        return update + e3nn.flax.Linear(hidden, force_irreps_out=True, name="self_connection")(nodes)

    def edge_weights(self, n_paths: int, radial, graph: Graph, name: str):
        """[N, M, C, n_paths] radial weights per channel and coupling path, zero on padding edges."""
        weights = RadialWeights(self.features * n_paths, self.radial_hidden, name=name)(radial)
        weights = weights.reshape(radial.shape[:2] + (self.features, n_paths))
        return jnp.where(graph.edge_mask[..., None, None], weights, 0.0)

    def vector_basis(self, nodes: e3nn.IrrepsArray, edge_sh: e3nn.IrrepsArray, radial, graph: Graph):
        """[N, C, ·] the neighbours' vectors v_j coupled to the edge harmonics, Σ_j R_cp(r_ij) (v_jc ⊗ Y(r̂_ij))_p / √n̄,
        one radial weight per coupling path p (MACE's full message; the scalar part is the atomic basis above)."""
        c = self.features
        vectors = e3nn.flax.Linear("1o", channel_out=c, name="mix_in_vectors")(nodes.filter("1o").mul_to_axis(c))
        tensor, irreps = _coupling("1o", EDGE_L, EDGE_L)  # [3, Σ(2l+1), K]: 1o⊗0e → 1o, 1o⊗1o → 0e + 2e, 1o⊗2e → 1o
        degrees = _path_degrees(irreps, vectors.dtype)  # [P, K]
        weights = self.edge_weights(len(degrees), radial, graph, "radial_vectors")  # [N, M, C, P]
        neighbours = gather_neighbors(vectors.array, graph.neighbor_index)  # [N, M, C, 3]
        basis = jnp.einsum("nmci,nmj,ijk,nmcp,pk->nck", neighbours, edge_sh.array, tensor.astype(vectors.dtype),
                           weights, degrees)
        return e3nn.IrrepsArray(irreps, basis / jnp.sqrt(self.average_neighbors))


class MACE(nn.Module):
    """``MACE(...).apply(params, graph)`` → [N] per-atom energies (before the per-element scale/shift)."""

    n_elements: int
    cutoff_a: float
    features: int
    layers: int
    radial_basis: int
    envelope_exponent: int
    average_neighbors: float
    radial_hidden: int
    vector_messages: bool
    product: str = "dense"

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
            last = layer == self.layers - 1
            interaction = MACEInteraction(
                self.features, self.average_neighbors, self.radial_hidden, self.vector_messages, self.n_elements,
                self.product, output_irreps=LAST_L if last else HIDDEN_L, name=f"interaction_{layer}")
            nodes = interaction(nodes, edge_sh, radial, graph)
            invariants = nodes.filter("0e").array  # [N, C]
            if not last:
                energy = energy + nn.Dense(1, use_bias=False, name=f"readout_{layer}")(invariants)[:, 0]
            else:
                self.sow("intermediates", "atom_features", invariants)  # read by models.energy.atom_features_fn
                hidden = nn.silu(nn.Dense(self.features // 2, name="readout_hidden")(invariants))
                energy = energy + nn.Dense(1, name="readout")(hidden)[:, 0]
        return energy
