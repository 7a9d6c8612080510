"""Transfer Si → Ge: the initial state copies exactly the source parameters and renames the element row;
a Si model already describes Ge better than a random one; fine-tuning keeps frozen blocks; a length-scaled
model is the source model on scaled geometry, with exact forces and stress, and scale 1 changes nothing."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from mlpkit.checkpoint import load_checkpoint, save_checkpoint
from mlpkit.data import load_dataset, sw_data_path
from mlpkit.errors import MlpkitError
from mlpkit.fileio import dataclass_from_dict
from mlpkit.models import ModelConfig, build_model
from mlpkit.models.energy import Normalisation, fit_normalisation, member_energy_fn
from mlpkit.models.graph import build_graph
from mlpkit.neighbors import build_neighbors
from mlpkit.potentials.base import energy_forces_stress
from mlpkit.training import TrainConfig, train
from mlpkit.transfer import TransferConfig, fine_tune, member_starts, transferred_start
from conftest import distorted, random_checkpoint, results

SMALL = TrainConfig(model=ModelConfig("painn", features=16, layers=2), max_epochs=6, warmup_epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def germanium():
    return load_dataset(sw_data_path("Ge", "training"))


@pytest.fixture(scope="module")
def silicon_model():
    silicon = load_dataset(sw_data_path("Si", "training"))
    # 20 epochs: enough for the Si forces to be learnt, so that they carry over to Ge
    return train(silicon.first(24), silicon.select(np.arange(24, 30)), dataclasses.replace(SMALL, max_epochs=20),
                 progress=False).checkpoint


def test_the_transferred_start_copies_the_source_and_renames_the_element_row(germanium):
    source = random_checkpoint("painn", members=2)
    table, normalisation, params = transferred_start(source, germanium.first(10), TransferConfig(), seeds=(0, 1, 2))
    assert table.symbols == ("Ge",)
    for leaf_source, leaf_target in zip(jax.tree_util.tree_leaves(source.params), jax.tree_util.tree_leaves(params)):
        assert np.array_equal(leaf_target, leaf_source[[0, 1, 0]])  # seed s from source member s mod 2
    _, _, draw_two = transferred_start(source, germanium.first(10), TransferConfig(), seeds=(1,))  # a study's draw 1
    assert all(np.array_equal(a[0], b[1]) for a, b in zip(jax.tree_util.tree_leaves(draw_two), jax.tree_util.tree_leaves(source.params)))
    assert normalisation == fit_normalisation(germanium.first(10), table)
    counts, energies = germanium.first(10).n_atoms, germanium.first(10).energy_ev
    assert normalisation.shift_ev[0] == pytest.approx(np.sum(energies * counts) / np.sum(counts**2), rel=1e-9)  # least squares
    _, kept, _ = transferred_start(source, germanium.first(10), TransferConfig.plain(), seeds=(0,))
    assert kept == source.normalisation


def test_spread_member_starts_differ_by_the_asked_fraction_of_each_weight_and_repeat_with_their_seed():
    source = random_checkpoint("painn", members=1)
    starts = member_starts(source.params, range(3), spread=0.05, seed=7)
    assert jax.tree_util.tree_structure(starts) == jax.tree_util.tree_structure(source.params)
    for original, moved in zip(jax.tree_util.tree_leaves(source.params), jax.tree_util.tree_leaves(starts)):
        rms = np.sqrt(np.mean(np.square(original)))
        change = moved - original  # [3, …]: each member's own noise
        if rms > 0 and original.size > 50:
            assert np.sqrt(np.mean(np.square(change))) == pytest.approx(0.05 * rms, rel=0.25)
            assert not np.allclose(change[0], change[1])
    again = member_starts(source.params, range(3), spread=0.05, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(starts), jax.tree_util.tree_leaves(again)))
    copies = member_starts(source.params, (0, 1))
    assert all(np.array_equal(leaf[0], leaf[1]) for leaf in jax.tree_util.tree_leaves(copies))  # no spread: identical members
    with pytest.raises(MlpkitError, match="spread"):
        member_starts(source.params, (0, 1), spread=-0.1)


def test_a_silicon_model_describes_germanium_better_than_a_random_one(silicon_model, germanium):
    train_set, validation_set = germanium.first(8), germanium.select(np.arange(8, 20))
    config = dataclasses.replace(SMALL, max_epochs=1)
    transfer = fine_tune(silicon_model, train_set, validation_set, config, progress=False)
    scratch = train(train_set, validation_set, config, progress=False)
    # epoch 0 is before any Ge step: the Si network with the Ge energy shift, against a random network
    assert transfer.history[0]["force_mae_ev_per_a"] < 0.8 * scratch.history[0]["force_mae_ev_per_a"]
    assert transfer.checkpoint.table.symbols == ("Ge",)


def test_fine_tuning_keeps_frozen_blocks_and_refuses_another_architecture(silicon_model, germanium):
    transfer = TransferConfig(frozen_blocks=("embedding", "interactions"))
    config = dataclasses.replace(SMALL, max_epochs=1)
    result = fine_tune(silicon_model, germanium.first(4), germanium.select([4, 5]), config, transfer, progress=False)
    for name, module in result.checkpoint.params["params"].items():
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(module),
                                                     jax.tree_util.tree_leaves(silicon_model.params["params"][name])))
        assert same == (not name.startswith("readout")), name
    with pytest.raises(MlpkitError, match="the source model is"):
        fine_tune(silicon_model, germanium.first(4), germanium.select([4, 5]), TrainConfig(), progress=False)


def test_transfer_with_length_scaling_copies_only_the_parameters_and_scales_the_geometry(germanium):
    source = random_checkpoint("painn", members=2)
    transfer = TransferConfig().with_length_scaling("sw")
    table, normalisation, params = transferred_start(source, germanium.first(10), transfer, seeds=(0, 1))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(source.params)  # nothing added or dropped
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(source.params)))
    assert table.symbols == ("Ge",) and source.table.symbols == ("Si",)  # the one element row, renamed
    assert normalisation.length_scale == pytest.approx(5.4310 / 5.6536, rel=1e-4)  # SW a_Si / a_Ge
    fitted = fit_normalisation(germanium.first(10), table)
    assert (normalisation.shift_ev, normalisation.scale_ev) == (fitted.shift_ev, fitted.scale_ev)
    assert TransferConfig().length_scale == 1.0 and TransferConfig().with_length_scaling("mlearn").length_scale == pytest.approx(5.4687 / 5.7542)


def test_a_length_scaled_model_is_the_source_model_on_scaled_geometry_with_exact_forces_and_stress():
    checkpoint = random_checkpoint("painn")
    scale = 5.4310 / 5.6536
    scaled = dataclasses.replace(checkpoint, normalisation=dataclasses.replace(checkpoint.normalisation, length_scale=scale))
    atoms = distorted("Si", seed=2)
    energy, forces, stress, atoms = results(atoms, scaled)
    assert scaled.potential().cutoff_a == pytest.approx(checkpoint.config.cutoff_a / scale)  # the list reaches the longer Ge bonds
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-6), atol=1e-7)
    shrunk = atoms.copy()
    shrunk.set_cell(atoms.cell.array * scale, scale_atoms=True)
    energy_shrunk, forces_shrunk, _, _ = results(shrunk, checkpoint)
    assert energy == pytest.approx(energy_shrunk, abs=1e-9)  # E_scaled(r) = E(s r)
    np.testing.assert_allclose(forces, scale * forces_shrunk, atol=1e-9)  # chain rule: F = s F(s r)


def test_length_scale_one_is_bit_identical_to_the_unscaled_model_and_old_files_load_with_it(tmp_path):
    checkpoint = random_checkpoint("painn")
    atoms = distorted("Si", seed=3)
    neighbors = build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, checkpoint.config.cutoff_a)
    positions, cell = atoms.positions.astype(np.float32), atoms.cell.array.astype(np.float32)
    model, lookup = build_model(checkpoint.config, 1), checkpoint.table.slot_lookup()
    params = jax.tree_util.tree_map(lambda leaf: leaf[0], checkpoint.params)

    def unscaled(positions_a, cell_a, species, neighbors):  # the energy as written before length scaling existed
        graph = build_graph(positions_a, cell_a, species, neighbors, lookup, checkpoint.config.cutoff_a)
        per_atom = model.apply(params, graph) * np.float32(0.5) + np.float32(-4.0)
        return jnp.sum(jnp.where(graph.atom_mask, per_atom, 0.0))

    energy_fn = member_energy_fn(checkpoint.config, checkpoint.table, checkpoint.normalisation)
    expected = jax.jit(energy_forces_stress(unscaled))(positions, cell, atoms.numbers, neighbors)
    got = jax.jit(energy_forces_stress(lambda *args: energy_fn(params, *args)))(positions, cell, atoms.numbers, neighbors)
    for a, b in zip(expected, got):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert dataclass_from_dict(Normalisation, {"shift_ev": [-4.0], "scale_ev": [0.5]}).length_scale == 1.0  # files without it
    scaled = dataclasses.replace(checkpoint, normalisation=dataclasses.replace(checkpoint.normalisation, length_scale=0.9))
    assert load_checkpoint(save_checkpoint(scaled, tmp_path / "scaled.npz")).normalisation == scaled.normalisation
