"""Training: the loss falls, the force error drops ≥ 5× on SW silicon, runs are deterministic, and
member k of a vmapped ensemble is the model trained alone with seed k."""

from __future__ import annotations

import csv
import dataclasses
import json

import jax
import numpy as np
import pytest
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.calculator import MLPCalculator
from mlpkit.cli import build_parser, main
from mlpkit.data import load_dataset, select_where, sw_data_path, train_val_split
from mlpkit.data.dataset import concatenate, from_frames
from mlpkit.errors import MlpkitError
from mlpkit.models import ModelConfig, init_params, parameter_blocks
from mlpkit.models.energy import fit_normalisation
from mlpkit.models.graph import ElementTable
from mlpkit.structures import diamond, rattled
from mlpkit.training import LossWeights, TrainConfig, evaluate, train
from mlpkit.training.loss import weighted_validation_loss
from mlpkit.training.batches import ATOM_BUCKET, BatchPlan, bucket_sizes
from mlpkit.training.train import _schedule, epoch_rates, plateau_reductions, update_best

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
    config = dataclasses.replace(TrainConfig(model=ModelConfig("painn")).quick(), max_epochs=25, learning_rate=5e-3)
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


def test_a_late_energy_stage_switches_the_loss_and_chooses_its_best_within_it(silicon):
    train_set, validation_set = silicon.first(8), silicon.select(np.arange(8, 12))
    plain = dataclasses.replace(TINY, max_epochs=6)
    late = dataclasses.replace(plain, late_weights=LossWeights(energy=1000.0, forces=1.0), late_fraction=0.5)
    assert late.late_start_epoch == 4 and plain.late_start_epoch is None
    runs = {name: train(train_set, validation_set, config, progress=False) for name, config in (("plain", plain), ("late", late))}
    losses = [m["train_loss"] for m in runs["late"].history]
    assert losses[1:4] == [m["train_loss"] for m in runs["plain"].history[1:4]]  # the same run up to the stage
    assert losses[4] > 3 * losses[3]  # energies now weigh 1000× in the loss
    stage = runs["late"].history[4:]  # one member: the history holds its own metrics
    chosen = 4 + int(np.argmin([weighted_validation_loss(m, late.late_weights) for m in stage]))
    assert runs["late"].best_epoch[0] == chosen  # chosen by the stage's own objective, not by the force MAE
    assert runs["late"].checkpoint.metadata["best_validation_force_mae_ev_per_a"][0] == pytest.approx(
        runs["late"].history[chosen]["force_mae_ev_per_a"])
    energy = {name: run.history[int(run.best_epoch[0])]["energy_mae_mev_per_atom"] for name, run in runs.items()}
    assert energy["late"] < energy["plain"]
    with pytest.raises(MlpkitError, match="late_fraction"):
        dataclasses.replace(late, late_fraction=1.0)


def test_a_plateau_reduces_the_rate_on_a_flat_score_and_not_on_a_falling_one():
    assert plateau_reductions([0.1 / (1 + epoch) for epoch in range(30)], patience_epochs=3) == 0
    assert plateau_reductions([0.1] * 9, patience_epochs=3) == 2  # epoch 0 sets the best; 4 stale epochs, twice
    config = dataclasses.replace(TINY, schedule="plateau", plateau_patience_epochs=3, plateau_factor=0.5, max_epochs=50)
    schedule = _schedule(config, steps_per_epoch=2)
    flat = [{"force_mae_ev_per_a": 0.1}] * 9
    falling = [{"force_mae_ev_per_a": 0.1 / (1 + epoch)} for epoch in range(9)]
    assert epoch_rates(config, schedule, 9, falling)(18) == pytest.approx(config.learning_rate)  # held after warm-up
    assert epoch_rates(config, schedule, 9, flat)(18) == pytest.approx(config.learning_rate / 4)
    decay = dataclasses.replace(config, schedule="decay")
    assert epoch_rates(decay, _schedule(decay, 2), 9, flat)(18) == epoch_rates(decay, _schedule(decay, 2), 9, falling)(18)
    late = dataclasses.replace(config, late_weights=LossWeights(energy=10.0), late_fraction=0.2, late_learning_rate=1e-4)
    assert epoch_rates(late, schedule, late.late_start_epoch, flat)(80) == 1e-4
    assert epoch_rates(late, schedule, late.late_start_epoch - 1, flat)(18) == pytest.approx(config.learning_rate / 4)


