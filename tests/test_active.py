"""Active learning with an oracle. The shipped SW Si PaiNN, transferred to Ge, learns from SW Ge as its oracle (the
loop does not care which code labels; tests/test_oracle.py checks the DFT one): the committee's members differ
before any label, the first active pick is the most disputed candidate, a fine-tuned committee fits its labels
better than the transferred start (without warning about a pseudopotential code's energy scale), E0 is unknown
until the first label, and both strategies label as many."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from mlpkit.active import ActiveConfig, active_learning, committee, label, labelled_test_set, propose
from mlpkit.calculator import SWCalculator
from mlpkit.data.dataset import unlabelled
from mlpkit.errors import MlpkitError
from mlpkit.selection import force_disagreement
from mlpkit.training.evaluate import evaluate
from mlpkit.transfer import TransferConfig, transferred
from mlpkit.viz.settings import pretrained_si

TRANSFER = TransferConfig().with_length_scaling("sw")
TINY = ActiveConfig(temperatures_k=(900.0,), strains=(0.0,), snapshots=3, interval_fs=20.0, equilibration_fs=40.0,
                    rounds=1, labels_per_round=1, members=2, steps=20, test_frames=2)


@pytest.fixture(scope="module")
def setting():
    source = pretrained_si()
    potential = transferred(source, TRANSFER).potential()
    oracle = SWCalculator("Ge")
    return source, oracle, propose(potential, TINY, seed=0), labelled_test_set(potential, oracle, TINY, seed=0)


def test_candidates_are_md_snapshots_of_each_condition(setting):
    _, _, candidates, test = setting
    assert len(candidates) == TINY.pool_size == 3 and len(test) == 2
    assert {atoms.info["group"] for atoms in candidates} == {"900 K, strain +0%"}
    assert all(len(atoms) == 8 and atoms.cell[0, 0] == pytest.approx(TINY.lattice_a) for atoms in candidates)
    displacements = [np.abs(atoms.positions - candidates[0].positions).max() for atoms in candidates[1:]]
    assert min(displacements) > 0.01  # snapshots 20 fs apart are different structures


def test_one_round_labels_the_most_disputed_candidate_and_then_knows_e0(setting):
    source, oracle, candidates, test = setting
    rounds = list(active_learning(source, oracle, candidates, test, TINY, "active", seed=0, transfer=TRANSFER))
    assert [r.labels for r in rounds] == [0, 1] and rounds[-1].chosen == ()
    first = rounds[0]
    assert first.disagreement_ev_per_a.shape == (3,) and first.disagreement_ev_per_a.min() > 1e-4  # perturbed members differ
    assert first.chosen == (int(np.argmax(first.disagreement_ev_per_a)),)
    assert math.isnan(first.energy_mae_mev_per_atom) and math.isfinite(rounds[1].energy_mae_mev_per_atom)
    assert all(0 < r.force_mae_ev_per_a < 2 for r in rounds)
    random = list(active_learning(source, oracle, candidates, test, TINY, "random", seed=0, transfer=TRANSFER))
    assert [r.labels for r in random] == [0, 1] and len(random[0].chosen) == 1
    assert random[0].force_mae_ev_per_a == pytest.approx(first.force_mae_ev_per_a)  # the same committee before any label


def test_every_labelled_frame_keeps_the_oracles_labels_of_its_own_structure(setting):
    # an ASE calculator keeps the results of the last structure it saw; a frame that read them from the shared
    # oracle would carry another frame's energy and forces
    _, oracle, candidates, _ = setting
    labelled = label(oracle, candidates[:3])
    for index, atoms in enumerate(candidates[:3]):
        alone = atoms.copy()
        alone.calc = SWCalculator("Ge")
        assert labelled.energy_ev[index] == pytest.approx(alone.get_potential_energy(), rel=1e-12)
        assert np.allclose(labelled.atoms(index).get_forces(), alone.get_forces(), rtol=1e-12, atol=1e-12)
    assert not np.allclose(labelled.energy_ev[0], labelled.energy_ev[1:])


def test_a_fine_tuned_committee_fits_its_labels_better_than_the_transferred_start(setting):
    source, oracle, candidates, _ = setting
    sw = label(oracle, candidates[:2])
    # on a pseudopotential code's scale (about −100 eV/atom), which the unit-slip check of data files would flag
    labelled = dataclasses.replace(sw, energy_ev=sw.energy_ev - 100.0 * sw.n_atoms)
    before = evaluate(committee(source, None, TINY, TRANSFER, seed=0), labelled)["force_mae_ev_per_a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the oracle's labels come from a code: no outlier warning
        trained = committee(source, labelled, dataclasses.replace(TINY, steps=150), TRANSFER, seed=0)
    assert trained.ensemble_size == 2
    assert evaluate(trained, labelled)["force_mae_ev_per_a"] < 0.92 * before  # 150 steps at the transfer rate: 0.89× measured
    spread = force_disagreement(trained, unlabelled(candidates))
    assert spread.min() > 0  # the members stay a committee after training


def test_settings_are_checked_where_they_enter():
    with pytest.raises(MlpkitError, match="members=1"):
        ActiveConfig(members=1)
    with pytest.raises(MlpkitError, match="cell_repeats"):
        ActiveConfig(cell_repeats=(2, 0, 1))
    with pytest.raises(MlpkitError, match="need 40 candidates, and the pool holds 6"):
        ActiveConfig(temperatures_k=(600.0,), strains=(0.0,), rounds=20)
    with pytest.raises(MlpkitError, match="strategy"):
        next(active_learning(None, None, [], None, TINY, "greedy"))
