"""The shipped SW data sets: checksums match the card, labels are true SW, generation is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import units

from mlpkit import SWCalculator
from mlpkit.data import read_extxyz
from mlpkit.data.card import card_checksums
from mlpkit.reference import MLEARN_TEMPERATURES_K, SWDataSpec, generate_sw_dataset
from mlpkit.fileio import sha256_of
from mlpkit.potentials import SW_PARAMETERS

SW_DATA = Path(__file__).resolve().parents[1] / "mlpkit" / "data" / "sw"


def test_shipped_files_match_the_checksums_in_the_data_card():
    recorded = card_checksums(SW_DATA)
    assert set(recorded) == {f"{e}/{s}.extxyz" for e in ("Si", "Ge") for s in ("training", "test")}
    for name, digest in recorded.items():
        assert sha256_of(SW_DATA / name) == digest, f"{name} differs from the data card"


@pytest.mark.parametrize("element", ["Si", "Ge"])
def test_shipped_sets_mirror_mlearn_and_carry_exact_sw_labels(element):
    training, test = read_extxyz(SW_DATA / element / "training.extxyz"), read_extxyz(SW_DATA / element / "test.extxyz")
    assert set(np.unique(test.group)) == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}
    temperatures = set(training.temperature_k[training.group == "AIMD-NVT"])
    assert temperatures == set(MLEARN_TEMPERATURES_K[element])
    assert 0.08 < len(test) / (len(test) + len(training)) < 0.12
    calculator = SWCalculator(element)
    for index in np.linspace(0, len(test) - 1, 6).astype(int):
        atoms = test.atoms(index)
        labels = atoms.calc.results
        calculator.calculate(atoms, ["energy", "forces", "stress"])
        # positions are stored to 1e-8 Å, so labels agree to about that times the force constants
        assert calculator.results["energy"] == pytest.approx(labels["energy"], abs=1e-6)
        assert calculator.results["forces"] == pytest.approx(labels["forces"], abs=1e-6)
        assert calculator.results["stress"] == pytest.approx(labels["stress"], abs=1e-8)


@pytest.mark.parametrize("element", ["Si", "Ge"])
def test_the_two_hottest_sets_are_liquid(element):
    """A harmonic crystal's potential energy rises by 3/2 k_B per kelvin; melting adds the latent heat.

    Between the solid temperatures the rise is close to 3/2 k_B ΔT; between the hottest solid and the
    first liquid temperature it exceeds that by a latent heat of order 0.3 eV/atom.
    """
    training = read_extxyz(SW_DATA / element / "training.extxyz")
    aimd = training.group == "AIMD-NVT"
    per_atom = training.energy_ev / training.n_atoms
    kelvin = np.array(MLEARN_TEMPERATURES_K[element])
    means = np.array([per_atom[aimd & (training.temperature_k == t)].mean() for t in kelvin])
    beyond_harmonic = np.diff(means) - 1.5 * units.kB * np.diff(kelvin)  # eV/atom
    assert np.abs(beyond_harmonic[:2]).max() < 0.03
    assert beyond_harmonic[2] > 0.15
    assert means[0] == pytest.approx(-2 * SW_PARAMETERS[element].epsilon_ev + 1.5 * units.kB * 300, abs=0.01)


def test_generation_is_deterministic_for_a_seed():
    spec = SWDataSpec("Ge", seed=5).quick()
    first, second = generate_sw_dataset(spec, progress=False), generate_sw_dataset(spec, progress=False)
    assert first == second
    assert len(first) == 61 + 5 * 2 + 2 * 2 + 2 * 1