def test_the_mace_recipe_trains_and_an_interrupted_run_resumes_to_the_same_rates_and_weights(silicon, tmp_path):
    """AMSGrad, weight decay, a plateau schedule and a late stage at its own rate: the loss falls, the late stage
    runs at its rate, and the rates (a function of the validation history) survive an interruption."""
    train_set, validation_set = silicon.first(8), silicon.select([8, 9])
    recipe = dataclasses.replace(TINY, max_epochs=6, optimiser="amsgrad", weight_decay=5e-7, schedule="plateau",
                                 plateau_patience_epochs=1, late_weights=LossWeights(energy=1000.0, forces=100.0),
                                 late_fraction=0.34, late_learning_rate=1e-3)
    whole = train(train_set, validation_set, recipe, progress=False)
    assert whole.history[3]["train_loss"] < whole.history[1]["train_loss"]
    assert [m["learning_rate"] for m in whole.history[recipe.late_start_epoch:]] == [1e-3] * 2
    with pytest.raises(KeyboardInterrupt):
        train(train_set, validation_set, recipe, progress=False, checkpoint_path=tmp_path / "model.npz", callback=interrupt_at(3))
    resumed = train(train_set, validation_set, recipe, progress=False, checkpoint_path=tmp_path / "model.npz")
    assert [m["learning_rate"] for m in resumed.history] == [m["learning_rate"] for m in whole.history]
    same = jax.tree_util.tree_map(np.array_equal, whole.checkpoint.params, resumed.checkpoint.params)
    assert all(jax.tree_util.tree_leaves(same))


