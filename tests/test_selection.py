"""Active selection: the disagreement is the members' force spread, a perfect crystal (zero force in every
member, by symmetry) ranks last, and the ranking gives nested selections."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.calculator import MLPCalculator, SWCalculator
from mlpkit.data.dataset import from_frames
from mlpkit.errors import MlpkitError
from mlpkit.selection import force_disagreement, ranked_by_disagreement
from mlpkit.structures import diamond
from conftest import distorted, random_checkpoint


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
