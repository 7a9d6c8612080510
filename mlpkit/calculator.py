"""ASE calculators over mlpkit potentials."""

from __future__ import annotations

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlpkit.neighbors import build_neighbors
from mlpkit.potentials import Potential, compiled_evaluator, sw_potential
from mlpkit.potentials.base import voigt_from_tensor
from mlpkit.potentials.sw import SW_PARAMETERS


class PotentialCalculator(Calculator):
    """ASE calculator for any :class:`~mlpkit.potentials.Potential`.

    Stress is in eV/Å³ as ASE's Voigt vector [xx, yy, zz, yz, xz, xy], tensile positive, and is
    only defined for fully periodic cells. With ``float64=True`` the arithmetic is done in double
    precision whatever the global JAX setting.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: Potential, float64: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.float64 = float64
        self._evaluate = compiled_evaluator(potential)

    def check_atoms(self, atoms) -> None:
        """Hook for subclasses that accept only some structures."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self.check_atoms(atoms)
        if "stress" in properties and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, self.potential.cutoff_a)
        with jax.enable_x64(self.float64):
            dtype = np.float64 if self.float64 else np.float32
            energy, forces, stress = self._evaluate(
                np.asarray(atoms.positions, dtype), np.asarray(atoms.cell.array, dtype), atoms.numbers, neighbors
            )
        energy = float(energy)
        stress = np.asarray(stress, np.float64)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(forces, np.float64),
        }
        if atoms.pbc.all():
            self.results["stress"] = voigt_from_tensor(stress)


class SWCalculator(PotentialCalculator):
    """Stillinger–Weber reference for ``"Si"`` or ``"Ge"``, computed in double precision.

    >>> from ase.build import bulk
    >>> atoms = bulk("Si", "diamond", a=5.431)
    >>> atoms.calc = SWCalculator("Si")
    >>> round(atoms.get_potential_energy() / len(atoms), 4)
    -4.3366
    """

    def __init__(self, element: str, **kwargs):
        super().__init__(sw_potential(element), float64=True, **kwargs)
        self.element = element
        self.parameters["element"] = element

    def check_atoms(self, atoms) -> None:
        wrong = sorted(set(atoms.get_chemical_symbols()) - {self.element})
        if wrong:
            raise ValueError(
                f"SWCalculator({self.element!r}) describes pure {self.element}; the structure also holds {wrong}"
                f" (available elements: {sorted(SW_PARAMETERS)})"
            )
