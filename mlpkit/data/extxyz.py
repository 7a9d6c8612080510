"""Extended XYZ read/write with configurable label keys (default ``REF_energy``, ``REF_forces``, ``REF_stress``)."""

from __future__ import annotations

import dataclasses

import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.data.dataset import Dataset, from_frames
from mlpkit.errors import DataError
from mlpkit.fileio import atomic_path


@dataclasses.dataclass(frozen=True)
class LabelKeys:
    """Names of the label fields in an extxyz file."""

    energy: str = "REF_energy"
    forces: str = "REF_forces"
    stress: str = "REF_stress"


def read_extxyz(path, keys: LabelKeys = LabelKeys()) -> Dataset:
    """Read every frame of an extxyz file; labels are looked up under ``keys``."""
    frames = []
    try:
        for index, atoms in enumerate(ase.io.iread(path, index=":", format="extxyz")):
            frames.append(_labelled(atoms, keys, path, index))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except Exception as error:  # ASE's parser raises many types; all mean a malformed file
        raise DataError(f"not valid extended XYZ: {error}", path=path, frame=len(frames)) from None
    if not frames:
        raise DataError("holds no frames", path=path)
    return from_frames(frames, path)


def _labelled(atoms, keys: LabelKeys, path, index):
    calc_results = atoms.calc.results if atoms.calc is not None else {}

    def lookup(key, plain):
        for source in (atoms.info, atoms.arrays):
            if key in source:
                return source.pop(key)
        return calc_results.get(plain) if key == plain else None

    energy, forces, stress = lookup(keys.energy, "energy"), lookup(keys.forces, "forces"), lookup(keys.stress, "stress")
    for key, value in ((keys.energy, energy), (keys.forces, forces)):
        if value is None:
            raise DataError("missing", path=path, frame=index, field=key)
    try:
        energy = float(energy)
    except (TypeError, ValueError):
        raise DataError("not a number", path=path, frame=index, field=keys.energy) from None
    try:
        forces = np.asarray(forces, dtype=float)
    except (TypeError, ValueError):
        raise DataError("not numeric", path=path, frame=index, field=keys.forces) from None
    if forces.shape != (len(atoms), 3):
        raise DataError(f"expected shape ({len(atoms)}, 3), got {forces.shape}", path=path, frame=index, field=keys.forces)
    results = {"energy": energy, "forces": forces}
    if stress is not None:
        results["stress"] = stress
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, **results)
    return labelled


def write_extxyz(dataset: Dataset, path, keys: LabelKeys = LabelKeys()) -> None:
    """Write ``dataset`` atomically; metadata go to ``group`` and ``temperature_k`` info fields."""
    frames = []
    for index in range(len(dataset)):
        atoms = dataset.atoms(index)
        results = atoms.calc.results
        atoms.calc = None
        atoms.info[keys.energy] = results["energy"]
        atoms.arrays[keys.forces] = results["forces"]
        if "stress" in results:
            xx, yy, zz, yz, xz, xy = results["stress"]
            atoms.info[keys.stress] = np.array([xx, xy, xz, xy, yy, yz, xz, yz, zz])
        frames.append(atoms)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
