"""The Stillinger–Weber reference: exact lattice facts, derivatives, invariances, periodic images."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_stress

from mlpkit import SWCalculator
from mlpkit.neighbors import build_neighbors
from mlpkit.potentials import SW_PARAMETERS, sw_energy_terms
from mlpkit.structures import diamond, rattled, strained

ELEMENTS = ["Si", "Ge"]


def energy_per_atom(atoms, element):
    atoms = atoms.copy()
    atoms.calc = SWCalculator(element)
    return atoms.get_potential_energy() / len(atoms)


def distorted_cell(element, seed):
    """A triclinic, rattled 64-atom cell: no symmetry left to hide a wrong derivative."""
    rng = np.random.default_rng(seed)
    atoms = strained(diamond(element), rng.uniform(-0.04, 0.04, 6))
    return rattled(atoms, 0.1, seed)


@pytest.mark.parametrize("element", ELEMENTS)
def test_diamond_cohesive_energy_is_minus_two_epsilon_at_the_pair_minimum_lattice(element):
    params = SW_PARAMETERS[element]
    expected_a = {"Si": 5.4310, "Ge": 5.6536}[element]
    assert params.lattice_constant_angstrom == pytest.approx(expected_a, abs=5e-4)
    assert energy_per_atom(diamond(element), element) == pytest.approx(-2 * params.epsilon_ev, abs=1e-9)


@pytest.mark.parametrize("element", ELEMENTS)
def test_lattice_constant_minimises_energy_and_zeroes_stress(element):
    a0 = SW_PARAMETERS[element].lattice_constant_angstrom
    scan = [energy_per_atom(diamond(element, a_angstrom=a0 * s), element) for s in (0.99, 1.0, 1.01)]
    assert scan[1] < scan[0] and scan[1] < scan[2]
    atoms = diamond(element)
    atoms.calc = SWCalculator(element)
    assert np.abs(atoms.get_stress()).max() < 1e-9


@pytest.mark.parametrize("element", ELEMENTS)
def test_three_body_term_vanishes_at_the_tetrahedral_angle(element):
    atoms = diamond(element)
    neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, SW_PARAMETERS[element].cutoff_a)
    with jax.enable_x64(True):
        two_body, three_body = sw_energy_terms(SW_PARAMETERS[element], atoms.positions, atoms.cell.array, neighbors)
    assert np.abs(np.asarray(three_body)).max() < 1e-12
    assert np.asarray(two_body) == pytest.approx(-2 * SW_PARAMETERS[element].epsilon_ev, abs=1e-9)


@pytest.mark.parametrize("structure", ["fcc", "bcc", "sc"])
def test_diamond_is_the_ground_state(structure):
    best = min(energy_per_atom(bulk("Si", structure, a=a), "Si") for a in np.linspace(2.3, 4.6, 24))
    assert best > energy_per_atom(diamond("Si"), "Si") + 0.05


@pytest.mark.parametrize("element", ELEMENTS)
def test_forces_are_minus_the_energy_gradient(element):
    atoms = distorted_cell(element, seed=1)
    atoms.calc = SWCalculator(element)
    forces = atoms.get_forces()
    step = 1e-5
    for index, axis in [(0, 0), (7, 1), (33, 2), (63, 0)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * step
            energies.append(energy_per_atom(moved, element) * len(moved))
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(forces[index, axis], abs=1e-6)


@pytest.mark.parametrize("element", ELEMENTS)
def test_stress_is_the_strain_derivative_of_the_energy(element):
    atoms = distorted_cell(element, seed=2)
    atoms.calc = SWCalculator(element)
    numerical = calculate_numerical_stress(atoms, eps=1e-6)
    assert atoms.get_stress() == pytest.approx(numerical, abs=1e-7)
    assert np.abs(numerical).max() > 1e-3  # the cell really is stressed


def test_energy_is_invariant_under_translation_rotation_and_permutation():
    atoms = distorted_cell("Si", seed=3)
    atoms.calc = SWCalculator("Si")
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()

    moved = atoms.copy()
    moved.positions += np.array([1.3, -0.7, 2.9])
    moved.calc = SWCalculator("Si")
    assert moved.get_potential_energy() == pytest.approx(energy, abs=1e-9)

    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rotation.T)
    turned.positions = atoms.positions @ rotation.T
    turned.calc = SWCalculator("Si")
    assert turned.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    assert turned.get_forces() == pytest.approx(forces @ rotation.T, abs=1e-9)

    order = np.random.default_rng(1).permutation(len(atoms))
    shuffled = atoms[order]
    shuffled.calc = SWCalculator("Si")
    assert shuffled.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    assert shuffled.get_forces() == pytest.approx(forces[order], abs=1e-9)


@pytest.mark.parametrize("element", ELEMENTS)
def test_cell_shorter_than_twice_the_cutoff_matches_its_supercell(element):
    small = rattled(bulk(element, "diamond", a=SW_PARAMETERS[element].lattice_constant_angstrom), 0.15, seed=4)
    assert small.cell.lengths().min() < 2 * SW_PARAMETERS[element].cutoff_a
    large = small.repeat((3, 2, 4))
    small.calc, large.calc = SWCalculator(element), SWCalculator(element)
    assert large.get_potential_energy() / len(large) == pytest.approx(small.get_potential_energy() / len(small), abs=1e-10)
    assert large.get_forces()[: len(small)] == pytest.approx(small.get_forces(), abs=1e-9)
    assert large.get_stress() == pytest.approx(small.get_stress(), abs=1e-10)


def test_agrees_with_jax_md_stillinger_weber():
    """An independent implementation (jax-md, all-pairs, minimum image) on a hot, distorted 64-atom cell."""
    from jax_md import energy, space

    atoms = rattled(diamond("Si"), 0.2, seed=5)
    atoms.calc = SWCalculator("Si")
    displacement, _ = space.periodic(atoms.cell.array[0, 0])
    with jax.enable_x64(True):
        reference = float(energy.stillinger_weber(displacement, epsilon=2.1683, cutoff=1.8 * 2.0951)(atoms.positions))
    assert atoms.get_potential_energy() == pytest.approx(reference, rel=1e-7)


def test_calculator_refuses_the_wrong_element_and_stress_without_periodicity():
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = diamond("Ge")
    atoms.calc = SWCalculator("Si")
    with pytest.raises(ValueError, match="pure Si"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="no Stillinger–Weber parameters"):
        SWCalculator("C")
    cluster = diamond("Si")
    cluster.pbc = False
    cluster.calc = SWCalculator("Si")
    assert cluster.get_potential_energy() > diamond("Si").get_global_number_of_atoms() * -4.3366
    with pytest.raises(PropertyNotImplementedError):
        cluster.get_stress()


def test_free_energy_equals_energy():
    atoms = distorted_cell("Ge", seed=6)
    atoms.calc = SWCalculator("Ge")
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()


def test_the_self_force_constant_of_a_displaced_atom_does_not_depend_on_the_displacement():
    # SW is smooth at the crystal: −F/h of one displaced atom is its harmonic force constant for any small h,
    # the reference the models' smoothness tests (tests/test_models.py, test_pretrained.py) are held to
    from conftest import self_force_constant_ev_per_a2

    calculator = SWCalculator("Si")
    constants = [self_force_constant_ev_per_a2(calculator, h) for h in (0.1, 0.01, 1e-3, 1e-4)]
    assert constants == pytest.approx([17.7] * 4, rel=0.01)
