"""Binary cache of a Dataset (an mlpkit archive, no pickle), versioned, with a SHA-256 over its contents that must
be there and fit on load (an edited cache, or one whose checksum was removed, is refused), and validated on load."""

from __future__ import annotations

import numpy as np

from mlpkit.data.dataset import ATOM_FIELDS, FRAME_FIELDS, Dataset, validate
from mlpkit.errors import DataError
from mlpkit.fileio import archive_bytes, read_archive, write_bytes_atomic

FORMAT_VERSION = 1


def save_npz(dataset: Dataset, path) -> None:
    arrays = {name: getattr(dataset, name) for name in FRAME_FIELDS + ATOM_FIELDS}
    arrays["format_version"] = np.asarray(FORMAT_VERSION)  # where caches kept it before meta.json, for older mlpkit
    write_bytes_atomic(path, archive_bytes({}, arrays, FORMAT_VERSION, checksum=True))


def load_npz(path) -> Dataset:
    _, stored = read_archive(path, "dataset cache", FORMAT_VERSION, checksum=True, error=DataError)
    arrays = {}
    for name in FRAME_FIELDS + ATOM_FIELDS:
        if name not in stored:
            raise DataError("missing", path=path, field=name)
        arrays[name] = stored[name]
    _check_shapes(arrays, path)
    dataset = Dataset(**arrays)
    validate(dataset, path)
    return dataset


def _check_shapes(arrays: dict, path) -> None:
    for name in ("n_atoms", "positions_a"):  # they set the counts every other shape is checked against
        if arrays[name].ndim == 0:
            raise DataError(f"expected an array, got the single value {arrays[name]!r:.40}", path=path, field=name)
    frames, atoms = len(arrays["n_atoms"]), len(arrays["positions_a"])
    expected = {
        "n_atoms": (frames,), "cell_a": (frames, 3, 3), "pbc": (frames, 3), "energy_ev": (frames,),
        "stress_ev_per_a3": (frames, 6), "group": (frames,), "temperature_k": (frames,),
        "positions_a": (atoms, 3), "species": (atoms,), "forces_ev_per_a": (atoms, 3),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise DataError(f"expected shape {shape}, got {arrays[name].shape}", path=path, field=name)
    kinds = {"n_atoms": "iu", "species": "iu", "pbc": "b", "group": "U"}
    for name, array in arrays.items():
        if array.dtype.kind not in kinds.get(name, "f"):
            raise DataError(f"unexpected data type {array.dtype}", path=path, field=name)
    if arrays["n_atoms"].min(initial=1) < 0 or arrays["n_atoms"].sum() != atoms:
        raise DataError("atom counts do not add up to the number of positions", path=path, field="n_atoms")
