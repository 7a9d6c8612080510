"""Binary cache of a Dataset (numpy npz, no pickle), versioned and validated on load."""

from __future__ import annotations

import tokenize
import zipfile

import numpy as np

from mlpkit.data.dataset import ATOM_FIELDS, FRAME_FIELDS, Dataset, validate
from mlpkit.errors import DataError
from mlpkit.fileio import atomic_path

FORMAT_VERSION = 1


def save_npz(dataset: Dataset, path) -> None:
    arrays = {name: getattr(dataset, name) for name in FRAME_FIELDS + ATOM_FIELDS}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, format_version=FORMAT_VERSION, **arrays)


def load_npz(path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            version = _version(archive["format_version"]) if "format_version" in archive else None
            if version != FORMAT_VERSION:
                raise DataError(f"cache format {version}, this mlpkit reads {FORMAT_VERSION}", path=path, field="format_version")
            arrays = {}
            for name in FRAME_FIELDS + ATOM_FIELDS:
                if name not in archive:
                    raise DataError("missing", path=path, field=name)
                arrays[name] = archive[name]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError, tokenize.TokenError) as error:  # numpy parses .npy headers as Python literals
        raise DataError(f"not a readable mlpkit cache: {error}", path=path) from None
    _check_shapes(arrays, path)
    dataset = Dataset(**arrays)
    validate(dataset, path)
    return dataset


def _version(stored: np.ndarray) -> int | None:
    """The format version if ``stored`` is one integer, else None (refused as an unknown version)."""
    return int(stored) if stored.shape == () and stored.dtype.kind in "iu" else None


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
