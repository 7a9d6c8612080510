"""Transfer Si → Ge: the initial state copies exactly the source parameters and renames the element row;
a Si model already describes Ge better than a random one; fine-tuning keeps frozen blocks."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from mlpkit.data import load_dataset, sw_data_path
from mlpkit.errors import MlpkitError
from mlpkit.models import ModelConfig
from mlpkit.models.energy import fit_normalisation
from mlpkit.training import TrainConfig, train
from mlpkit.transfer import TransferConfig, fine_tune, initial_state
from test_models import random_checkpoint

SMALL = TrainConfig(model=ModelConfig("painn", features=16, layers=2), max_epochs=6, warmup_epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def germanium():
    return load_dataset(sw_data_path("Ge", "training"))


@pytest.fixture(scope="module")
def silicon_model():
    silicon = load_dataset(sw_data_path("Si", "training"))
    return train(silicon.first(24), silicon.select(np.arange(24, 30)), SMALL, progress=False).checkpoint


def test_initial_state_copies_the_source_and_renames_the_element_row(germanium):
    source = random_checkpoint("painn", members=2)
    table, normalisation, params = initial_state(source, germanium.first(10), TransferConfig(), n_members=3)
    assert table.symbols == ("Ge",)
    for leaf_source, leaf_target in zip(jax.tree_util.tree_leaves(source.params), jax.tree_util.tree_leaves(params)):
        assert np.array_equal(leaf_target, leaf_source[[0, 1, 0]])  # member i from source member i mod 2
    assert normalisation == fit_normalisation(germanium.first(10), table)
    counts, energies = germanium.first(10).n_atoms, germanium.first(10).energy_ev
    assert normalisation.shift_ev[0] == pytest.approx(np.sum(energies * counts) / np.sum(counts**2), rel=1e-9)  # least squares
    _, kept, _ = initial_state(source, germanium.first(10), TransferConfig.plain(), n_members=1)
    assert kept == source.normalisation


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
