"""From per-atom model outputs to a potential: per-element shift and scale, ensembles, forces and stress.

E = Σ_i [scale(Z_i) · model_i + shift(Z_i)]. The shift is the least-squares energy per atom of each
element over the training set (E0), the scale the RMS force component on that element, so a fresh
model starts with sensible energies and forces of the right size.

A length scale s multiplies positions and cell before the model: E(r) = model(s·r). Transfer from Si
to Ge uses s = a_Si / a_Ge so that the Si-trained radial filters see Ge bonds at Si lengths. Forces
and stress still come from the shared transform, differentiating through the scaling, and the
neighbour list must reach cutoff / s in real space (:func:`neighbor_cutoff_a`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.data.composition import element_energies_ev
from mlpkit.data.dataset import Dataset
from mlpkit.members import over_members
from mlpkit.models import ModelConfig, build_model
from mlpkit.models.graph import ElementTable, build_graph
from mlpkit.neighbors import Neighbors
from mlpkit.potentials.base import Potential, energy_forces_stress


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """Per-element energy shift (eV/atom) and scale (eV), in the order of the element table, and the
    length scale applied to positions and cell before the model (dimensionless; 1 = none)."""

    shift_ev: tuple[float, ...]
    scale_ev: tuple[float, ...]
    length_scale: float = 1.0

    def arrays(self, dtype) -> dict:
        """The normalisation as arrays: an argument of compiled programs rather than a constant in them."""
        return {"shift_ev": np.asarray(self.shift_ev, dtype), "scale_ev": np.asarray(self.scale_ev, dtype),
                "length_scale": np.asarray(self.length_scale, dtype)}


def neighbor_cutoff_a(config: ModelConfig, normalisation: Normalisation) -> float:
    """Real-space range (Å) a neighbour list must cover: the model's cutoff divided by the length scale."""
    return config.cutoff_a / normalisation.length_scale


def fit_normalisation(dataset: Dataset, table: ElementTable) -> Normalisation:
    """E0 by least squares of total energies on element counts; scale = RMS force component per element."""
    table.check(dataset.species, "the training set")
    shift = element_energies_ev(dataset, table.numbers)
    slots = table.slot_lookup()[dataset.species]
    scale = []
    for slot in range(len(table)):
        forces = dataset.forces_ev_per_a[slots == slot]
        rms = float(np.sqrt(np.mean(forces**2))) if forces.size else 0.0
        scale.append(rms if rms > 1e-6 else 1.0)
    return Normalisation(tuple(float(s) for s in shift), tuple(scale))


def normalised_atom_energies_fn(config: ModelConfig, table: ElementTable):
    """``f(params, normalisation_arrays, positions_a, cell_a, species, neighbors) -> [N] eV``: each atom's
    energy (zero on padding) for one set of parameters, the normalisation given as
    :meth:`Normalisation.arrays`: one compiled program serves every normalisation (every cell of a study)."""
    model = build_model(config, len(table))
    graph_of = _scaled_graph_fn(config, table)

    def atom_energies(params, normalisation: dict, positions_a, cell_a, species, neighbors: Neighbors):
        graph = graph_of(normalisation, positions_a, cell_a, species, neighbors)
        shift = jnp.asarray(normalisation["shift_ev"])[graph.slot]
        scale = jnp.asarray(normalisation["scale_ev"])[graph.slot]
        return jnp.where(graph.atom_mask, model.apply(params, graph) * scale + shift, 0.0)  # [N] eV

    return atom_energies


def atom_features_fn(config: ModelConfig, table: ElementTable):
    """``f(params, normalisation_arrays, positions_a, cell_a, species, neighbors) -> [N, C]``: each atom's
    invariant features as the model's readout sees them (what every architecture sows as ``atom_features``),
    zero on padding; the model's learned description of each atomic environment."""
    model = build_model(config, len(table))
    graph_of = _scaled_graph_fn(config, table)

    def atom_features(params, normalisation: dict, positions_a, cell_a, species, neighbors: Neighbors):
        graph = graph_of(normalisation, positions_a, cell_a, species, neighbors)
        _, state = model.apply(params, graph, mutable=["intermediates"])
        (features,) = state["intermediates"]["atom_features"]
        return jnp.where(graph.atom_mask[:, None], features, 0.0)

    return atom_features


