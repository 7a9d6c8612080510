"""DFT reference values for the out-of-target properties, read from the data: the ground state of an mlearn
set, and the elastic constants, a0 and E0 fitted to the stresses of its Elastic group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units

from mlpkit.cell import cell_volume_a3, tensor_from_voigt, voigt_from_tensor
from mlpkit.data.dataset import Dataset
from mlpkit.data.mlearn import MLEARN_GROUND_STATE
from mlpkit.errors import MlpkitError


def dft_ground_state(element: str, mlearn_dir: str | Path | None = None) -> dict:
    """DFT lattice constant (Å) and energy per atom (eV) of diamond ``element``, as ``a0_angstrom`` and
    ``e0_ev_per_atom``, ready to be a column of :func:`~mlpkit.analysis.property_table`.

    Without ``mlearn_dir`` these are the published values of the mlearn set; with it they are read from
    ``mlearn_dir/<element>/training.json``: the lowest-energy cubic cell of its Elastic group.
    Note that E0 is a DFT total energy: compare it with a model trained on DFT data, not with SW.
    """
    if mlearn_dir is None:
        if element not in MLEARN_GROUND_STATE:
            raise MlpkitError(f"no mlearn ground state for {element!r}; available: {sorted(MLEARN_GROUND_STATE)}")
        return dict(MLEARN_GROUND_STATE[element])
    from mlpkit.data import read_mlearn

    path = Path(mlearn_dir) / element / "training.json"
    dataset = read_mlearn(path)
    ground = ground_state_index(dataset, path)
    return {"a0_angstrom": _cubic_a0(dataset.cell_a[ground], dataset.n_atoms[ground]),
            "e0_ev_per_atom": float(dataset.energy_ev[ground] / dataset.n_atoms[ground])}


def ground_state_index(dataset: Dataset, source="the data", group: str = "Elastic") -> int:
    """Index of the lowest-energy cubic cell of ``group``: the unstrained crystal of an elastic data set."""
    best = None
    for index in np.flatnonzero(dataset.group == group):
        cell = dataset.cell_a[index]
        lengths_a = np.linalg.norm(cell, axis=1)
        cubic = np.allclose(cell, np.diag(lengths_a), atol=1e-4) and np.ptp(lengths_a) < 1e-4
        energy_ev = dataset.energy_ev[index] / dataset.n_atoms[index]
        if cubic and (best is None or energy_ev < best[0]):
            best = (energy_ev, int(index))
    if best is None:
        raise MlpkitError(f"{source}: no unstrained cubic cell in the {group} group")
    return best[1]


def _cubic_a0(cell_a: np.ndarray, n_atoms: int) -> float:
    """Å: the conventional (8-atom) lattice constant of a diamond cell of ``n_atoms``."""
    return float((8.0 * cell_volume_a3(cell_a) / n_atoms) ** (1.0 / 3.0))


def lagrangian_strain_and_stress(cell_a, reference_cell_a, stress_ev_per_a3) -> tuple[np.ndarray, np.ndarray]:
    """[..., 6] Green–Lagrange strain (Voigt, engineering shear 2E_ij) of ``cell_a`` against ``reference_cell_a``,
    and [..., 6] GPa second Piola–Kirchhoff stress S = J F⁻¹ σ F⁻ᵀ from the Cauchy stress (ASE's Voigt order
    and sign, tensile positive): the pair whose slope is the elastic tensor even where a frame is rotated."""
    deformation = np.swapaxes(np.linalg.solve(reference_cell_a, cell_a), -1, -2)  # cell rows: a' = a Fᵀ
    green = 0.5 * (np.swapaxes(deformation, -1, -2) @ deformation - np.eye(3))
    inverse = np.linalg.inv(deformation)
    jacobian = np.linalg.det(deformation)[..., None, None]
    piola = jacobian * inverse @ tensor_from_voigt(stress_ev_per_a3) @ np.swapaxes(inverse, -1, -2)
    return voigt_from_tensor(green) * np.array([1, 1, 1, 2, 2, 2]), voigt_from_tensor(piola) / units.GPa


def elastic_reference(dataset: Dataset, source="the data", group: str = "Elastic", degree: int = 3) -> dict:
    """Cubic elastic constants, bulk modulus, lattice constant and energy of the crystal that ``dataset``'s
    ``group`` frames strain (its unstrained cell and cells strained along one Voigt mode at a time, each with a
    stress label, as in mlearn's Elastic groups and mlpkit's SW data), as a column of
    :func:`~mlpkit.analysis.property_table`.

    For every strain mode, each stress component is fitted by a polynomial of ``degree`` in the mode's strain
    through all its frames and the unstrained one; the slope at zero strain is that column of the 6×6 matrix,
    averaged into cubic C11, C12 and C44. The ions of the strained cells were not relaxed, so C44 is the
    unrelaxed one (``c44_unrelaxed_gpa``). The unstrained cell's residual pressure moves a0 and E0 to where the
    hydrostatic stress vanishes (``a0_angstrom``, ``e0_ev_per_atom``, to second order in the strain).
    """
    ground = ground_state_index(dataset, source, group)
    frames = np.flatnonzero((dataset.group == group) & dataset.has_stress)
    strain, stress_gpa = lagrangian_strain_and_stress(dataset.cell_a[frames], dataset.cell_a[ground],
                                                      dataset.stress_ev_per_a3[frames])
    matrix_gpa, residual_gpa = np.full((6, 6), np.nan), np.full((6, 6), np.nan)
    unstrained = np.abs(strain).max(axis=1) < 1e-9
    for mode in range(6):
        # along one mode: the other components at most second order in it (a symmetric shear I + ε of a cell
        # has Green–Lagrange normal strains ε²/2 = e²/8 for engineering shear e)
        others = np.delete(np.abs(strain), mode, axis=1).max(axis=1)
        along = unstrained | ((others <= 0.25 * strain[:, mode] ** 2 + 1e-9) & (np.abs(strain[:, mode]) > 1e-9))
        if along.sum() < degree + 2 or not unstrained.any():
            raise MlpkitError(f"{source}: the {group} group strains Voigt mode {mode + 1} in {int(along.sum()) - 1} "
                              f"frames; a degree-{degree} fit needs at least {degree + 1} strained frames and the unstrained one")
        for component in range(6):
            coefficients = np.polynomial.polynomial.polyfit(strain[along, mode], stress_gpa[along, component], degree)
            residual_gpa[component, mode], matrix_gpa[component, mode] = coefficients[:2]
    c11, c12, c44 = (float(np.mean(matrix_gpa[i, j])) for i, j in (([0, 1, 2], [0, 1, 2]),
                                                                    ([0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]),
                                                                    ([3, 4, 5], [3, 4, 5])))
    bulk_gpa = (c11 + 2.0 * c12) / 3.0
    pressure_gpa = -float(np.mean(residual_gpa[[0, 1, 2], :]))  # of the unstrained cell, every mode's intercept
    hydrostatic = pressure_gpa / (3.0 * bulk_gpa)  # Green–Lagrange strain at which the pressure vanishes
    n_atoms = dataset.n_atoms[ground]
    volume_per_atom_a3 = cell_volume_a3(dataset.cell_a[ground]) / n_atoms
    return {
        "a0_angstrom": _cubic_a0(dataset.cell_a[ground], n_atoms) * float(np.sqrt(1.0 + 2.0 * hydrostatic)),
        "e0_ev_per_atom": float(dataset.energy_ev[ground] / n_atoms - volume_per_atom_a3 * pressure_gpa ** 2 / (2.0 * bulk_gpa) * units.GPa),
        "bulk_modulus_gpa": bulk_gpa, "c11_gpa": c11, "c12_gpa": c12, "c44_unrelaxed_gpa": c44,
        "unstrained_pressure_gpa": pressure_gpa, "elastic_matrix_unrelaxed_gpa": matrix_gpa.round(6).tolist(),
        "frames": int(len(frames)), "source": str(source),
    }


def dft_reference(element: str, mlearn_dir: str | Path) -> dict:
    """:func:`elastic_reference` of the mlearn ``element`` set's Elastic group (``training.json``), the DFT
    column of the property table."""
    from mlpkit.data import read_mlearn

    path = Path(mlearn_dir) / element / "training.json"
    return elastic_reference(read_mlearn(path), path)
