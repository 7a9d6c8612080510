"""One data set type for every source: ragged frames stored as flat arrays plus per-frame counts."""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.elements import unknown_elements
from mlpkit.errors import DataError
from mlpkit.cell import cell_volume_a3, voigt_from_tensor

FRAME_FIELDS = ("n_atoms", "cell_a", "pbc", "energy_ev", "stress_ev_per_a3", "group", "temperature_k")
ATOM_FIELDS = ("positions_a", "species", "forces_ev_per_a")
OVERLAP_FLOOR_A = 0.5  # closer atoms are treated as an input error, not physics


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """F labelled structures with N_f atoms each (Å, eV, eV/Å, eV/Å³, K).

    Per frame: ``n_atoms`` [F], ``cell_a`` [F, 3, 3] (rows are cell vectors), ``pbc`` [F, 3],
    ``energy_ev`` [F] total energy, ``stress_ev_per_a3`` [F, 6] ASE Voigt order [xx, yy, zz, yz, xz, xy],
    tensile positive, NaN rows where the source has no stress, ``group`` [F] str (e.g. "Elastic"),
    ``temperature_k`` [F], NaN where not known.
    Per atom, frames concatenated: ``positions_a`` [ΣN, 3], ``species`` [ΣN] atomic numbers,
    ``forces_ev_per_a`` [ΣN, 3].
    """

    n_atoms: np.ndarray
    positions_a: np.ndarray
    species: np.ndarray
    cell_a: np.ndarray
    pbc: np.ndarray
    energy_ev: np.ndarray
    forces_ev_per_a: np.ndarray
    stress_ev_per_a3: np.ndarray
    group: np.ndarray
    temperature_k: np.ndarray

    def __len__(self) -> int:
        return len(self.n_atoms)

    def __eq__(self, other) -> bool:
        return isinstance(other, Dataset) and all(
            np.array_equal(getattr(self, name), getattr(other, name), equal_nan=name in ("stress_ev_per_a3", "temperature_k"))
            for name in FRAME_FIELDS + ATOM_FIELDS
        )

    @property
    def offsets(self) -> np.ndarray:
        """[F + 1] index of each frame's first atom in the per-atom arrays."""
        return np.concatenate([[0], np.cumsum(self.n_atoms)])

    @property
    def has_stress(self) -> np.ndarray:
        """[F] True where the frame has a stress label."""
        return np.isfinite(self.stress_ev_per_a3).all(axis=1)

    @property
    def elements(self) -> list[str]:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in np.unique(self.species)]

    def atoms(self, index: int) -> Atoms:
        """Frame ``index`` as ASE Atoms with its labels on a SinglePointCalculator."""
        index = int(np.arange(len(self))[index])
        start, stop = self.offsets[index], self.offsets[index + 1]
        atoms = Atoms(
            numbers=self.species[start:stop],
            positions=self.positions_a[start:stop],
            cell=self.cell_a[index],
            pbc=self.pbc[index],
        )
        results = {"energy": self.energy_ev[index], "forces": self.forces_ev_per_a[start:stop]}
        if self.has_stress[index]:
            results["stress"] = self.stress_ev_per_a3[index]
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["group"] = str(self.group[index])
        if np.isfinite(self.temperature_k[index]):
            atoms.info["temperature_k"] = float(self.temperature_k[index])
        return atoms

    def select(self, indices) -> "Dataset":
        """The frames at ``indices`` (in that order): integers (negative count from the end) or a boolean mask."""
        indices = np.arange(len(self))[np.asarray(indices).reshape(-1) if np.ndim(indices) else [indices]]
        offsets = self.offsets
        atom_index = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in indices] or [np.zeros(0, int)])
        frame_arrays = {name: getattr(self, name)[indices] for name in FRAME_FIELDS}
        atom_arrays = {name: getattr(self, name)[atom_index] for name in ATOM_FIELDS}
        return Dataset(**frame_arrays, **atom_arrays)

    def first(self, n: int) -> "Dataset":
        """The first ``n`` frames: nested training sets for learning curves."""
        if not 0 <= n <= len(self):
            raise DataError(f"asked for the first {n} frames of a data set of {len(self)} frames")
        return self.select(np.arange(n))


def concatenate(datasets: list[Dataset]) -> Dataset:
    """All frames of ``datasets``, in order."""
    names = FRAME_FIELDS + ATOM_FIELDS
    return Dataset(**{name: np.concatenate([getattr(d, name) for d in datasets]) for name in names})


def from_frames(frames: list[Atoms], path=None) -> Dataset:
    """Build and validate a Dataset from Atoms whose calculators hold energy and forces.

    ``info["group"]`` and ``info["temperature_k"]`` become metadata; a missing label is an error.
    """
    energies, forces, stresses = [], [], []
    for index, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        for field in ("energy", "forces"):
            if field not in results:
                raise DataError("no label", path=path, frame=index, field=field)
        energies.append(results["energy"])
        forces.append(np.asarray(results["forces"], float))
        stresses.append(_voigt(results["stress"], path, index) if "stress" in results else np.full(6, np.nan))
    dataset = Dataset(
        **_structure_fields(frames, path),
        energy_ev=np.array(energies, dtype=float),
        forces_ev_per_a=np.concatenate(forces) if frames else np.zeros((0, 3)),
        stress_ev_per_a3=np.array(stresses, dtype=float).reshape(-1, 6),
    )
    validate(dataset, path)
    return dataset


