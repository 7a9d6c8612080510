"""Extended XYZ read/write with configurable label keys (default ``REF_energy``, ``REF_forces``, ``REF_stress``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


GROUP_ALIASES = ("config_type",)  # what MACE and NequIP users call the group of a frame


def read_extxyz(path, keys: LabelKeys = LabelKeys()) -> Dataset:
    """Read every frame of an extxyz file; labels are looked up under ``keys``, the group under ``group``
    or, failing that, ``config_type``."""
    frames = []
    try:
        _check_atom_counts(Path(path).read_bytes().decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"), path)
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


def _check_atom_counts(lines: list[str], path) -> None:
    """Every frame's atom count fits the lines that follow it (ASE would skip ahead a count of 10⁹ line by line)."""
    line, frame = 0, 0
    while line < len(lines) and lines[line].strip():
        try:
            count = int(lines[line])
        except ValueError:
            raise DataError(f"line {line + 1}: expected the number of atoms, got {lines[line][:40]!r}", path=path, frame=frame,
                            field="atom count") from None
        if not 0 < count <= len(lines) - line - 2:
            raise DataError(f"line {line + 1}: {count} atoms, but {len(lines) - line - 2} lines follow", path=path, frame=frame,
                            field="atom count")
        line += count + 2
        while line < len(lines) and lines[line].lstrip().startswith("VEC"):
            line += 1
        frame += 1


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
    alias = next((name for name in GROUP_ALIASES if name in labelled.info), None)
    if "group" not in labelled.info and alias is not None:
        labelled.info["group"] = labelled.info.pop(alias)
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