def _scaled_graph_fn(config: ModelConfig, table: ElementTable):
    lookup = table.slot_lookup()

    def graph_of(normalisation: dict, positions_a, cell_a, species, neighbors: Neighbors):
        length_scale = normalisation["length_scale"]
        return build_graph(positions_a * length_scale, cell_a * length_scale, species, neighbors, lookup, config.cutoff_a)

    return graph_of


def normalised_energy_fn(config: ModelConfig, table: ElementTable):
    """``f(params, normalisation_arrays, positions_a, cell_a, species, neighbors) -> eV``: the sum of
    :func:`normalised_atom_energies_fn`."""
    atom_energies = normalised_atom_energies_fn(config, table)

    def energy(*args):
        return jnp.sum(atom_energies(*args))

    return energy


def member_energy_fn(config: ModelConfig, table: ElementTable, normalisation: Normalisation):
    """``f(params, positions_a, cell_a, species, neighbors) -> eV`` for one set of parameters."""
    energy = normalised_energy_fn(config, table)

    def fixed(params, positions_a, cell_a, species, neighbors: Neighbors):
        return energy(params, normalisation.arrays(positions_a.dtype), positions_a, cell_a, species, neighbors)

    return fixed


def ensemble_evaluator(config: ModelConfig, table: ElementTable, normalisation: Normalisation):
    """``f(stacked_params, positions, cell, species, neighbors) -> (E [K], F [K, N, 3], σ [K, 3, 3])``.

    ``stacked_params`` has a leading axis K over ensemble members; forces and stress come from the
    shared transform :func:`~mlpkit.potentials.energy_forces_stress`.
    """
    energy = member_energy_fn(config, table, normalisation)

    def one(params, positions_a, cell_a, species, neighbors):
        return energy_forces_stress(lambda *args: energy(params, *args))(positions_a, cell_a, species, neighbors)

    return over_members(one, (0, None, None, None, None))


def ensemble_atom_energies(config: ModelConfig, table: ElementTable, normalisation: Normalisation):
    """``f(stacked_params, positions, cell, species, neighbors) -> [K, N]`` per-atom energies (eV) of each member."""
    atom_energies = normalised_atom_energies_fn(config, table)

    def one(params, positions_a, cell_a, species, neighbors):
        return atom_energies(params, normalisation.arrays(positions_a.dtype), positions_a, cell_a, species, neighbors)

    return over_members(one, (0, None, None, None, None))


def cast_params(params, dtype):
    """Host (numpy) copy of ``params`` in ``dtype``; numpy keeps float64 even where JAX runs in float32."""
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, dtype), params)


def ensemble_potential(
    config: ModelConfig, table: ElementTable, normalisation: Normalisation, stacked_params, name: str = "mlp"
) -> Potential:
    """A :class:`Potential` whose energy is the ensemble mean; runs MD like any other potential."""
    energy = over_members(member_energy_fn(config, table, normalisation), (0, None, None, None, None))
    evaluate = ensemble_evaluator(config, table, normalisation)

    def fixed_params(dtype):
        # the parameters are constants of every program built from this potential; the barrier stops XLA
        # from folding them with the backward pass's broadcasts into [N, F] constants at compile time
        # (seconds per layer and megabytes per program at 32768 atoms)
        return jax.lax.optimization_barrier(cast_params(stacked_params, dtype))

    def mean_energy(positions_a, cell_a, species, neighbors):
        return jnp.mean(energy(fixed_params(positions_a.dtype), positions_a, cell_a, species, neighbors))

    def member_forces(positions_a, cell_a, species, neighbors):
        return evaluate(fixed_params(positions_a.dtype), positions_a, cell_a, species, neighbors)[1]

    ensemble = jax.tree_util.tree_leaves(stacked_params)[0].shape[0] > 1
    return Potential(name=name, energy_fn=mean_energy, cutoff_a=neighbor_cutoff_a(config, normalisation), elements=table.symbols,
                     member_forces_fn=member_forces if ensemble else None)
