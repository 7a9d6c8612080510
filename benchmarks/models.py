"""Model speed: mlpkit's PaiNN and DimeNet++ against a SchNet-like Flax model and jax-md's NequIP, in one run.

    python benchmarks/models.py [--repeats 10] [--smoke]

For each model: energy + forces on one rattled 64-atom Si cell (time, and XLA's own count of its floating-point
operations), and one Adam step on a batch of 8 such cells with an energy + force loss. float32, jit-compiled,
warmed up; medians (min–max) of ``--repeats`` calls. The SchNet-like baseline (3 interactions, 64 features,
5 Å) is defined below on mlpkit's graph; NequIP-small is jax-md's (benchmarks/jaxmd_nequip.py).
"""

from __future__ import annotations

import argparse
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlpkit.models import ModelConfig, init_params, parameter_count
from mlpkit.models.energy import Normalisation, member_energy_fn
from mlpkit.models.graph import ElementTable, build_graph, gather_neighbors, radial_features
from mlpkit.neighbors import build_neighbors
from mlpkit.structures import diamond, rattled
from sw_energy_forces import cpu_name, timed

BATCH = 8
SCHNET_CUTOFF_A = 5.0


class SchNetLike(nn.Module):
    """Continuous-filter convolutions (Schütt et al. 2018): the simple baseline every MLP is compared with."""

    features: int = 64
    layers: int = 3

    @nn.compact
    def __call__(self, graph):
        radial = radial_features(graph, SCHNET_CUTOFF_A, 16, 6)
        x = nn.Embed(1, self.features)(graph.slot)
        for _ in range(self.layers):
            filters = nn.Dense(self.features, use_bias=False)(nn.silu(nn.Dense(self.features, use_bias=False)(radial)))
            filters = jnp.where(graph.edge_mask[..., None], filters, 0.0)  # zero at the cutoff, like the envelope
            message = jnp.sum(gather_neighbors(nn.Dense(self.features)(x), graph.neighbor_index) * filters, axis=1)
            x = x + nn.Dense(self.features)(nn.silu(nn.Dense(self.features)(message)))
        # small readout weights: untrained energies of a fitted model's scale (tenths of an eV per atom)
        return nn.Dense(1, kernel_init=nn.initializers.normal(0.01))(nn.silu(nn.Dense(self.features // 2)(x)))[:, 0]


def mlpkit_model(config: ModelConfig, atoms):
    table = ElementTable(("Si",))
    energy = member_energy_fn(config, table, Normalisation((-4.3,), (1.0,)))
    neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, config.cutoff_a)
    cell = np.float32(atoms.cell.array)
    return (lambda params, positions: energy(params, positions, cell, atoms.numbers, neighbors)), init_params(config, 1, 0)


def schnet_energy(atoms):
    """``(energy(params, positions, cell, species, neighbors), params)`` of an untrained SchNet-like model,
    mlpkit's energy-function signature, so MD runs it as a ``Potential`` (``md.py``)."""
    model = SchNetLike()
    lookup = ElementTable(("Si",)).slot_lookup()

    def energy(params, positions, cell, species, neighbors):
        return jnp.sum(model.apply(params, build_graph(positions, cell, species, neighbors, lookup, SCHNET_CUTOFF_A)))

    cell = np.float32(atoms.cell.array)
    neighbors = build_neighbors(atoms.positions, cell, atoms.pbc, SCHNET_CUTOFF_A)
    graph = build_graph(np.float32(atoms.positions), cell, atoms.numbers, neighbors, lookup, SCHNET_CUTOFF_A)
    return energy, model.init(jax.random.PRNGKey(0), graph)


def schnet_model(atoms):
    energy, params = schnet_energy(atoms)
    neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, SCHNET_CUTOFF_A)
    cell = np.float32(atoms.cell.array)
    return (lambda params, positions: energy(params, positions, cell, atoms.numbers, neighbors)), params


def nequip_model(atoms):
    from jaxmd_nequip import nequip_small

    energy, params, neighbor, _ = nequip_small(atoms)
    return (lambda params, positions: energy(params, positions, neighbor)), params


def time_model(energy, params, atoms, repeats: int):
    positions = np.float32(atoms.positions)
    forces = jax.jit(jax.value_and_grad(energy, argnums=1)).lower(params, positions).compile()  # compiled once
    batch = np.stack([np.float32(rattled(atoms, 0.05, seed).positions) for seed in range(BATCH)])
    reference_forces = np.zeros_like(batch)
    optimizer = optax.adam(1e-3)

    def loss(params, batch):
        energies, gradients = jax.vmap(jax.value_and_grad(energy, argnums=1), in_axes=(None, 0))(params, batch)
        return jnp.mean((energies / len(atoms)) ** 2) + jnp.mean((-gradients - reference_forces) ** 2)

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(loss)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    step = step.lower(params, state, batch).compile()  # compiled once, for its memory and its timing
    memory = step.memory_analysis()
    memory_mib = (memory.temp_size_in_bytes + memory.output_size_in_bytes) / 2**20 if memory else float("nan")
    return (timed(lambda: forces(params, positions), repeats), timed(lambda: step(params, state, batch), max(5, repeats // 2)),
            memory_mib, compiled_flops(forces))


def compiled_flops(compiled) -> float:
    """Floating-point operations of one call of a compiled program by XLA's cost analysis (NaN where it gives none)."""
    costs = compiled.cost_analysis()
    costs = costs[0] if isinstance(costs, list) else costs  # a list of one dict in older jax
    return float((costs or {}).get("flops", float("nan")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="quick models, 2 repeats, no peers: checks the script runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*float64.*")
    atoms = rattled(diamond("Si", (2, 2, 2)), 0.05, seed=0)
    candidates = {  # the baseline first: each row is printed, with its ratios, as soon as it is measured
        "SchNet-like (baseline)": lambda: schnet_model(atoms),
        "mlpkit PaiNN": lambda: mlpkit_model(ModelConfig("painn"), atoms),
        "mlpkit DimeNet++": lambda: mlpkit_model(ModelConfig("dimenet++"), atoms),
        "mlpkit MACE": lambda: mlpkit_model(ModelConfig("mace"), atoms),
        "mlpkit MACE (quick: the study's)": lambda: mlpkit_model(ModelConfig("mace").quick(), atoms),
        "mlpkit MACE (quick, symmetric contraction)": lambda: mlpkit_model(ModelConfig("mace", product="symmetric").quick(), atoms),
        "jax-md NequIP small (peer)": lambda: nequip_model(atoms),
    }
    if args.smoke:
        args.repeats = 2
        candidates = {
            "mlpkit PaiNN (quick)": lambda: mlpkit_model(ModelConfig("painn").quick(), atoms),
            "mlpkit MACE (quick)": lambda: mlpkit_model(ModelConfig("mace").quick(), atoms),
            "mlpkit MACE (quick, symmetric contraction)": lambda: mlpkit_model(ModelConfig("mace", product="symmetric").quick(), atoms),
        }
    print(f"# {cpu_name()}, {jax.devices()[0].platform}, jax {jax.__version__}; 64 Si atoms, Adam batch {BATCH}")
    baseline = None
    for name, build in candidates.items():
        energy, params = build()
        (ef, ef_lo, ef_hi), (step, step_lo, step_hi), memory_mib, flops = time_model(energy, params, atoms, args.repeats)
        if baseline is None:
            baseline = (name, ef, step, memory_mib)
            print(f"| model | parameters | E+F ms (min–max) | E+F µs per atom | × {name} | Adam step ms (min–max) "
                  f"| × {name} | Adam step memory MiB | × {name} | E+F MFLOP (XLA) |")
            print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {name} | {parameter_count(params):,} | {ef:.2f} ({ef_lo:.2f}–{ef_hi:.2f}) | {ef * 1e3 / len(atoms):.1f} "
              f"| {ef / baseline[1]:.2f} | {step:.0f} ({step_lo:.0f}–{step_hi:.0f}) | {step / baseline[2]:.2f} "
              f"| {memory_mib:.0f} | {memory_mib / baseline[3]:.2f} | {flops / 1e6:.0f} |", flush=True)

if __name__ == "__main__":
    main()
