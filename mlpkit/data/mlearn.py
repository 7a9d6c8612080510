"""The mlearn DFT data (Zuo et al., J. Phys. Chem. A 124, 731 (2020)): reader and verified downloader.

Each JSON entry holds a pymatgen Structure dict, ``group``, ``description`` and ``outputs`` with the total
``energy`` (eV), ``forces`` (eV/Å) and ``virial_stress`` (kBar, VASP order [xx, yy, zz, xy, yz, zx],
compressive positive). The stress is stored in ASE's convention: −0.1 GPa × [v0, v1, v2, v4, v5, v3].
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.data.dataset import Dataset, from_frames
from mlpkit.elements import unknown_elements
from mlpkit.errors import DataError
from mlpkit.fileio import sha256_of, write_bytes_atomic

# the unstrained diamond cells of the mlearn Elastic groups (Zuo et al. 2020; PBE, same settings for both)
MLEARN_GROUND_STATE = {
    "Si": {"a0_angstrom": 5.4687, "e0_ev_per_atom": -5.42532},
    "Ge": {"a0_angstrom": 5.7542, "e0_ev_per_atom": -4.49252},
}

MLEARN_URL = "https://raw.githubusercontent.com/materialsvirtuallab/mlearn/10c427a5480c6281c15c64efaf869b03be04818f/data"
MLEARN_SHA256 = {
    "Si/training.json": "ae6d4b0a65b00e0fcf7ba0a6fad366716710d2f0d21d70199203089c6866b500",
    "Si/test.json": "d452b30a89f23bff76f7cc529b7b6c2d159ea81ccd5a4599fb1a18207654fa91",
    "Ge/training.json": "43dee02009a5167f94c7aafce19051222bcfc328c46181750cc2a2018187ca00",
    "Ge/test.json": "737ea6159c9dd27ebee7fb8ffae22f15e20466884927771248ca4f5b2cd3f093",
}
KBAR_TO_EV_PER_A3 = 0.1 * units.GPa
_TEMPERATURE = re.compile(r"at (\d+(?:\.\d+)?) K")


def read_mlearn(path) -> Dataset:
    """Read an mlearn ``training.json`` / ``test.json`` into a validated Dataset."""
    try:
        entries = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as error:
        raise DataError(f"cannot be read: {error.strerror or error}", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"not valid JSON: {error}", path=path) from None
    if not isinstance(entries, list) or not entries:
        raise DataError("expected a non-empty JSON list of entries", path=path)
    return from_frames([_entry_to_atoms(entry, path, index) for index, entry in enumerate(entries)], path)


def _entry_to_atoms(entry, path, index) -> Atoms:
    def get(container, *keys):
        value = container
        for depth, key in enumerate(keys):
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise DataError("missing", path=path, frame=index, field=".".join(map(str, keys[: depth + 1]))) from None
        return value

    def numbers(field, value, shape):
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise DataError("not numeric", path=path, frame=index, field=field) from None
        if array.shape != shape:
            raise DataError(f"expected shape {shape}, got {array.shape}", path=path, frame=index, field=field)
        return array

    sites = get(entry, "structure", "sites")
    if not isinstance(sites, list) or not sites:
        raise DataError("expected a non-empty list", path=path, frame=index, field="structure.sites")
    n_atoms = len(sites)
    symbols = []
    for site_index, site in enumerate(sites):
        symbol = get(site, "species", 0, "element")
        if not isinstance(symbol, str):
            raise DataError("element is not a symbol", path=path, frame=index, field=f"structure.sites.{site_index}")
        symbols.append(symbol)
    unknown = unknown_elements(symbols)
    if unknown:
        raise DataError(f"unknown element {', '.join(map(repr, unknown))}", path=path, frame=index,
                        field="structure.sites.species")
    atoms = Atoms(
        symbols=symbols,
        positions=numbers("structure.sites.xyz", [get(site, "xyz") for site in sites], (n_atoms, 3)),
        cell=numbers("structure.lattice.matrix", get(entry, "structure", "lattice", "matrix"), (3, 3)),
        pbc=True,
    )
    virial_kbar = numbers("outputs.virial_stress", get(entry, "outputs", "virial_stress"), (6,))
    stress = -KBAR_TO_EV_PER_A3 * virial_kbar[[0, 1, 2, 4, 5, 3]]
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=float(numbers("outputs.energy", get(entry, "outputs", "energy"), ())),
        forces=numbers("outputs.forces", get(entry, "outputs", "forces"), (n_atoms, 3)),
        stress=stress,
    )
    atoms.info["group"] = str(entry.get("group", ""))
    match = _TEMPERATURE.search(str(entry.get("description", "")))
    if match:
        atoms.info["temperature_k"] = float(match.group(1))
    return atoms


def download_mlearn(destination, elements=("Si", "Ge"), base_url: str = MLEARN_URL) -> Path:
    """Fetch the mlearn files into ``destination/{element}/{training,test}.json``, checking SHA-256.

    Files already present with the right checksum are kept; a download whose checksum differs is
    refused and nothing is written. Needs a network (or a ``file://`` mirror as ``base_url``).
    """
    destination = Path(destination)
    for element in elements:
        for split in ("training", "test"):
            name = f"{element}/{split}.json"
            if name not in MLEARN_SHA256:
                raise ValueError(f"mlearn has no verified file {name}; elements with checksums: Si, Ge")
            target = destination / name
            if target.exists() and sha256_of(target) == MLEARN_SHA256[name]:
                continue
            url = f"{base_url}/{name}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    payload = response.read()
            except OSError as error:  # URLError and socket errors are OSErrors
                raise DataError(f"download failed: {error}", path=url) from None
            digest = hashlib.sha256(payload).hexdigest()
            if digest != MLEARN_SHA256[name]:
                raise DataError(f"SHA-256 {digest} does not match the published {MLEARN_SHA256[name]}; refused", path=url)
            write_bytes_atomic(target, payload)
    return destination