def test_train_with_the_mace_recipe_records_it_and_a_flag_overrides_its_part(tmp_path, capsys):
    """``mlpkit train --recipe mace`` trains with mace-torch's settings (recorded with the run, and the late stage at
    its own rate in the history); an explicit ``--learning-rate`` or ``--late-fraction`` replaces only that part of
    the recipe, ``--virial-weight`` the virial weight of both stages. Without a late stage, the late stage's flags are refused."""
    args = ["train", "--data", "sw:Si", "--model", "painn", "--features", "8", "--layers", "1", "--epochs", "4",
            "--max-frames", "8", "--no-progress", "--recipe", "mace"]
    assert main([*args[:-2], "--late-fraction", "0.5", "--out", str(tmp_path / "refused")]) == 2
    assert "give that stage with --late-energy-weight" in capsys.readouterr().err
    assert main([*args, "--learning-rate", "5e-3", "--late-fraction", "0.5", "--virial-weight", "10", "--out",
                 str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["inputs"]["config"]
    assert config["optimiser"] == "amsgrad" and config["schedule"] == "plateau" and config["weight_decay"] == 5e-7
    assert config["batch_size"] == 4 and config["weights"]["forces"] == 100.0 and config["late_weights"]["energy"] == 1000.0
    assert config["learning_rate"] == 5e-3  # the flag, not the recipe's 1e-2
    assert config["weights"]["virial"] == config["late_weights"]["virial"] == 10.0  # both stages, the rest kept
    assert config["late_fraction"] == 0.5 and config["late_learning_rate"] == 1e-3  # the flag, and the recipe's rate
    with open(tmp_path / "run" / "history.csv") as stream:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(stream)]
    assert rates[-1] == 1e-3 and 0 < max(rates[:-1]) <= 5e-3  # warming up to the flag's rate, then the late stage's


def test_mlpkit_train_uses_maces_recipe_for_mace_unless_told_otherwise():
    from mlpkit.commands import train_config  # the CLI's flags to a configuration, without training

    def config(*flags):
        return train_config(build_parser().parse_args(["train", "--data", "sw:Si", "--out", "unused", *flags]))

    assert config("--model", "mace") == TrainConfig(model=ModelConfig("mace")).mace_recipe()
    assert config("--model", "mace", "--recipe", "default") == TrainConfig(model=ModelConfig("mace"))
    assert config("--model", "painn") == TrainConfig(model=ModelConfig("painn"))
    assert config("--model", "painn", "--recipe", "mace").optimiser == "amsgrad"
    assert config("--model", "mace", "--product", "symmetric").model == ModelConfig("mace", product="symmetric")
    with pytest.raises(MlpkitError, match="MACE setting"):
        config("--model", "painn", "--product", "symmetric")


def test_recipe_settings_are_checked_and_keyed_only_when_set():
    for bad in ({"optimiser": "sgd"}, {"schedule": "cosine"}, {"weight_decay": -1e-6}, {"plateau_factor": 1.0},
                {"plateau_patience_epochs": 0}, {"late_learning_rate": float("nan")}):
        with pytest.raises(MlpkitError, match=f"{next(iter(bad))}="):
            dataclasses.replace(TINY, **bad)
    assert "optimiser" not in TINY.key_fields() and TINY.key_fields()["max_epochs"] == 3  # earlier runs keep their keys
    assert dataclasses.replace(TINY, optimiser="amsgrad").key_fields()["optimiser"] == "amsgrad"


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
    small = from_frames([labelled(rattled(diamond("Si", (1, 1, 1)), 0.05, k), -30.0 - k, np.zeros((8, 3))) for k in range(2)])
    dataset = concatenate([silicon.first(4), small])
    plan = BatchPlan(dataset, 5.0, batch_size=4)
    assert sorted(plan.buckets) == [ATOM_BUCKET, 2 * ATOM_BUCKET]  # 8 → 32 and 64 → 64 atoms
    batches = list(plan.batches(np.random.default_rng(0)))
    assert len(batches) == len(plan) == 2  # 4 large frames: 1 batch; 2 small frames: 1 batch
    seen = np.concatenate([b.energy_ev[b.n_atoms > 0] for b in batches])
    np.testing.assert_allclose(sorted(seen), sorted(dataset.energy_ev), rtol=1e-7)
    batch = next(b for b in batches if b.positions_a.shape[1] == ATOM_BUCKET)
    assert sorted(batch.n_atoms) == [0, 0, 8, 8]
    real = batch.n_atoms > 0
    assert not batch.neighbors.mask[real][:, 8:].any() and (batch.species[real][:, 8:] == 0).all()
    assert not batch.neighbors.mask[~real].any()


def test_a_small_bucket_joins_the_larger_one_when_that_costs_no_more_padding():
    n_atoms = np.array([64] * 5 + [8] * 2)
    # apart: 2 batches of 4 × 64 atoms + 1 batch of 4 × 32 = 640 slots; together 2 batches × 4 × 64 = 512
    assert bucket_sizes(n_atoms, 4).tolist() == [64] * 7
    # 4 + 2 frames: apart 256 + 128 slots, together 512: they stay apart
    assert bucket_sizes(n_atoms[1:], 4).tolist() == [64] * 4 + [32] * 2
    # mlearn-like 12, 64 and 96 atoms, many of each: three shapes
    assert sorted(set(bucket_sizes(np.repeat([12, 64, 96], 21), 8).tolist())) == [32, 64, 96]


def test_each_member_keeps_its_best_and_freezes_when_its_patience_runs_out():
    best, best_score, best_epoch = {"w": np.zeros((2, 3))}, np.full(2, np.inf), np.zeros(2, int)
    scores_by_epoch = [[1.0, 1.0], [0.5, 0.9], [0.6, 0.8], [0.7, 0.7], [0.1, 0.6]]
    for epoch, scores in enumerate(scores_by_epoch):
        candidate = {"w": np.full((2, 3), float(epoch))}
        best, best_score, best_epoch, _ = update_best(best, best_score, best_epoch, candidate, np.array(scores), epoch, 2)
    assert best_epoch.tolist() == [1, 4]  # member 0's 0.1 at epoch 4 comes after its patience of 2 ran out
    assert best_score.tolist() == [0.5, 0.6]
    assert best["w"][:, 0].tolist() == [1.0, 4.0]


def test_evaluate_matches_metrics_computed_from_calculator_predictions(silicon):
    from conftest import random_checkpoint

    checkpoint = random_checkpoint("painn")
    dataset = silicon.first(5)
    energy_errors, force_errors, stress_errors = [], [], []
    for index in range(len(dataset)):
        atoms = dataset.atoms(index)
        reference = atoms.calc.results
        atoms.calc = MLPCalculator(checkpoint)
        energy_errors.append((atoms.get_potential_energy() - reference["energy"]) / len(atoms))
        force_errors.append(atoms.get_forces() - reference["forces"])
        stress_errors.append(atoms.get_stress() - reference["stress"])
    metrics = evaluate(checkpoint, dataset)
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(1000 * np.mean(np.abs(energy_errors)), rel=1e-4)
    assert metrics["force_mae_ev_per_a"] == pytest.approx(np.mean(np.abs(np.concatenate(force_errors))), rel=1e-4)
    assert metrics["force_rmse_ev_per_a"] == pytest.approx(np.sqrt(np.mean(np.square(np.concatenate(force_errors)))), rel=1e-4)
    assert metrics["stress_mae_gpa"] == pytest.approx(np.mean(np.abs(stress_errors)) / units.GPa, rel=1e-3)


def test_float64_training_keeps_double_precision_weights(silicon):
    config = dataclasses.replace(TINY, max_epochs=1, float64=True)
    result = train(silicon.first(4), silicon.select([4, 5]), config, progress=False)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(result.checkpoint.params)} == {np.dtype(np.float64)}
    assert np.isfinite(result.history[-1]["force_mae_ev_per_a"])