def unlabelled(frames: list[Atoms]) -> Dataset:
    """Structures without labels (energies, forces and stresses NaN), for a model's predictions only: the
    candidates of active learning before the oracle has seen them. Not for training."""
    structure = _structure_fields(frames)
    n_frames, n_atoms = len(frames), int(structure["n_atoms"].sum())
    return Dataset(**structure, energy_ev=np.full(n_frames, np.nan), forces_ev_per_a=np.full((n_atoms, 3), np.nan),
                   stress_ev_per_a3=np.full((n_frames, 6), np.nan))


def _structure_fields(frames: list[Atoms], path=None) -> dict:
    """The fields of a Dataset that come from the structures alone (all but energies, forces and stresses)."""
    return dict(
        n_atoms=np.array([len(a) for a in frames], dtype=np.int64),
        positions_a=np.concatenate([a.positions for a in frames]) if frames else np.zeros((0, 3)),
        species=np.concatenate([a.numbers for a in frames]).astype(np.int64) if frames else np.zeros(0, np.int64),
        cell_a=np.array([a.cell.array for a in frames]).reshape(-1, 3, 3),
        pbc=np.array([a.pbc for a in frames], dtype=bool).reshape(-1, 3),
        group=np.array([str(a.info.get("group", "")) for a in frames], dtype=str),
        temperature_k=np.array([_temperature(a.info.get("temperature_k", np.nan), path, i) for i, a in enumerate(frames)]),
    )


def _temperature(value, path, frame) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"not a number: {value!r:.40}", path=path, frame=frame, field="temperature_k") from None


def _voigt(stress, path, frame) -> np.ndarray:
    try:
        stress = np.asarray(stress, dtype=float)
    except (TypeError, ValueError):
        raise DataError("not numeric", path=path, frame=frame, field="stress") from None
    if stress.shape == (6,):
        return stress
    if stress.shape in ((3, 3), (9,)):
        return voigt_from_tensor(stress.reshape(3, 3))
    raise DataError(f"expected 6 or 9 numbers, got shape {stress.shape}", path=path, frame=frame, field="stress")


def validate(dataset: Dataset, path=None) -> None:
    """Refuse data that cannot be physics: non-finite values, bad cells, unknown elements, overlaps."""
    from mlpkit.neighbors import neighbor_pairs

    offsets = dataset.offsets
    if dataset.group.shape != (len(dataset),) or offsets[-1] != len(dataset.positions_a):
        raise DataError("per-frame and per-atom arrays disagree on the number of frames or atoms", path=path)
    for frame in range(len(dataset)):
        atoms = slice(offsets[frame], offsets[frame + 1])
        checks = {
            "positions": dataset.positions_a[atoms],
            "forces": dataset.forces_ev_per_a[atoms],
            "energy": dataset.energy_ev[frame],
            "cell": dataset.cell_a[frame],
        }
        for field, values in checks.items():
            if not np.isfinite(values).all():
                raise DataError("contains NaN or infinity", path=path, frame=frame, field=field)
        temperature = dataset.temperature_k[frame]
        if np.isinf(temperature) or temperature < 0:
            raise DataError(f"{temperature} K: must be a finite, non-negative temperature (or absent)", path=path, frame=frame,
                            field="temperature_k")
        stress = dataset.stress_ev_per_a3[frame]
        if np.isfinite(stress).any() and not np.isfinite(stress).all():
            raise DataError("contains NaN or infinity", path=path, frame=frame, field="stress")
        if dataset.n_atoms[frame] == 0:
            raise DataError("frame has no atoms", path=path, frame=frame, field="positions")
        unknown = unknown_elements(dataset.species[atoms])
        if unknown:
            raise DataError(f"unknown element (atomic numbers {unknown})", path=path, frame=frame, field="species")
        cell, pbc = dataset.cell_a[frame], dataset.pbc[frame]
        if cell_volume_a3(cell) < 1e-6:
            raise DataError("cell has zero volume", path=path, frame=frame, field="cell")
        fractional = np.linalg.solve(cell.T, dataset.positions_a[atoms].T).T[:, pbc]
        if fractional.size and (fractional.min() < -1.0 or fractional.max() >= 2.0):
            raise DataError(
                "an atom lies more than a cell length outside the cell (are cell and positions in the same units?)",
                path=path, frame=frame, field="positions",
            )
        first_of_pairs, _, _ = neighbor_pairs(dataset.positions_a[atoms], cell, pbc, OVERLAP_FLOOR_A)
        if len(first_of_pairs):
            first = int(first_of_pairs[0])
            raise DataError(
                f"atom {first} is closer than {OVERLAP_FLOOR_A} Å to another atom or to its own periodic image"
                " (overlapping atoms or a cell too small)",
                path=path, frame=frame, field="positions",
            )
