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
- ``lattice_constants_angstrom``: (source, target) diamond lattice constants; when given, the target model
  sees positions and cell multiplied by a_source / a_target (stored in the checkpoint's normalisation
  as ``length_scale``). Ge bonds are ~4–5 % longer than Si bonds, so without it every Si-trained
  radial filter meets Ge neighbours at distances it saw only under tension; with it, the Ge ground
  state looks exactly like the Si one and fine-tuning only has to learn the difference in bonding.
  ``with_length_scaling("sw" | "mlearn")`` takes the constants of that reference from
  :data:`DIAMOND_LATTICE_ANGSTROM`; a bare ``TransferConfig()`` cannot know the reference, so it leaves lengths
  alone, and the study (which knows its data) turns the scaling on by default.

Measured on the quick SW study (``benchmarks/transfer_protocols.py``, validation errors, RESULTS.md):
length scaling with the E0 re-fit and the smaller learning rate is the best protocol at N ≤ 25 Ge
frames and within the spread of the best at 50–100; it is therefore the study's default "transfer".
Freezing the interaction blocks is worse than training everything. ``TransferConfig.plain()`` is the
paper's protocol: initialise from Si and train everything with the ordinary settings, no scaling.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.data.mlearn import MLEARN_GROUND_STATE
from mlpkit.errors import MlpkitError
from mlpkit.models.energy import fit_normalisation
from mlpkit.potentials.sw import SW_PARAMETERS
from mlpkit.training.train import TrainConfig, TrainResult, train

# Diamond lattice constants (Å) of each reference: SW at its pair minimum, DFT from the mlearn ground states
DIAMOND_LATTICE_ANGSTROM = {
    "sw": {element: SW_PARAMETERS[element].lattice_constant_angstrom for element in ("Si", "Ge")},
    "mlearn": {element: values["a0_angstrom"] for element, values in MLEARN_GROUND_STATE.items()},
}


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    element_map: tuple[tuple[str, str], ...] = (("Si", "Ge"),)
    refit_normalisation: bool = True
    frozen_blocks: tuple[str, ...] = ()
    learning_rate: float | None = 5e-4  # None: keep the training configuration's
    lattice_constants_angstrom: tuple[float, float] | None = None  # (source, target) Å; None: no length scaling

    @classmethod
    def plain(cls) -> TransferConfig:
        """Initialise everything from the source model, then train everything as from scratch."""
        return cls(refit_normalisation=False, learning_rate=None)

    @property
    def length_scale(self) -> float:
        """a_source / a_target: the factor applied to target positions and cell (1 without scaling)."""
        return 1.0 if self.lattice_constants_angstrom is None else self.lattice_constants_angstrom[0] / self.lattice_constants_angstrom[1]

    def with_length_scaling(self, reference: str) -> TransferConfig:
        """This configuration with the lattice constants of ``reference`` ("sw" or "mlearn")."""
        if reference not in DIAMOND_LATTICE_ANGSTROM:
            raise MlpkitError(f"no lattice constants for {reference!r}; known: {sorted(DIAMOND_LATTICE_ANGSTROM)}")
        (source, target), = self.element_map
        constants = DIAMOND_LATTICE_ANGSTROM[reference]
        return dataclasses.replace(self, lattice_constants_angstrom=(constants[source], constants[target]))


def transferred(source: Checkpoint, transfer: TransferConfig) -> Checkpoint:
    """``source`` as a model of the target element, before any training: table renamed, lengths scaled. A
    source without the elements the transfer maps from (a Ge model given as the Si source) is refused."""
    mapping = dict(transfer.element_map)
    symbols = set(source.table.symbols)
    if not set(mapping) <= symbols or set(mapping.values()) & (symbols - set(mapping)):
        raise MlpkitError(f"the source model is for {list(source.table.symbols)}, and the transfer maps "
                          f"{', '.join(f'{a} → {b}' for a, b in mapping.items())}: transfer from a model of "
                          f"{sorted(mapping)} (is this already a target model?)")
    normalisation = dataclasses.replace(
        source.normalisation, length_scale=source.normalisation.length_scale * transfer.length_scale
    )
    return dataclasses.replace(source, table=source.table.remapped(mapping), normalisation=normalisation)


def member_starts(params, seeds, spread: float = 0.0, seed: int = 0):
    """One stacked starting tree per training seed from a K-member stack: the member of seed s starts from source
    member s mod K (so the independent draws of a study, one seed each, start from different members), each leaf
    moved by Gaussian noise of ``spread`` times that leaf's root-mean-square value (seed ``seed + i`` for the i-th
    member).

    With ``spread`` 0 the members of a one-member source are identical and stay so in training (same data, same
    batches); a small spread gives a committee whose disagreement shows where the target data do not yet decide.
    """
    if not 0 <= spread < np.inf:
        raise MlpkitError(f"the members' spread must be a finite number ≥ 0, got {spread}")
    ensemble_size = jax.tree_util.tree_leaves(params)[0].shape[0]
    rows = np.asarray(seeds, dtype=int) % ensemble_size
    n_members = len(rows)
    stacked = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[rows], params)
    if spread == 0:
        return stacked
    leaves, structure = jax.tree_util.tree_flatten(stacked)
    moved = []
    for index, leaf in enumerate(leaves):
        rms = np.sqrt(np.mean(np.square(leaf, dtype=np.float64), axis=tuple(range(1, leaf.ndim)), keepdims=True))  # [K, 1, …]
        noise = np.stack([np.random.default_rng([seed + member, index]).normal(size=leaf.shape[1:]) for member in range(n_members)])
        moved.append((leaf + spread * rms * noise).astype(leaf.dtype))
    return jax.tree_util.tree_unflatten(structure, moved)


def transferred_start(source: Checkpoint, train_set: Dataset, transfer: TransferConfig, seeds,
                      spread: float = 0.0, seed: int = 0):
    """(element table, normalisation, stacked initial parameters) of the target model; the members as
    :func:`member_starts` makes them from the source's.
    """
    start = transferred(source, transfer)
    table = start.table
    table.check(train_set.species, "the target training set")
    normalisation = start.normalisation
    if transfer.refit_normalisation:
        fitted = fit_normalisation(train_set, table)
        normalisation = dataclasses.replace(normalisation, shift_ev=fitted.shift_ev, scale_ev=fitted.scale_ev)
    return table, normalisation, member_starts(source.params, seeds, spread, seed)


def fine_tune(
    source: Checkpoint,
    train_set: Dataset,
    validation_set: Dataset,
    config: TrainConfig = TrainConfig(),
    transfer: TransferConfig = TransferConfig(),
    spread: float = 0.0,
    **train_options,
) -> TrainResult:
    """Train a target model (e.g. Ge) initialised from ``source`` (e.g. Si); ``spread`` as :func:`member_starts`
    (its seed: the training's data seed); other options as :func:`train`."""
    if config.model != source.config:
        raise MlpkitError(f"the source model is {source.config}, the training configuration asks for {config.model}")
    changes = {"frozen_blocks": transfer.frozen_blocks}
    if transfer.learning_rate is not None:
        changes["learning_rate"] = transfer.learning_rate
    config = dataclasses.replace(config, **changes)
    table, normalisation, params = transferred_start(source, train_set, transfer, config.seeds, spread, config.data_seed)
    return train(
        train_set, validation_set, config,
        table=table, normalisation=normalisation, initial_params=params, **train_options,
    )
