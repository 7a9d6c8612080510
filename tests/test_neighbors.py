"""The neighbour list against ASE's reference builder, on cells of every kind, and the precision of geometry."""

import jax
import numpy as np
import pytest
from ase.neighborlist import primitive_neighbor_list

from mlpkit.errors import MlpkitError
from mlpkit.neighbors import build_neighbors, neighbor_pairs
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
