"""DFT reference values for the out-of-target properties: the ground states of the mlearn sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

    dataset = read_mlearn(Path(mlearn_dir) / element / "training.json")
    best = None
    for index in range(len(dataset)):
        if str(dataset.group[index]) != "Elastic":
            continue
        atoms = dataset.atoms(index)
        lengths_a = atoms.cell.lengths()
        cubic = np.allclose(atoms.cell.array, np.diag(lengths_a), atol=1e-4) and np.ptp(lengths_a) < 1e-4
        energy_ev = atoms.get_potential_energy() / len(atoms)
        if cubic and (best is None or energy_ev < best[0]):
            best = (energy_ev, (8.0 * atoms.get_volume() / len(atoms)) ** (1.0 / 3.0))
    if best is None:
        raise MlpkitError(f"{Path(mlearn_dir) / element / 'training.json'}: no unstrained cubic cell in the Elastic group")
    return {"a0_angstrom": float(best[1]), "e0_ev_per_atom": float(best[0])}
