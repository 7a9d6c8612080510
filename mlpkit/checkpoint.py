"""The one checkpoint format: a trained (ensemble) model in a single checksummed file, no pickle.

The file is a numpy ``.npz`` archive. ``meta.json`` (stored as bytes) holds the format version, the
model configuration, the element table, the normalisation and free-form training metadata; each
parameter array is stored under ``params/<path>`` with a leading ensemble axis K. ``sha256`` covers
the metadata and every array (name, dtype, shape, bytes), so any corruption is detected on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tokenize
import zipfile
from importlib import resources
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from mlpkit.errors import MlpkitError
from mlpkit.fileio import atomic_path, dataclass_from_dict
from mlpkit.models import ModelConfig, params_mismatch
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
        "format_version": FORMAT_VERSION,
        "model": checkpoint.config.to_dict(),
        "elements": list(checkpoint.table.symbols),
        "normalisation": dataclasses.asdict(checkpoint.normalisation),
        "training": checkpoint.metadata,
    }


def _digest(meta_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(meta_bytes)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checkpoint(checkpoint: Checkpoint, path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a crash leaves the old file or none)."""
    meta_bytes = json.dumps(_metadata(checkpoint), sort_keys=True).encode()
    flat = traverse_util.flatten_dict(jax.device_get(checkpoint.params), sep="/")
    arrays = {PARAM_PREFIX + name: np.asarray(leaf) for name, leaf in flat.items()}
    arrays["meta.json"] = np.frombuffer(meta_bytes, np.uint8)
    arrays["sha256"] = np.frombuffer(_digest(meta_bytes, arrays).encode(), np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, **arrays)
    return Path(path)


def _read_arrays(path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError, tokenize.TokenError) as error:  # numpy parses .npy headers as Python literals
        raise CheckpointError(f"{path}: not a readable mlpkit checkpoint ({error})") from None


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
    arrays = _read_arrays(path)
    if "meta.json" not in arrays or "sha256" not in arrays:
        raise CheckpointError(f"{path}: not an mlpkit checkpoint (no metadata or checksum)")
    meta_bytes = arrays.pop("meta.json").tobytes()
    stored_digest = arrays.pop("sha256").tobytes().decode(errors="replace")
    try:
        meta = json.loads(meta_bytes)
        version = int(meta["format_version"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        raise CheckpointError(f"{path}: corrupt checkpoint (metadata unreadable)") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this mlpkit reads ({FORMAT_VERSION}); upgrade mlpkit"
        )
    if _digest(meta_bytes, {**arrays, "meta.json": np.frombuffer(meta_bytes, np.uint8)}) != stored_digest:
        raise CheckpointError(f"{path}: corrupt checkpoint (SHA-256 mismatch); retrain or restore a copy")
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
    params = traverse_util.unflatten_dict(flat, sep="/")
    problem = params_mismatch(params, config, len(table))
    if problem:
        raise CheckpointError(f"{path}: parameters do not match the stored model configuration: {problem}")
    broken = sorted(name for name, leaf in flat.items() if leaf.dtype.kind != "f" or not np.isfinite(leaf).all())
    if broken:
        raise CheckpointError(f"{path}: parameters {broken[:3]} are not finite floating-point numbers")
    return Checkpoint(config, table, normalisation, params, training)

