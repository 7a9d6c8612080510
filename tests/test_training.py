"""Training: the loss falls, the force error drops ≥ 5× on SW silicon, runs are deterministic, and
member k of a vmapped ensemble is the model trained alone with seed k."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.data import load_dataset, select_where, sw_data_path, train_val_split
from mlpkit.data.dataset import from_frames
from mlpkit.models import ModelConfig
from mlpkit.models.energy import fit_normalisation
from mlpkit.models.graph import ElementTable
from mlpkit.structures import diamond, rattled
from mlpkit.training import TrainConfig, evaluate, train
from mlpkit.training.batches import ATOM_BUCKET, BatchPlan

TINY = TrainConfig(model=ModelConfig("painn", features=16, layers=1), max_epochs=3, warmup_epochs=1, batch_size=4)


def labelled(atoms, energy_ev, forces_ev_per_a):
    atoms.calc = SinglePointCalculator(atoms, energy=energy_ev, forces=forces_ev_per_a)
    return atoms


@pytest.fixture(scope="module")
def silicon():
    return load_dataset(sw_data_path("Si", "training"))


def test_force_error_falls_five_fold_on_solid_sw_silicon(silicon):
    solid = select_where(silicon, max_temperature_k=1000)  # 300 K and 843 K snapshots
    train_set, validation_set = train_val_split(solid, 0.15, seed=0)
    config = dataclasses.replace(TrainConfig().quick(), max_epochs=25, learning_rate=5e-3)
    seen = []
    result = train(train_set, validation_set, config, progress=False, callback=lambda epoch, m: seen.append(epoch))
    first, best = result.history[0], result.history[int(result.best_epoch[0])]
    assert seen == list(range(len(result.history)))
    assert result.history[-1]["train_loss"] < 0.2 * result.history[1]["train_loss"]
    assert best["force_mae_ev_per_a"] < first["force_mae_ev_per_a"] / 5
    assert best["force_mae_ev_per_a"] == min(m["force_mae_ev_per_a"] for m in result.history)
    assert evaluate(result.checkpoint, validation_set)["force_mae_ev_per_a"] == pytest.approx(best["force_mae_ev_per_a"], rel=1e-4)


def test_ensemble_member_equals_the_same_seed_trained_alone(silicon):
    train_set, validation_set = silicon.first(12), silicon.select(np.arange(12, 16))
    config = dataclasses.replace(TINY, data_seed=7)
    ensemble = train(train_set, validation_set, dataclasses.replace(config, seeds=(3, 5)), progress=False)
    alone = train(train_set, validation_set, dataclasses.replace(config, seeds=(5,)), progress=False)
    member, single = ensemble.checkpoint.member(1).params, alone.checkpoint.params
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), member, single)
    first_member = ensemble.checkpoint.member(0).params
    differs = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), first_member, single)
    assert any(jax.tree_util.tree_leaves(differs))


def test_training_is_deterministic_given_its_seeds(silicon):
    train_set, validation_set = silicon.first(8), silicon.select(np.arange(8, 12))
    runs = [train(train_set, validation_set, TINY, progress=False) for _ in range(2)]
    same = jax.tree_util.tree_map(np.array_equal, runs[0].checkpoint.params, runs[1].checkpoint.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert [m["train_loss"] for m in runs[0].history[1:]] == [m["train_loss"] for m in runs[1].history[1:]]


def test_energy_shift_is_the_least_squares_energy_of_each_element():
    e0 = {14: -5.4, 32: -4.5}
    frames = []
    for k, ge_count in enumerate([0, 3, 8]):
        atoms = rattled(diamond("Si", (1, 1, 1)), 0.05, k)
        atoms.numbers[:ge_count] = 32
        energy = sum(e0[z] for z in atoms.numbers)
        frames.append(labelled(atoms, energy, np.full((len(atoms), 3), 0.1 * (k + 1))))
    dataset = from_frames(frames)
    normalisation = fit_normalisation(dataset, ElementTable(("Si", "Ge")))
    assert normalisation.shift_ev == pytest.approx((-5.4, -4.5), abs=1e-9)
    assert all(scale > 0 for scale in normalisation.scale_ev)


def test_batches_pad_mixed_sizes_into_buckets_and_keep_every_frame(silicon):
    small = rattled(diamond("Si", (1, 1, 1)), 0.05, 0)
    mixed = from_frames([labelled(small, -30.0, np.zeros((8, 3)))])
    dataset = silicon.first(5)
    plan = BatchPlan(dataset, 5.0, batch_size=4)
    sizes = sorted(plan.buckets)
    assert sizes == [ATOM_BUCKET * 2]
    seen = np.concatenate([b.energy_ev[b.n_atoms > 0] for b in plan.batches(np.random.default_rng(0))])
    np.testing.assert_allclose(sorted(seen), sorted(dataset.energy_ev), rtol=1e-7)
    plan_mixed = BatchPlan(mixed, 5.0, batch_size=4)
    batch = next(plan_mixed.batches())
    assert batch.positions_a.shape == (4, ATOM_BUCKET, 3)
    assert list(batch.n_atoms) == [8, 0, 0, 0]
    assert not batch.neighbors.mask[0, 8:].any() and (batch.species[0, 8:] == 0).all()


def test_float64_training_keeps_double_precision_weights(silicon):
    config = dataclasses.replace(TINY, max_epochs=1, float64=True)
    result = train(silicon.first(4), silicon.select([4, 5]), config, progress=False)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(result.checkpoint.params)} == {np.dtype(np.float64)}
    assert np.isfinite(result.history[-1]["force_mae_ev_per_a"])
