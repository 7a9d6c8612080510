"""The DFT oracle: PySCF's forces are the derivatives of its energy, labels come back from the cache without a
second calculation, and cells it cannot afford or describe are refused before any work. One 8-atom Ge cell,
labelled three times (the cell and two displaced copies), about half a minute on two cores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlpkit.errors import MlpkitError
from mlpkit.oracle import DFTOracle, DFTSettings, label_key

SETTINGS = DFTSettings(conv_tol_ha=1e-10)  # tight, so that central differences resolve 1e-3 eV/Å


def displaced_ge():
    """A thermal snapshot: every atom moved, one by 0.1 Å (integer occupations would not converge here)."""
    atoms = bulk("Ge", "diamond", a=5.658, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.positions[0] += [0.1, 0.05, 0.0]
    return atoms


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """(cache folder, the displaced 8-atom cell with the oracle's forces)."""
    cache = tmp_path_factory.mktemp("dft-cache")
    atoms = displaced_ge()
    atoms.calc = DFTOracle(SETTINGS, cache_dir=cache)
    atoms.get_forces()
    assert atoms.calc.computed == 1
    return cache, atoms


def test_oracle_forces_are_central_differences_of_its_energy(labelled):
    cache, atoms = labelled
    forces = atoms.get_forces()
    assert np.abs(forces.sum(axis=0)).max() < 1e-4  # Newton's third law: no net force on a periodic cell
    assert np.abs(forces[0]).max() > 0.5  # the displaced atom is pushed back
    step_a = 1e-3
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 0] += sign * step_a
        moved.calc = DFTOracle(SETTINGS, cache_dir=cache)
        energies.append(moved.get_potential_energy())
    assert forces[0, 0] == pytest.approx(-(energies[0] - energies[1]) / (2 * step_a), abs=1e-3)


def test_a_cached_label_is_returned_without_computing_again(labelled):
    cache, atoms = labelled
    again = atoms.copy()
    again.calc = DFTOracle(SETTINGS, cache_dir=cache)
    np.testing.assert_array_equal(again.get_forces(), atoms.get_forces())
    assert again.calc.computed == 0
    other = dataclasses.replace(SETTINGS, xc="pbe")  # other settings: another key, so never served this label
    assert label_key(atoms, other) != label_key(atoms, SETTINGS)


@pytest.mark.parametrize("cell, message", [
    (bulk("Ge", "diamond", a=5.658, cubic=True).repeat(2), r"64-atom cell would take about \d+ s .* over the budget of 60 s"),
    (bulk("C", "diamond", a=3.57, cubic=True), r"cover Si and Ge, not \['C'\]"),
    (Atoms("Ge2", positions=[[0, 0, 0], [2.45, 0, 0]]), "periodic cells only"),
])
def test_cells_the_oracle_cannot_do_are_refused_before_any_work(tmp_path, cell, message):
    cell.calc = DFTOracle(cache_dir=tmp_path)
    with pytest.raises(MlpkitError, match=message):
        cell.get_potential_energy()
    assert cell.calc.computed == 0 and not list(tmp_path.iterdir())


def test_settings_are_checked():
    with pytest.raises(MlpkitError, match=r"kpoints \(2, 2, 2\): .* Γ point only"):
        DFTSettings(kpoints=(2, 2, 2))
    with pytest.raises(MlpkitError, match="max_seconds"):
        DFTSettings(max_seconds=-1.0)
    with pytest.raises(MlpkitError, match="smearing_ha"):
        DFTSettings(smearing_ha=0.0)
    assert DFTSettings().estimated_seconds(32) == 4 * DFTSettings().estimated_seconds(8)
