"""The neighbour list against ASE's reference builder, on cells of every kind, and the precision of geometry."""

import dataclasses

import jax
import numpy as np
import pytest
from ase.neighborlist import primitive_neighbor_list

from mlpkit.errors import MlpkitError
from mlpkit.neighbors import build_neighbors, cell_grid, device_neighbors, neighbor_pairs
from mlpkit.potentials import energy_forces_stress, sw_potential
from mlpkit.structures import diamond, rattled


def sorted_pairs(first, second, shift):
    return sorted(zip(first.tolist(), second.tolist(), map(tuple, np.asarray(shift, int).tolist())))


def random_case(seed: int):
    """Few atoms, partly outside the cell, in cells from cubic to strongly skewed, shorter and longer
    than the cutoff, periodic along any subset of directions."""
    rng = np.random.default_rng(seed)
    cell_a = np.diag(rng.uniform(2.0, 12.0, 3)) + (rng.uniform(-2.0, 2.0, (3, 3)) if seed % 2 else 0.0)
    pbc = rng.integers(0, 2, 3).astype(bool) if seed % 3 else np.ones(3, bool)
    positions_a = rng.uniform(-0.5, 1.5, (int(rng.integers(1, 40)), 3)) @ cell_a
    return positions_a, cell_a, pbc, float(rng.uniform(1.0, 7.0))


@pytest.mark.parametrize("seed", range(40))
def test_pairs_match_ase(seed):
    positions_a, cell_a, pbc, cutoff_a = random_case(seed)
    expected = primitive_neighbor_list("ijS", pbc, cell_a, positions_a, cutoff_a, self_interaction=False)
    assert sorted_pairs(*neighbor_pairs(positions_a, cell_a, pbc, cutoff_a)) == sorted_pairs(*expected)


def test_pairs_are_within_the_cutoff_and_sorted():
    positions_a, cell_a, pbc, cutoff_a = random_case(7)
    first, second, shift = neighbor_pairs(positions_a, cell_a, pbc, cutoff_a)
    distances = np.linalg.norm(positions_a[second] + shift @ cell_a - positions_a[first], axis=1)
    assert distances.max() < cutoff_a
    assert np.all(np.diff(first * len(positions_a) + second) >= 0)


