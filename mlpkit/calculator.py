"""ASE calculators over mlpkit potentials."""

from __future__ import annotations

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlpkit.checkpoint import Checkpoint, load_checkpoint
from mlpkit.elements import unknown_elements
from mlpkit.errors import MlpkitError
from mlpkit.models.energy import cast_params
from mlpkit.neighbors import build_neighbors
from mlpkit.potentials import Potential, compiled_evaluator, sw_potential
from mlpkit.cell import voigt_from_tensor
from mlpkit.potentials.sw import SW_PARAMETERS, parse_sw_spec


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
        self.potential.check_species(atoms.numbers)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self.check_atoms(atoms)
        if "stress" in properties and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, self.potential.cutoff_a)
        with jax.enable_x64(self.float64):
            dtype = np.float64 if self.float64 else np.float32
            results = self.compute(np.asarray(atoms.positions, dtype), np.asarray(atoms.cell.array, dtype), atoms.numbers,
                                   neighbors, properties)
        if not atoms.pbc.all():
            results = {key: value for key, value in results.items() if not key.startswith("stress")}
        self.results = results

    def compute(self, positions_a, cell_a, species, neighbors, properties=("energy",)) -> dict:
        """ASE results of one structure; stress as a Voigt vector."""
        energy, forces, stress = self._evaluate(positions_a, cell_a, species, neighbors)
        energy = float(energy)
        return {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(forces, np.float64),
            "stress": voigt_from_tensor(np.asarray(stress, np.float64)),
        }


class MLPCalculator(PotentialCalculator):
    """ASE calculator of a trained model (an ensemble of K ≥ 1 members), from :func:`load_calculator`.

    Energy, forces, stress and ``energies`` (per-atom energies [N], eV, summing to the energy, as in ASE)
    are ensemble means (``energies`` costs one more forward pass, so it is computed when asked for, by
    ``get_potential_energies()``). ``results`` also holds the spread across members (standard deviations, zero for
    a single model): ``energy_std`` (eV), ``forces_std`` [N, 3] (eV/Å), ``stress_std`` [6] (eV/Å³), and
    ``member_energies``, the K members' total energies (eV).
    """

    implemented_properties = PotentialCalculator.implemented_properties + ["energies"]

    def __init__(self, checkpoint: Checkpoint, float64: bool = False, **kwargs):
        super().__init__(checkpoint.potential(), float64=float64, **kwargs)
        self.checkpoint = checkpoint
        self._members = jax.jit(checkpoint.evaluator())
        self._atom_energies = jax.jit(checkpoint.atom_energies_evaluator())
        self._params = cast_params(checkpoint.params, np.float64 if float64 else np.float32)

    def compute(self, positions_a, cell_a, species, neighbors, properties=("energy",)) -> dict:
        params = self._params
        energies, forces, stresses = (np.asarray(x, np.float64) for x in self._members(params, positions_a, cell_a, species, neighbors))
        stresses = voigt_from_tensor(stresses)
        energy = float(energies.mean())
        results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces.mean(axis=0),
            "stress": stresses.mean(axis=0),
            "member_energies": energies,
            "energy_std": float(energies.std()),
            "forces_std": forces.std(axis=0),
            "stress_std": stresses.std(axis=0),
        }
        if "energies" in properties:  # a second forward pass: only when asked (ASE calls again if it is)
            atom_energies = self._atom_energies(params, positions_a, cell_a, species, neighbors)
            results["energies"] = np.asarray(atom_energies, np.float64).mean(axis=0)
        return results


def load_calculator(checkpoint_path, float64: bool = False) -> MLPCalculator:
    """ASE calculator of the model saved at ``checkpoint_path`` (written by ``mlpkit train``).

    >>> calc = load_calculator("runs/si/model.npz")  # doctest: +SKIP
    >>> atoms.calc = calc; atoms.get_forces(); calc.results["forces_std"]  # doctest: +SKIP
    """
    return MLPCalculator(load_checkpoint(checkpoint_path), float64=float64)


def load_potential(spec) -> Potential:
    """The potential named by ``spec``: ``"sw:Si"`` / ``"sw:Ge"`` for the Stillinger–Weber reference, or the
    path of a checkpoint written by ``mlpkit train`` (its ensemble mean). The CLI's ``--potential`` takes the same.
    """
    sw = parse_sw_spec(spec)
    if sw is None:
        return load_checkpoint(spec).potential()
    element, split = sw
    if split is not None or element not in SW_PARAMETERS:
        raise MlpkitError(f"unknown SW potential {str(spec)!r}: use sw:El, El one of {sorted(SW_PARAMETERS)}")
    return sw_potential(element)


def calculator_for(spec) -> PotentialCalculator:
    """The ASE calculator of a :func:`load_potential` ``spec``, in double precision: an :class:`SWCalculator`
    for ``"sw:Si"`` / ``"sw:Ge"``, else the :class:`MLPCalculator` of a checkpoint path."""
    if parse_sw_spec(spec) is not None:
        return SWCalculator(load_potential(spec).elements[0])
    return load_calculator(spec, float64=True)


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
        wrong = unknown_elements(atoms.get_chemical_symbols(), (self.element,))
        if wrong:
            raise ValueError(
                f"SWCalculator({self.element!r}) describes pure {self.element}; the structure also holds {wrong}"
                f" (available elements: {sorted(SW_PARAMETERS)})"
            )
