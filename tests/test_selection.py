"""Pool rankings. Active: the disagreement is the members' force spread, a perfect crystal (zero force in every
member, by symmetry) ranks last, and the ranking gives nested selections. Diverse: the descriptors are
invariant (rotations, atom order) and vanish in spread where every atom is equivalent; farthest-point
sampling is nested, deterministic, blind to the pool's order, covers separated clusters and keeps the
groups' shares."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.calculator import MLPCalculator, SWCalculator
from mlpkit.data.dataset import from_frames
from mlpkit.errors import MlpkitError
from mlpkit.selection import (disputed_and_diverse, farthest_point_order, force_disagreement, ranked_by_disagreement,
                              structure_descriptors)
from mlpkit.structures import diamond
from conftest import distorted, random_checkpoint, rigidly_moved


@pytest.fixture(scope="module")
def frames():
    structures = [distorted(seed=seed) for seed in range(3)] + [diamond("Si")]  # rattled cells, then a perfect crystal
    for atoms in structures:
        atoms.calc = SWCalculator("Si")
        atoms.get_forces()
    return from_frames(structures)


def test_disagreement_is_the_members_force_spread_and_a_perfect_crystal_ranks_last(frames):
    checkpoint = random_checkpoint("painn", members=3)
    disagreement = force_disagreement(checkpoint, frames)
    for index in range(len(frames)):
        atoms = frames.atoms(index)
        atoms.calc = MLPCalculator(checkpoint)
        atoms.get_forces()
        spread = np.sqrt(np.sum(atoms.calc.results["forces_std"] ** 2, axis=1)).mean()
        assert disagreement[index] == pytest.approx(spread, rel=1e-3, abs=1e-6)
    assert disagreement[:3].min() > 0.01 and disagreement[3] < 1e-3  # every member predicts zero forces in diamond (to float32 rounding)
    order = ranked_by_disagreement(disagreement)
    assert order[-1] == 3 and list(disagreement[order]) == sorted(disagreement, reverse=True)
    with pytest.raises(MlpkitError, match="at least two members"):
        force_disagreement(checkpoint.member(0), frames)


def test_ranking_is_a_permutation_whose_prefixes_are_nested():
    disagreement = np.array([0.3, 0.1, 0.5, 0.1, 0.2])
    order = ranked_by_disagreement(disagreement)
    assert order.tolist() == [2, 0, 4, 1, 3]  # most disputed first; ties keep pool order
    assert set(order[:2]) <= set(order[:4]) and sorted(order) == list(range(5))


def test_descriptors_are_invariant_and_have_no_spread_where_every_atom_is_equivalent(frames):
    checkpoint = random_checkpoint("mace")
    crystal = frames.atoms(3)
    turned, _ = rigidly_moved(frames.atoms(0), seed=1)
    reordered = frames.atoms(0)[np.random.default_rng(2).permutation(len(frames.atoms(0)))]
    for atoms in (turned, reordered):
        atoms.calc = SWCalculator("Si")
        atoms.get_forces()
    descriptors = structure_descriptors(checkpoint, from_frames([frames.atoms(0), turned, reordered, crystal]))
    width = descriptors.shape[1] // 2  # [mean | spread] of the 32 quick features
    assert descriptors.shape == (4, 64) and np.abs(descriptors[0, width:]).max() > 1e-2
    np.testing.assert_allclose(descriptors[1:3], descriptors[[0, 0]], atol=1e-4)  # rotation, atom order
    assert np.abs(descriptors[3, width:]).max() < 1e-4  # diamond: every atom sees the same environment


def test_farthest_point_order_is_nested_deterministic_and_blind_to_pool_order():
    descriptors = np.random.default_rng(0).normal(size=(60, 5))
    order = farthest_point_order(descriptors, seed=3)
    assert sorted(order) == list(range(60))  # a ranking: its prefixes are the nested selections
    np.testing.assert_array_equal(order, farthest_point_order(descriptors, seed=3))
    assert not np.array_equal(order[:5], farthest_point_order(descriptors, seed=4)[:5])  # the seed picks the start
    permutation = np.random.default_rng(1).permutation(60)
    np.testing.assert_array_equal(permutation[farthest_point_order(descriptors[permutation], seed=3)], order)


def test_diverse_selection_covers_two_separated_clusters_where_random_may_not():
    rng = np.random.default_rng(0)
    cluster = np.r_[np.zeros(45, dtype=int), np.ones(5, dtype=int)]  # 45 frames of one kind, 5 of another
    descriptors = rng.normal(size=(50, 4)) * 0.1 + 10.0 * cluster[:, None]
    assert set(cluster[farthest_point_order(descriptors, seed=0)[:2]]) == {0, 1}
    assert set(cluster[farthest_point_order(descriptors, seed=7)[:2]]) == {0, 1}
    assert set(cluster[np.random.default_rng(0).permutation(50)[:2]]) == {0}  # the study's seeded random pick
    groups = np.where(np.arange(50) % 5 == 0, "vacancy", "bulk")  # declared groups: a fifth are vacancies
    stratified = farthest_point_order(descriptors, seed=0, groups=groups)
    for n in (5, 10, 25):
        assert np.sum(groups[stratified[:n]] == "vacancy") == n // 5  # each prefix keeps the groups' shares


def test_a_disputed_batch_spreads_over_environments_and_away_from_the_labelled_ones():
    # two tight clusters of descriptors: A (frames 0-3) disputed most, B (4-7) a little less, C (8-9) hardly at all
    rng = np.random.default_rng(0)
    centres = np.repeat([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], [4, 4, 2], axis=0)
    descriptors = centres + 0.01 * rng.normal(size=centres.shape)
    disagreement = np.array([1.0, 0.99, 0.98, 0.97, 0.8, 0.79, 0.78, 0.77, 0.1, 0.1])
    assert list(ranked_by_disagreement(disagreement)[:2]) == [0, 1]  # disagreement alone: two copies of A
    assert list(disputed_and_diverse(disagreement, descriptors, 2)) == [0, 4]  # one of A, then one of B
    labelled_a = descriptors[:1] + 0.001
    assert disputed_and_diverse(disagreement, descriptors, 1, labelled=labelled_a)[0] in (4, 5, 6, 7)  # A is known already
    with pytest.raises(MlpkitError, match="cannot choose 11 frames from a pool of 10"):
        disputed_and_diverse(disagreement, descriptors, 11)
