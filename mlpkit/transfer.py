"""Transfer learning across elements: a model trained on one element initialises the model of another.

The source model's parameters are copied unchanged; only the element table is renamed (the Si row of
the embedding becomes the Ge row), so the network starts from everything it learnt about
tetrahedral bonding. What else happens is a :class:`TransferConfig` choice:

- ``refit_normalisation``: re-fit the per-element energy shift (E0) and force scale on the target
  data. Si and Ge differ by ~0.9 eV/atom in DFT energy; without a refit the network must first
  unlearn that offset through its weights.
- ``frozen_blocks``: keep the embedding, interaction or readout blocks at their source values.
- ``learning_rate``: fine-tuning usually wants a smaller step than training from scratch, so as not
  to wash out the initialisation in the first epochs.

``TransferConfig.plain()`` is the paper's protocol: initialise from Si and train everything with the
ordinary settings.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.models.energy import fit_normalisation
from mlpkit.training.train import TrainConfig, TrainResult, train


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    element_map: tuple[tuple[str, str], ...] = (("Si", "Ge"),)
    refit_normalisation: bool = True
    frozen_blocks: tuple[str, ...] = ()
    learning_rate: float | None = 5e-4  # None: keep the training configuration's

    @classmethod
    def plain(cls) -> TransferConfig:
        """Initialise everything from the source model, then train everything as from scratch."""
        return cls(refit_normalisation=False, learning_rate=None)


def initial_state(source: Checkpoint, train_set: Dataset, transfer: TransferConfig, n_members: int):
    """(element table, normalisation, stacked initial parameters) of the target model.

    Target member i starts from source member i mod K, so a K-member source seeds any ensemble size.
    """
    table = source.table.remapped(dict(transfer.element_map))
    table.check(train_set.species, "the target training set")
    normalisation = fit_normalisation(train_set, table) if transfer.refit_normalisation else source.normalisation
    members = np.arange(n_members) % source.ensemble_size
    params = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[members], source.params)
    return table, normalisation, params


def fine_tune(
    source: Checkpoint,
    train_set: Dataset,
    validation_set: Dataset,
    config: TrainConfig = TrainConfig(),
    transfer: TransferConfig = TransferConfig(),
    **train_options,
) -> TrainResult:
    """Train a target model (e.g. Ge) initialised from ``source`` (e.g. Si); options as :func:`train`."""
    if config.model != source.config:
        raise MlpkitError(f"the source model is {source.config}, the training configuration asks for {config.model}")
    changes = {"frozen_blocks": transfer.frozen_blocks}
    if transfer.learning_rate is not None:
        changes["learning_rate"] = transfer.learning_rate
    config = dataclasses.replace(config, **changes)
    table, normalisation, params = initial_state(source, train_set, transfer, len(config.seeds))
    return train(
        train_set, validation_set, config,
        table=table, normalisation=normalisation, initial_params=params, **train_options,
    )
