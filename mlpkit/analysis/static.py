"""Static properties of the diamond crystal through any ASE calculator: equation of state, elastic
constants (with internal relaxation), vacancy formation energy.

Every function takes the calculator and the element and builds its structures with
:mod:`mlpkit.structures`, so the SW reference, a model and an ensemble are measured the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator
from ase.eos import EquationOfState
from ase.optimize import BFGS

from mlpkit.errors import MlpkitError
from mlpkit.structures import diamond, lattice_constant_angstrom, rattled, strained, with_vacancy


@dataclasses.dataclass(frozen=True)
class EquationOfStateFit:
    """Birch–Murnaghan fit of E(V) of the diamond cell; ``volumes_a3`` and ``energies_ev`` [P] are per atom."""

    a0_angstrom: float
    e0_ev_per_atom: float
    bulk_modulus_gpa: float
    volumes_a3: np.ndarray
    energies_ev: np.ndarray


@dataclasses.dataclass(frozen=True)
class ElasticConstants:
    """Elastic stiffness of a cubic crystal: the full 6×6 Voigt matrices (GPa) and their cubic averages.

    ``matrix_gpa`` is measured with internal relaxation of the atoms (the physical, relaxed constants);
    ``unrelaxed_gpa`` with atoms moved affinely by the strain (C44 is then far larger in diamond).
    """

    matrix_gpa: np.ndarray
    unrelaxed_gpa: np.ndarray

    @property
    def c11_gpa(self) -> float:
        return float(np.mean(np.diag(self.matrix_gpa)[:3]))

    @property
    def c12_gpa(self) -> float:
        block = self.matrix_gpa[:3, :3]
        return float(np.mean(block[~np.eye(3, dtype=bool)]))

    @property
    def c44_gpa(self) -> float:
        return float(np.mean(np.diag(self.matrix_gpa)[3:]))

    @property
    def c44_unrelaxed_gpa(self) -> float:
        return float(np.mean(np.diag(self.unrelaxed_gpa)[3:]))


def _energy_per_atom(atoms, calculator: Calculator) -> float:
    atoms.calc = calculator
    return atoms.get_potential_energy() / len(atoms)


def relax_positions(atoms, calculator: Calculator, fmax_ev_per_a: float, max_steps: int):
    """Relax the atomic positions of ``atoms`` in place at fixed cell (BFGS) until every force is below ``fmax_ev_per_a``."""
    atoms.calc = calculator
    if not BFGS(atoms, logfile=None).run(fmax=fmax_ev_per_a, steps=max_steps):
        largest = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        raise MlpkitError(f"relaxation of {atoms.get_chemical_formula()} did not reach forces below {fmax_ev_per_a} eV/Å "
                          f"in {max_steps} steps (largest {largest:.2e} eV/Å)")
    return atoms


def equation_of_state(calculator: Calculator, element: str, a_guess_a: float | None = None, span: float = 0.01,
                      n_points: int = 9) -> EquationOfStateFit:
    """E(V) of the 8-atom cubic diamond cell, fitted with ASE's Birch–Murnaghan form.

    A coarse scan (±6 % in a, 1 % steps, around ``a_guess_a``, default the SW lattice constant) finds the
    minimum; ``n_points`` lattice constants within ±``span`` of it are then fitted. Returns a0 (Å), the energy
    per atom at the minimum (eV) and the bulk modulus (GPa).
    """
    a_guess_a = lattice_constant_angstrom(element) if a_guess_a is None else a_guess_a
    coarse_a = a_guess_a * (1.0 + np.linspace(-0.06, 0.06, 13))
    coarse_ev = [_energy_per_atom(diamond(element, (1, 1, 1), a), calculator) for a in coarse_a]
    lowest = int(np.argmin(coarse_ev))
    if lowest in (0, len(coarse_a) - 1):
        raise MlpkitError(f"the diamond {element} energy has no minimum within ±6 % of a = {a_guess_a:.4f} Å "
                          f"(lowest at {coarse_a[lowest]:.4f} Å): pass a better a_guess_a")
    centre_a = coarse_a[lowest]
    lattices_angstrom = centre_a * (1.0 + np.linspace(-span, span, n_points))
    energies_ev = np.array([_energy_per_atom(diamond(element, (1, 1, 1), a), calculator) for a in lattices_angstrom])
    volumes_a3 = lattices_angstrom**3 / 8.0  # per atom: 8 atoms in the cubic cell
    try:
        v0_a3, e0_ev, bulk_ev_per_a3 = EquationOfState(volumes_a3, energies_ev, eos="birchmurnaghan").fit()
    except (RuntimeError, ValueError) as error:
        raise MlpkitError(f"equation-of-state fit failed for {element}: {error}") from None
    return EquationOfStateFit(a0_angstrom=float((8.0 * v0_a3) ** (1.0 / 3.0)), e0_ev_per_atom=float(e0_ev),
                              bulk_modulus_gpa=float(bulk_ev_per_a3 / units.GPa), volumes_a3=volumes_a3, energies_ev=energies_ev)


def elastic_constants(calculator: Calculator, element: str, a0_angstrom: float, strain: float = 0.005,
                      fmax_ev_per_a: float = 1e-4, max_steps: int = 200) -> ElasticConstants:
    """Elastic constants from central differences of the stress under ± ``strain`` of the cubic 8-atom cell.

    Each of the six Voigt strains (shears as engineering strains, γ = 2ε) is applied with both signs;
    the stress is read before (unrelaxed) and after relaxing the atoms at fixed cell (relaxed), and
    C[:, k] = (σ(+) − σ(−)) / (2·strain), with ASE's tensile-positive stress.
    """
    reference = diamond(element, (1, 1, 1), a0_angstrom)
    relaxed_gpa, unrelaxed_gpa = np.zeros((6, 6)), np.zeros((6, 6))
    for k in range(6):
        stresses = {}
        for sign in (1.0, -1.0):
            voigt = np.zeros(6)
            voigt[k] = sign * strain * (1.0 if k < 3 else 0.5)  # tensor component: ε_yz = γ_yz / 2
            atoms = strained(reference, voigt)
            atoms.calc = calculator
            before = atoms.get_stress()
            after = relax_positions(atoms, calculator, fmax_ev_per_a, max_steps).get_stress()
            stresses[sign] = before, after
        unrelaxed_gpa[:, k] = (stresses[1.0][0] - stresses[-1.0][0]) / (2 * strain) / units.GPa
        relaxed_gpa[:, k] = (stresses[1.0][1] - stresses[-1.0][1]) / (2 * strain) / units.GPa
    return ElasticConstants(matrix_gpa=relaxed_gpa, unrelaxed_gpa=unrelaxed_gpa)


def vacancy_formation_energy(calculator: Calculator, element: str, a0_angstrom: float, repeat: int = 3,
                             fmax_ev_per_a: float = 1e-3, max_steps: int = 300, inward_push_a: float = 0.5) -> float:
    """Relaxed vacancy formation energy (eV): E_vac − (N − 1)/N · E_bulk in a ``repeat``³ cubic supercell at a0.

    The atoms are relaxed at fixed cell twice, from the ideal vacancy and from one whose four neighbours
    start ``inward_push_a`` closer to the empty site (both with a seeded 0.01 Å rattle), and the lower
    energy of those that converge is kept: with a short cutoff such as SW's, the ideal vacancy is a metastable local minimum
    (Si: 2ε = 4.34 eV) and only the inward start finds the rebonded one (Si: 2.7–2.8 eV).
    """
    bulk = diamond(element, (repeat,) * 3, a0_angstrom)
    n_atoms = len(bulk)
    bulk_ev = _energy_per_atom(bulk, calculator) * n_atoms
    vacancy = with_vacancy(bulk, 0)
    offsets_a = vacancy.positions - bulk.positions[0]
    offsets_a -= np.round(offsets_a @ np.linalg.inv(vacancy.cell.array)) @ vacancy.cell.array  # nearest image
    distances_a = np.linalg.norm(offsets_a, axis=1)
    nearest = distances_a < distances_a.min() + 0.1
    pushed = vacancy.copy()
    pushed.positions[nearest] -= inward_push_a * offsets_a[nearest] / distances_a[nearest, None]
    energies_ev, failures = [], []
    for start in (vacancy, pushed):
        try:
            energies_ev.append(relax_positions(rattled(start, 0.01, seed=0), calculator, fmax_ev_per_a, max_steps).get_potential_energy())
        except MlpkitError as error:
            failures.append(str(error))
    if not energies_ev:
        raise MlpkitError(f"vacancy of {element}: neither start relaxed ({'; '.join(failures)})")
    return float(min(energies_ev) - (n_atoms - 1) / n_atoms * bulk_ev)
