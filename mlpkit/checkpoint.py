"""The one checkpoint format: a trained (ensemble) model in a single checksummed file, no pickle.

The file is an mlpkit archive (:func:`~mlpkit.fileio.archive_bytes`). ``meta.json`` holds the format
version, the model configuration, the element table, the normalisation and free-form training metadata;
each parameter array is stored under ``params/<path>`` with a leading ensemble axis K. ``sha256`` covers
the metadata and every array (name, dtype, shape, bytes), so any corruption is detected on load.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from mlpkit.errors import MlpkitError
from mlpkit.fileio import archive_bytes, dataclass_from_dict, read_archive, write_bytes_atomic
from mlpkit.models import ModelConfig, current_layout, params_mismatch
from mlpkit.models.energy import Normalisation, ensemble_atom_energies, ensemble_evaluator, ensemble_potential
from mlpkit.models.graph import ElementTable
from mlpkit.potentials.base import Potential

FORMAT_VERSION = 1
PARAM_PREFIX = "params/"
PRETRAINED = "pretrained:"  # prefix of a shipped model's name
PRETRAINED_DIR = Path(str(resources.files("mlpkit") / "pretrained"))  # package data: travels inside the wheel


class CheckpointError(MlpkitError):
    """A checkpoint that cannot be used: unreadable, corrupt, too new, or for another model."""


@dataclasses.dataclass(frozen=True, eq=False)
class Checkpoint:
    """A trained model: ``params`` is a Flax parameter tree whose leaves carry a leading axis K (members)."""

    config: ModelConfig
    table: ElementTable
    normalisation: Normalisation
    params: dict
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def ensemble_size(self) -> int:
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])

    def member(self, k: int) -> Checkpoint:
        """Member ``k`` alone, as an ensemble of one."""
        params = jax.tree_util.tree_map(lambda leaf: leaf[k:k + 1], self.params)
        return dataclasses.replace(self, params=params)

    def potential(self, name: str | None = None) -> Potential:
        """The ensemble-mean :class:`Potential` (MD, properties, the ASE calculator)."""
        label = name or f"{self.config.architecture}[{','.join(self.table.symbols)}]"
        return ensemble_potential(self.config, self.table, self.normalisation, self.params, label)

    def evaluator(self):
        """``f(params, positions, cell, species, neighbors) -> (E [K], F [K, N, 3], σ [K, 3, 3])``."""
        return ensemble_evaluator(self.config, self.table, self.normalisation)

    def atom_energies_evaluator(self):
        """``f(params, positions, cell, species, neighbors) -> [K, N]`` each member's per-atom energies (eV)."""
        return ensemble_atom_energies(self.config, self.table, self.normalisation)


def _metadata(checkpoint: Checkpoint) -> dict:
    return {
        "model": checkpoint.config.to_dict(),
        "elements": list(checkpoint.table.symbols),
        "normalisation": dataclasses.asdict(checkpoint.normalisation),
        "training": checkpoint.metadata,
    }




def save_checkpoint(checkpoint: Checkpoint, path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a crash leaves the old file or none)."""
    flat = traverse_util.flatten_dict(jax.device_get(checkpoint.params), sep="/")
    arrays = {PARAM_PREFIX + name: leaf for name, leaf in flat.items()}
    write_bytes_atomic(path, archive_bytes(_metadata(checkpoint), arrays, FORMAT_VERSION, checksum=True))
    return Path(path)


def checkpoint_path(spec) -> Path:
    """The file of a checkpoint ``spec``: a path, or ``pretrained:NAME`` for a shipped model
    (``mlpkit/pretrained/NAME/model.npz``; ``mlpkit/pretrained/README.md`` lists them)."""
    text = str(spec)
    if not text.startswith(PRETRAINED):
        return Path(text)
    path = PRETRAINED_DIR / text[len(PRETRAINED):] / "model.npz"
    if not path.is_file():
        shipped = sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/model.npz"))
        raise CheckpointError(f"no shipped model {path.parent.name!r} in {text!r}; choose one of {shipped}")
    return path


def load_checkpoint(path, expect_config: ModelConfig | None = None) -> Checkpoint:
    """Read and verify a checkpoint (a path or ``pretrained:NAME``); with ``expect_config`` it must hold
    exactly that model."""
    path = checkpoint_path(path)
    meta, arrays = read_archive(path, "checkpoint", FORMAT_VERSION, checksum=True, error=CheckpointError)
    try:
        config = dataclass_from_dict(ModelConfig, meta["model"], "model")
        table = dataclass_from_dict(ElementTable, {"symbols": meta["elements"]}, "elements")
        normalisation = dataclass_from_dict(Normalisation, meta["normalisation"], "normalisation")
        if not len(normalisation.shift_ev) == len(normalisation.scale_ev) == len(table):
            raise MlpkitError(f"normalisation for {len(normalisation.shift_ev)} elements, table of {len(table)}")
        training = meta.get("training", {})
    except (MlpkitError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: unusable checkpoint metadata ({error})") from None
    if expect_config is not None and expect_config != config:
        raise CheckpointError(f"{path}: holds model {config}, expected {expect_config}")
    flat = {name[len(PARAM_PREFIX):]: arrays[name] for name in arrays if name.startswith(PARAM_PREFIX)}
    params = current_layout(traverse_util.unflatten_dict(flat, sep="/"), config, len(table))
    problem = params_mismatch(params, config, len(table))
    if problem:
        raise CheckpointError(f"{path}: parameters do not match the stored model configuration: {problem}")
    broken = sorted(name for name, leaf in flat.items() if leaf.dtype.kind != "f" or not np.isfinite(leaf).all())
    if broken:
        raise CheckpointError(f"{path}: parameters {broken[:3]} are not finite floating-point numbers")
    return Checkpoint(config, table, normalisation, params, training)

