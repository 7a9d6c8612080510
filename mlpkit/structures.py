"""Crystal structures used as references and as seeds for sampling."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, diamond100, diamond111

from mlpkit.errors import MlpkitError
from mlpkit.potentials.sw import SW_PARAMETERS


def lattice_constant_angstrom(element: str) -> float:
    """Diamond lattice constant of the element's SW potential (Å)."""
    if element not in SW_PARAMETERS:
        raise MlpkitError(f"no diamond lattice constant known for {element!r} (only {sorted(SW_PARAMETERS)}): give the "
                          "structure yourself (a lattice constant, or --structure FILE / --element on the command line)")
    return SW_PARAMETERS[element].lattice_constant_angstrom


def diamond(element: str, repeat=(2, 2, 2), a_angstrom: float | None = None) -> Atoms:
    """Diamond supercell of the 8-atom cubic cell, ``repeat`` times along each axis."""
    a_angstrom = lattice_constant_angstrom(element) if a_angstrom is None else a_angstrom
    return bulk(element, "diamond", a=a_angstrom, cubic=True).repeat(repeat)


def strained(atoms: Atoms, strain_voigt) -> Atoms:
    """Copy of ``atoms`` with cell and positions deformed by (I + ε).

    strain_voigt: [6] engineering-free Voigt strain [xx, yy, zz, yz, xz, xy]; off-diagonal
    entries are tensor components (ε_yz, not 2ε_yz).
    """
    xx, yy, zz, yz, xz, xy = strain_voigt
    deformation = np.eye(3) + np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    result = atoms.copy()
    result.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    return result


def with_vacancy(atoms: Atoms, index: int = 0) -> Atoms:
    """Copy of ``atoms`` with atom ``index`` removed."""
    result = atoms.copy()
    del result[index]
    return result


def slab(element: str, facet: str = "100", layers: int = 8, width: int = 2, vacuum_a: float = 7.5) -> Atoms:
    """Unreconstructed (100) or (111) slab, periodic in all directions with vacuum along z (as in mlearn)."""
    builders = {"100": diamond100, "111": diamond111}
    if facet not in builders:
        raise ValueError(f"facet {facet!r} is not available; choose one of {sorted(builders)}")
    surface = builders[facet](element, size=(width, width, layers), a=lattice_constant_angstrom(element), vacuum=vacuum_a)
    surface.pbc = True
    return surface


def rattled(atoms: Atoms, stdev_a: float, seed: int) -> Atoms:
    """Copy with Gaussian displacements of ``stdev_a`` Å (a seeded, reproducible distortion)."""
    result = atoms.copy()
    result.positions += np.random.default_rng(seed).normal(0.0, stdev_a, size=(len(atoms), 3))
    return result