def test_molecule_without_a_cell():
    positions_a = np.array([[0.0, 0.0, 0.0], [2.35, 0.0, 0.0], [0.0, 3.0, 0.0], [9.0, 9.0, 9.0]])
    neighbors = build_neighbors(positions_a, np.zeros((3, 3)), [False] * 3, 3.5)
    rows, _ = np.nonzero(neighbors.mask)
    assert sorted(zip(rows.tolist(), neighbors.index[neighbors.mask].tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]  # 1–2: 3.8 Å
    assert not neighbors.shift.any()


def test_slab_with_a_zero_vacuum_vector():
    positions_a, cell_a, _, cutoff_a = random_case(2)
    flat = cell_a.copy()
    flat[2] = 0.0
    pbc = np.array([True, True, False])
    reference = cell_a.copy()
    reference[2] = [0.0, 0.0, 100.0]  # any vector will do where the cell is not periodic
    expected = primitive_neighbor_list("ijS", pbc, reference, positions_a, cutoff_a, self_interaction=False)
    assert sorted_pairs(*neighbor_pairs(positions_a, flat, pbc, cutoff_a)) == sorted_pairs(*expected)


def test_flat_periodic_cell_is_refused():
    cell_a = np.diag([5.0, 5.0, 0.0])
    with pytest.raises(MlpkitError, match="linearly dependent"):
        build_neighbors(np.zeros((2, 3)), cell_a, [True] * 3, 3.0)


def test_dense_rows_pad_to_the_capacity():
    positions_a, cell_a, pbc, cutoff_a = random_case(5)
    neighbors = build_neighbors(positions_a, cell_a, pbc, cutoff_a, capacity=64)
    assert neighbors.capacity >= 64 and neighbors.capacity % 8 == 0
    padding = ~neighbors.mask
    assert np.all(neighbors.index[padding] == np.nonzero(padding)[0]) and not neighbors.shift[padding].any()
    assert neighbors.mask.sum() == len(neighbor_pairs(positions_a, cell_a, pbc, cutoff_a)[0])


def dense_pairs(neighbors):
    rows, slots = np.nonzero(np.asarray(neighbors.mask))
    return sorted_pairs(rows, np.asarray(neighbors.index)[rows, slots], np.asarray(neighbors.shift)[rows, slots])


@pytest.mark.parametrize("seed", range(6))
def test_device_cell_list_finds_the_k_d_tree_pairs(seed):
    """Large rattled cells, skewed or not, with atoms far outside the cell: the same pairs, images included."""
    rng = np.random.default_rng(seed)
    atoms = rattled(diamond("Si", tuple(rng.integers(3, 6, 3))), 0.3, seed)
    cell_a = atoms.cell.array @ (np.eye(3) + (rng.uniform(-0.3, 0.3, (3, 3)) if seed % 2 else 0.0))
    positions_a = atoms.get_scaled_positions() @ cell_a + rng.integers(-3, 4, (len(atoms), 3)) @ cell_a
    cutoff_a = float(rng.uniform(3.0, 5.0))
    grid = cell_grid(cell_a, [True] * 3, cutoff_a, positions_a)
    expected = build_neighbors(positions_a, cell_a, [True] * 3, cutoff_a)
    found, needed = jax.jit(device_neighbors, static_argnums=(3, 4))(np.float32(positions_a), np.float32(cell_a), cutoff_a,
                                                                      grid, expected.capacity)
    assert dense_pairs(found) == dense_pairs(expected)
    assert needed[0] == np.bincount(np.nonzero(expected.mask)[0]).max() and needed[1] <= grid.per_bin


def test_device_cell_list_reports_what_it_could_not_hold():
    """Too-narrow rows or bins lose pairs, and ``needed`` says how wide they had to be."""
    atoms = diamond("Si", (4, 4, 4))
    grid = cell_grid(atoms.cell.array, [True] * 3, 4.0, atoms.positions)
    complete, needed = device_neighbors(atoms.positions, atoms.cell.array, 4.0, grid, 16)
    assert needed[0] == 16 and len(dense_pairs(complete)) == 16 * len(atoms)  # 4 + 12 neighbours within 4 Å
    narrow, narrow_needed = device_neighbors(atoms.positions, atoms.cell.array, 4.0, grid, 8)
    assert len(dense_pairs(narrow)) == 8 * len(atoms) and narrow_needed[0] == 16
    crowded, crowded_needed = device_neighbors(atoms.positions, atoms.cell.array, 4.0, dataclasses.replace(grid, per_bin=1), 16)
    assert crowded_needed[1] == needed[1] > 1 and len(dense_pairs(crowded)) < 16 * len(atoms)


def test_cell_list_applies_only_to_periodic_cells_three_cutoffs_wide():
    atoms = diamond("Si", (3, 3, 3))  # 16.3 Å
    assert cell_grid(atoms.cell.array, [True] * 3, 5.0, atoms.positions).bins == (3, 3, 3)
    assert cell_grid(atoms.cell.array, [True] * 3, 5.5, atoms.positions) is None
    assert cell_grid(atoms.cell.array, [True, True, False], 5.0, atoms.positions) is None


def dot_precisions(jaxpr) -> list:
    """The precision of every matrix product in ``jaxpr``, sub-programs (jit, custom derivatives) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.params["precision"])
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                found += dot_precisions(inner)
    return found


def test_sw_geometry_asks_for_full_float32_precision():
    """On a GPU, JAX's default float32 matrix product rounds inputs to TF32 (10-bit mantissa): positions
    40 Å from the origin would move by 0.02 Å. Every product in SW's energy, forces and stress (strain,
    periodic images, bond angles, and their derivatives) must ask for full precision. A CPU computes in
    full precision either way, so the request itself is what is checked."""
    atoms = rattled(diamond("Si", (2, 2, 2)), 0.05, seed=0)
    potential = sw_potential("Si")
    neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, potential.cutoff_a)
    evaluate = energy_forces_stress(potential.energy_fn)
    jaxpr = jax.make_jaxpr(evaluate)(np.float32(atoms.positions), np.float32(atoms.cell.array), atoms.numbers, neighbors)
    precisions = dot_precisions(jaxpr.jaxpr)
    assert len(precisions) >= 4
    assert all(p is not None and all(q == jax.lax.Precision.HIGHEST for q in p) for p in precisions), precisions
