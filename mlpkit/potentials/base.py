"""What a potential is, and the single energy → forces/stress transform every potential uses."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from mlpkit.cell import cell_volume_a3
from mlpkit.elements import check_elements
from mlpkit.neighbors import EXACT, Neighbors

# energy_fn(positions_a [N, 3], cell_a [3, 3], species [N] atomic numbers, neighbors) -> energy in eV
EnergyFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class Potential:
    """A pure, jit-able energy function and the cutoff its neighbour list needs.

    An ensemble also carries ``member_forces_fn(positions, cell, species, neighbors) -> [K, N, 3]``,
    each member's forces (eV/Å), from which MD reads the ensemble's disagreement.
    """

    name: str
    energy_fn: EnergyFn
    cutoff_a: float
    elements: tuple[str, ...] | None = None  # None: any element
    member_forces_fn: Callable | None = None

    def check_species(self, species) -> None:
        """Raise :class:`~mlpkit.errors.MlpkitError` if ``species`` (atomic numbers) holds an element it does not describe."""
        if self.elements is not None:
            check_elements(species, self.elements, "the structure", self.name)


def energy_forces_stress(energy_fn: EnergyFn):
    """Turn ``energy_fn`` into ``f(positions, cell, species, neighbors) -> (E, F, σ)``.

    E: eV. F = −∂E/∂r: [N, 3] eV/Å. σ = (1/V) ∂E/∂ε: [3, 3] eV/Å³, the ASE convention
    (tensile positive), from a symmetric strain ε applied to positions and cell together.
    """

    def strained_energy(positions_a, strain, cell_a, species, neighbors: Neighbors):
        deformation = jnp.eye(3, dtype=positions_a.dtype) + 0.5 * (strain + strain.T)
        return energy_fn(jnp.matmul(positions_a, deformation, precision=EXACT), jnp.matmul(cell_a, deformation, precision=EXACT),
                         species, neighbors)

    def evaluate(positions_a, cell_a, species, neighbors: Neighbors):
        strain = jnp.zeros((3, 3), dtype=positions_a.dtype)
        energy, (d_positions, d_strain) = jax.value_and_grad(strained_energy, argnums=(0, 1))(
            positions_a, strain, cell_a, species, neighbors
        )
        volume_a3 = cell_volume_a3(cell_a, jnp)
        return energy, -d_positions, d_strain / volume_a3

    return evaluate


@functools.cache
def compiled_evaluator(potential: Potential):
    """The jit-compiled :func:`energy_forces_stress` of ``potential``, shared by all its users."""
    return jax.jit(energy_forces_stress(potential.energy_fn))
