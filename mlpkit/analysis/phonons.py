"""Phonon frequencies from finite-displacement force constants in a supercell, through any ASE calculator.

Each atom of the primitive cell is displaced by ± ``displacement_a`` along x, y, z in the supercell; the
central difference of all forces gives the force constants Φ (eV/Å²). At a wave vector q commensurate
with the supercell (exp(i q·L) = 1 for every supercell vector L), the dynamical matrix built from them is
exact whatever the range of the interactions, so Γ, X and L of diamond need only the 2×2×2 cubic cell.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator

from mlpkit.errors import MlpkitError
from mlpkit.structures import diamond

THZ_PER_ASE_FREQUENCY = units.s / (2 * np.pi) / 1e12  # ω = √(eV / (Å² u)) in rad per ASE time → ν in THz


def fcc_special_points(a0_angstrom: float) -> dict[str, np.ndarray]:
    """Γ, X and L of the fcc Brillouin zone (Cartesian, 1/Å, including 2π) for the cubic lattice constant a0."""
    unit = 2 * np.pi / a0_angstrom
    return {"gamma": np.zeros(3), "x": unit * np.array([1.0, 0.0, 0.0]), "l": unit * np.array([0.5, 0.5, 0.5])}


def _basis_of(supercell: Atoms, primitive: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """For each supercell atom, the primitive-cell atom it is a lattice translate of ([N]); and, for each
    primitive atom, one supercell atom sitting on it ([n_basis])."""
    inverse = np.linalg.inv(primitive.cell.array)
    basis = np.full(len(supercell), -1)
    origin = np.full(len(primitive), -1)
    for kappa, position in enumerate(primitive.positions):
        fractional = (supercell.positions - position) @ inverse  # [N, 3]
        on_lattice = np.all(np.abs(fractional - np.round(fractional)) < 1e-6, axis=1)
        basis[on_lattice] = kappa
        at_origin = np.nonzero(on_lattice & (np.linalg.norm(supercell.positions - position, axis=1) < 1e-6))[0]
        if len(at_origin):
            origin[kappa] = at_origin[0]
    if (basis < 0).any() or (origin < 0).any():
        raise MlpkitError("the supercell is not built from the primitive cell (some atoms are no lattice translate)")
    return basis, origin


def force_constants(calculator: Calculator, supercell: Atoms, origin: np.ndarray, displacement_a: float) -> np.ndarray:
    """Φ[κ, α, j, β] = −∂F_jβ / ∂u_κα (eV/Å²) for the atoms ``origin`` [n_basis], by central differences. → [n_basis, 3, N, 3]"""
    phi = np.zeros((len(origin), 3, len(supercell), 3))
    for kappa, atom in enumerate(origin):
        for alpha in range(3):
            forces = []
            for sign in (1.0, -1.0):
                displaced = supercell.copy()
                displaced.positions[atom, alpha] += sign * displacement_a
                displaced.calc = calculator
                forces.append(displaced.get_forces())
            phi[kappa, alpha] = -(forces[0] - forces[1]) / (2 * displacement_a)
    return phi


def phonon_frequencies(calculator: Calculator, primitive: Atoms, supercell: Atoms, qpoints_per_a: dict,
                       displacement_a: float = 0.01) -> dict[str, np.ndarray]:
    """Phonon frequencies (THz) at each named Cartesian wave vector (1/Å, with 2π) of ``qpoints_per_a``.

    ``supercell`` must consist of lattice translates of the ``primitive`` cell's atoms and be commensurate
    with every q. Returns name → [3·n_basis] ascending frequencies; an unstable mode (ω² < 0) is given as
    a negative frequency −√|ω²|.
    """
    basis, origin = _basis_of(supercell, primitive)
    for name, q in qpoints_per_a.items():
        phases = supercell.cell.array @ np.asarray(q)
        if np.abs(np.exp(1j * phases) - 1).max() > 1e-6:
            raise MlpkitError(f"q point {name!r} is not commensurate with the {len(supercell)}-atom supercell")
    phi = force_constants(calculator, supercell, origin, displacement_a)
    masses = primitive.get_masses()
    n_basis = len(primitive)
    frequencies = {}
    for name, q in qpoints_per_a.items():
        dynamical = np.zeros((n_basis, 3, n_basis, 3), complex)
        for kappa in range(n_basis):
            phase = np.exp(1j * (supercell.positions - supercell.positions[origin[kappa]]) @ np.asarray(q))  # [N]
            for kappa_prime in range(n_basis):
                mine = basis == kappa_prime
                dynamical[kappa, :, kappa_prime, :] = np.einsum("ajb,j->ab", phi[kappa][:, mine], phase[mine])
                dynamical[kappa, :, kappa_prime, :] /= np.sqrt(masses[kappa] * masses[kappa_prime])
        matrix = dynamical.reshape(3 * n_basis, 3 * n_basis)
        eigenvalues = np.linalg.eigvalsh(0.5 * (matrix + matrix.conj().T))
        frequencies[name] = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * THZ_PER_ASE_FREQUENCY
    return frequencies


def diamond_phonons(calculator: Calculator, element: str, a0_angstrom: float, repeat: int = 2,
                    displacement_a: float = 0.01) -> dict[str, np.ndarray]:
    """Frequencies (THz, [6] ascending) at Γ, X and L of diamond ``element`` at a0, from a ``repeat``³ cubic
    supercell (``repeat`` even, so that L is commensurate)."""
    primitive = bulk(element, "diamond", a=a0_angstrom)
    supercell = diamond(element, (repeat,) * 3, a0_angstrom)
    return phonon_frequencies(calculator, primitive, supercell, fcc_special_points(a0_angstrom), displacement_a)
