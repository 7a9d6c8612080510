"""The MACE-style model beyond the checks every architecture shares (tests/test_models.py): it learns SW
silicon, its checkpoints round-trip bit for bit, and a Si model starts a Ge one."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import mlpkit
from mlpkit.checkpoint import load_checkpoint, save_checkpoint
from mlpkit.data import load_dataset, select_where, sw_data_path, train_val_split
from mlpkit.models import ModelConfig
from mlpkit.training import TrainConfig, train
from mlpkit.transfer import TransferConfig, fine_tune
from conftest import distorted, random_checkpoint, results

QUICK_MACE = dataclasses.replace(TrainConfig(model=ModelConfig("mace")).quick(), max_epochs=15, learning_rate=5e-3)


@pytest.fixture(scope="module")
def trained():
    solid = select_where(load_dataset(sw_data_path("Si", "training")), max_temperature_k=1000)
    train_set, validation_set = train_val_split(solid, 0.15, seed=0)
    return train(train_set.first(32), validation_set, QUICK_MACE, progress=False)


def test_validation_force_error_falls_five_fold_on_sw_silicon(trained):
    first, best = trained.history[0], trained.history[int(trained.best_epoch[0])]
    assert best["force_mae_ev_per_a"] < first["force_mae_ev_per_a"] / 5
    assert trained.history[-1]["train_loss"] < 0.1 * trained.history[1]["train_loss"]


def test_checkpoint_round_trip_predicts_bit_identically(tmp_path):
    model = random_checkpoint("mace", members=2)
    path = save_checkpoint(model, tmp_path / "mace.npz")
    atoms = distorted(seed=3)
    before, after = atoms.copy(), atoms.copy()
    before.calc, after.calc = mlpkit.MLPCalculator(model), mlpkit.load_calculator(path)
    assert before.get_potential_energy() == after.get_potential_energy()
    assert np.array_equal(before.get_forces(), after.get_forces())
    assert load_checkpoint(path).config == model.config


def test_the_last_layer_computes_scalars_only_and_older_checkpoints_load_without_its_unread_weights():
    """The readout reads the last layer's scalars only, so that layer makes no vectors. The shipped sources were
    written when it still did: loading drops exactly those weights (their energies are unchanged: test_pretrained
    reproduces their recorded errors), and any other extra weight is still refused."""
    from flax import traverse_util

    from mlpkit.checkpoint import checkpoint_path
    from mlpkit.models import current_layout, params_mismatch, parameter_shapes

    config = ModelConfig("mace").quick()
    names = set(parameter_shapes(config, 1))
    outputs = [name for name in names if name.split("/")[2] in ("product_mix", "self_connection")]
    assert not any(f"interaction_{config.layers - 1}/" in name and name.endswith("x1o") for name in outputs)
    assert any("interaction_0/" in name and name.endswith("x1o") for name in outputs)  # earlier layers keep vectors
    with np.load(checkpoint_path("pretrained:si_mace_sw")) as archive:
        stored = {name.split("/", 1)[1] for name in archive.files if name.startswith("param")}
    retired = {name for name in stored - names if name.split("/")[2] in ("product_mix", "self_connection")}
    assert len(retired) == 2 and stored - names == retired  # the last layer's vector outputs, nothing else
    shipped = load_checkpoint("pretrained:si_mace_sw")
    assert set(traverse_util.flatten_dict(dict(shipped.params), sep="/")) == names
    extra = traverse_util.flatten_dict(dict(shipped.params), sep="/")
    extra["params/interaction_0/product_mix/w[9,9] 3x1o,32x1o"] = np.zeros((1, 3, 32), np.float32)
    kept = current_layout(traverse_util.unflatten_dict(extra, sep="/"), config, 1)
    assert "parameter names differ" in params_mismatch(kept, config, 1)


def test_a_silicon_mace_starts_a_germanium_one(trained):
    germanium = load_dataset(sw_data_path("Ge", "training"))
    config = dataclasses.replace(QUICK_MACE, max_epochs=1)
    transfer = fine_tune(trained.checkpoint, germanium.first(8), germanium.select(np.arange(8, 16)), config,
                         TransferConfig().with_length_scaling("sw"), progress=False)
    assert transfer.checkpoint.table.symbols == ("Ge",) and transfer.checkpoint.config == trained.checkpoint.config
    assert transfer.checkpoint.normalisation.length_scale == pytest.approx(5.431 / 5.654, rel=1e-3)
    # every parameter started from the Si model: after one epoch they are close to it, not to a fresh draw
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
        jax.tree_util.tree_leaves(transfer.checkpoint.params), jax.tree_util.tree_leaves(trained.checkpoint.params))]
    assert max(moved) < 0.1
    energy, forces, _, _ = results(distorted("Ge", seed=4), transfer.checkpoint)
    assert np.isfinite(energy) and np.isfinite(forces).all()


def test_the_symmetric_contraction_is_the_direct_sum_of_weighted_products_and_equivariant():
    """MACE's nested contraction equals Σ_ν Σ_p w_p U_p · A^⊗ν formed in full (the dense reference) to 1e-5, with
    each atom's weights those of its element, and it rotates with its input."""
    import e3nn_jax as e3nn
    import jax.numpy as jnp

    from mlpkit.models.mace import symmetric_basis, symmetric_contraction

    irreps_in, irreps_out = "0e + 1o + 2e", "0e + 1o"
    rng = np.random.default_rng(3)
    basis = symmetric_basis(irreps_in, irreps_out, 3)
    a = rng.normal(size=(6, 4, 9)).astype(np.float32)  # [atoms, channels, 0e + 1o + 2e]
    slot = np.array([0, 1, 1, 0, 1, 0])
    weights = [[rng.normal(size=(2, 4, block.shape[-2])).astype(np.float32) for block in blocks] for blocks in basis]
    nested = np.asarray(symmetric_contraction(jnp.asarray(a), weights, jnp.asarray(slot), irreps_in, irreps_out))
    powers = [a, np.einsum("nci,ncj->ncij", a, a), np.einsum("nci,ncj,nck->ncijk", a, a, a)]
    direct = np.concatenate([
        sum(np.einsum(f"nc{'ijk'[:nu]},ncp,{'ijk'[:nu]}pm->ncm", powers[nu - 1], weights[nu - 1][k][slot], basis[nu - 1][k])
            for nu in (1, 2, 3))
        for k in range(2)], axis=-1)
    assert np.abs(nested - direct).max() < 1e-5 * np.abs(direct).max()
    rotation = e3nn.rand_matrix(jax.random.PRNGKey(0), ())
    d_in, d_out = (np.asarray(e3nn.Irreps(irreps).D_from_matrix(rotation)) for irreps in (irreps_in, irreps_out))
    rotated = np.asarray(symmetric_contraction(jnp.asarray(a @ d_in.T), weights, jnp.asarray(slot), irreps_in, irreps_out))
    assert np.abs(rotated - nested @ d_out.T).max() < 1e-5 * np.abs(direct).max()
