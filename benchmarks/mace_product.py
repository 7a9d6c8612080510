"""MACE's channel-wise Clebsch–Gordan products: the dense contraction mlpkit uses against a sparse one.

    python benchmarks/mace_product.py [--channels 32 64] [--atoms 64] [--repeats 20] [--smoke]

mlpkit computes A⊗A and (A⊗A)⊗A as one einsum with a dense coupling tensor (``mlpkit.models.mace.coupled``);
the tensors are 1–3 % non-zero. The sparse form here gathers, for each output component, the few input pairs
with a non-zero coefficient (padded to the largest count) and sums them: the same numbers with a fraction of
the floating-point operations. Each row times value and gradient (the shape of an energy + forces pass) of one
product on ``atoms`` × ``channels`` features, and gives XLA's FLOP count of both programs.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.models.mace import EDGE_L, HIDDEN_L, _coupling
from models import compiled_flops
from sw_energy_forces import cpu_name, timed


@functools.lru_cache(maxsize=None)
def sparse_terms(irreps_1: str, irreps_2: str, irreps_out: str):
    """[K, T] indices into the two inputs and coefficients: output k is Σ_t v[k, t] x[i[k, t]] y[j[k, t]]."""
    tensor, _ = _coupling(irreps_1, irreps_2, irreps_out)
    nonzero = tensor != 0
    width = int(nonzero.reshape(-1, tensor.shape[-1]).sum(0).max())
    first, second = np.zeros((2, tensor.shape[-1], width), np.int32)
    values = np.zeros((tensor.shape[-1], width))
    for k in range(tensor.shape[-1]):
        i, j = np.nonzero(nonzero[:, :, k])
        first[k, :len(i)], second[k, :len(i)], values[k, :len(i)] = i, j, tensor[i, j, k]
    return first, second, values


def dense_product(tensor):
    return lambda x, y: jnp.einsum("nci,ncj,ijk->nck", x, y, tensor)


def sparse_product(first, second, values):
    return lambda x, y: jnp.einsum("nckt,kt->nck", x[..., first] * y[..., second], values)


def measure(product, x, y, repeats: int):
    """(ms, MFLOP, value) of value and gradient of Σ product(x, y)² with respect to both inputs."""
    compiled = jax.jit(jax.value_and_grad(lambda x, y: jnp.sum(product(x, y) ** 2), argnums=(0, 1))).lower(x, y).compile()
    return timed(lambda: compiled(x, y), repeats)[0], compiled_flops(compiled) / 1e6, compiled(x, y)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64], help="32: the quick MACE; 64: the default")
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="8 channels, 3 repeats: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.channels, args.repeats = [8], 3
    a2_irreps = str(_coupling(EDGE_L, EDGE_L, EDGE_L)[1])
    products = {"A⊗A": (EDGE_L, EDGE_L, EDGE_L), "(A⊗A)⊗A": (a2_irreps, EDGE_L, HIDDEN_L)}
    print(f"# {cpu_name()}, {jax.devices()[0].platform}, jax {jax.__version__}; {args.atoms} atoms, value and gradient, median of {args.repeats}")
    print("| product | channels | non-zero / entries | dense ms | sparse ms | sparse ÷ dense time | dense MFLOP | sparse MFLOP "
          "| sparse ÷ dense FLOP | max difference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for channels in args.channels:
        for name, irreps in products.items():
            tensor, _ = _coupling(*irreps)
            x = jnp.asarray(rng.normal(size=(args.atoms, channels, tensor.shape[0])), jnp.float32)
            y = jnp.asarray(rng.normal(size=(args.atoms, channels, tensor.shape[1])), jnp.float32)
            dense_ms, dense_mflop, (_, dense_grads) = measure(dense_product(jnp.float32(tensor)), x, y, args.repeats)
            first, second, values = sparse_terms(*irreps)
            sparse_ms, sparse_mflop, (_, sparse_grads) = measure(
                sparse_product(first, second, jnp.float32(values)), x, y, args.repeats)
            difference = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(dense_grads, sparse_grads))
            print(f"| {name} | {channels} | {int(np.count_nonzero(tensor))} / {tensor.size} | {dense_ms:.2f} | {sparse_ms:.2f} "
                  f"| {sparse_ms / dense_ms:.2f} | {dense_mflop:.1f} | {sparse_mflop:.1f} | {sparse_mflop / dense_mflop:.2f} "
                  f"| {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