def test_frozen_blocks_do_not_change_during_training(silicon):
    config = dataclasses.replace(TINY, max_epochs=2, frozen_blocks=("embedding", "readout"))
    start = init_params(config.model, 1, config.seeds[0])
    result = train(silicon.first(8), silicon.select([8, 9]), config, progress=False)
    trained = jax.tree_util.tree_map(lambda leaf: leaf[0], result.checkpoint.params)
    blocks = parameter_blocks(trained)
    unchanged = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), start, trained)
    for block, same in zip(jax.tree_util.tree_leaves(blocks), jax.tree_util.tree_leaves(unchanged)):
        assert same == (block in ("embedding", "readout")), block
    with pytest.raises(MlpkitError, match="unknown blocks to freeze"):
        dataclasses.replace(TINY, frozen_blocks=("everything",))


def test_a_callback_returning_true_stops_after_that_epoch_with_the_best_so_far(silicon, tmp_path):
    result = train(silicon.first(8), silicon.select([8, 9]), TINY, progress=False, checkpoint_path=tmp_path / "model.npz",
                   callback=lambda epoch, metrics: epoch == 1)
    assert [m["epoch"] for m in result.history] == [0, 1]
    assert result.checkpoint.metadata["epochs_run"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # the resume state goes when training ends


def interrupt_at(stop_epoch: int):
    """A callback that interrupts training (like Ctrl-C) after ``stop_epoch``."""

    def callback(epoch, metrics):
        if epoch == stop_epoch:
            raise KeyboardInterrupt

    return callback


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(silicon, tmp_path):
    train_set, validation_set = silicon.first(8), silicon.select([8, 9])
    whole = train(train_set, validation_set, TINY, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(train_set, validation_set, TINY, progress=False, checkpoint_path=tmp_path / "model.npz", callback=interrupt_at(2))
    assert (tmp_path / "model.resume.npz").exists()
    seen = []
    resumed = train(train_set, validation_set, TINY, progress=False, checkpoint_path=tmp_path / "model.npz",
                    callback=lambda epoch, metrics: seen.append(epoch))
    assert seen == [0, 1, 2, 3]  # finished epochs are replayed to the callback, then training goes on
    same = jax.tree_util.tree_map(np.array_equal, whole.checkpoint.params, resumed.checkpoint.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert [m["train_loss"] for m in whole.history[1:]] == [m["train_loss"] for m in resumed.history[1:]]
    assert not (tmp_path / "model.resume.npz").exists()


def test_a_resume_state_of_other_settings_is_ignored(silicon, tmp_path):
    train_set, validation_set = silicon.first(8), silicon.select([8, 9])
    with pytest.raises(KeyboardInterrupt):
        train(train_set, validation_set, TINY, progress=False, checkpoint_path=tmp_path / "model.npz", callback=interrupt_at(1))
    other = dataclasses.replace(TINY, learning_rate=1e-3, max_epochs=1)
    with pytest.warns(UserWarning, match="resume state of another training run"):
        result = train(train_set, validation_set, other, progress=False, checkpoint_path=tmp_path / "model.npz")
    assert len(result.history) == 2


def test_a_nan_loss_stops_training_naming_the_epoch_and_frames(silicon):
    from mlpkit.errors import TrainingError

    config = dataclasses.replace(TINY, learning_rate=1e30, gradient_clip=1e30, warmup_epochs=0)
    with pytest.raises(TrainingError, match=r"at epoch \d+, batch \d+ of 2 \(training frames \[[\d, ]+\]\)"):
        train(silicon.first(8), silicon.select([8, 9]), config, progress=False)


def test_outlier_report_flags_unit_slips_and_training_warns(silicon):
    from mlpkit.data import outlier_report

    clean = silicon.first(12)
    assert outlier_report(clean, cutoff_a=5.0) == []
    broken = clean.select(np.arange(12))
    broken.energy_ev[3] /= broken.n_atoms[3]  # an energy per atom stored as the total
    broken.forces_ev_per_a[: broken.n_atoms[0]] *= 51.4  # Hartree/Bohr in eV/Å
    broken.stress_ev_per_a3[5] /= units.GPa / 10  # kBar read as eV/Å³
    found = {(o.frame, o.field) for o in outlier_report(broken)}
    assert found == {(0, "forces"), (3, "energy"), (5, "stress")}
    with pytest.warns(UserWarning, match="suspicious frame"):
        train(broken, silicon.select([12, 13]), dataclasses.replace(TINY, max_epochs=1), progress=False)
