"""Training the study's models: the Si source, the rankings of the Ge pool, and one cell
(size, initialisation) as one vmapped ensemble with one member per seed; each cached by
:mod:`mlpkit.study.cache`."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

import mlpkit
from mlpkit.checkpoint import Checkpoint, checkpoint_path, load_checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import sha256_of, write_text_atomic
from mlpkit.selection import farthest_point_order, force_disagreement, ranked_by_disagreement, structure_descriptors
from mlpkit.study.cache import cached_training, run_key
from mlpkit.study.config import StudyConfig, StudyData
from mlpkit.study.recipe import Recipe, parse_init
from mlpkit.training import TrainConfig, TrainResult, train
from mlpkit.transfer import fine_tune, transferred


def recipe_of(config: StudyConfig, init: str) -> Recipe:
    """The recipe of ``init`` with the study's transfer protocol and length scaling."""
    return parse_init(init, config.transfer, config.data, config.rescale_lengths)


def train_cell(data: StudyData, recipe: Recipe, size: int, config: TrainConfig, source: Checkpoint | None = None,
               callback=None, progress: bool = False) -> TrainResult:
    """Train one cell: ``config.seeds`` members on the first ``size`` frames (0: all) of the recipe's
    selection, from scratch or fine-tuned from ``source``; ``callback`` as in :func:`~mlpkit.training.train`."""
    frames = data.frames(recipe.selection, size)
    if recipe.transfer is None:
        return train(frames, data.ge_validation, config, callback=callback, progress=progress)
    if source is None:
        raise MlpkitError(f"the initialisation {recipe.name!r} transfers from a Si source model, and none was given")
    return fine_tune(source, frames, data.ge_validation, config, recipe.transfer, callback=callback, progress=progress)


def _payload(config: StudyConfig, checksums: dict, role: str, **fields) -> dict:
    return {"role": role, "data": config.data, **fields, "validation_fraction": config.validation_fraction,
            "data_seed": config.data_seed, "data_sha256": checksums, "version": mlpkit.__version__}


def source_payload(config: StudyConfig, checksums: dict) -> dict:
    """The configuration that keys the study's own Si source run."""
    return _payload(config, checksums, "source", train=config.members.key_fields())


def source_model(config: StudyConfig, data: StudyData, checksums: dict, out: Path, progress: bool,
                 wait_timeout_s: float | None) -> dict:
    """The Si source run: {"checkpoint", "sha256", ...} (see :func:`~mlpkit.study.cache.cached_training`),
    or ``config.source``."""
    if config.source is not None:
        return _given_source(config)
    payload = source_payload(config, checksums)

    def fit():
        return train(data.si_train, data.si_validation, config.members, progress=progress)

    return cached_training(out / "runs" / run_key(payload), payload, fit, wait_timeout_s=wait_timeout_s)


def _given_source(config: StudyConfig) -> dict:
    path = checkpoint_path(config.source)
    source = load_checkpoint(path)
    if source.config != config.train.model:
        raise MlpkitError(f"{config.source}: the source is {source.config}, the study trains {config.train.model}")
    transferred(source, config.transfer)  # a source of other elements (a Ge model) is refused before any run trains
    if len({seed % source.ensemble_size for seed in config.seeds}) < len(config.seeds):
        warnings.warn(f"{config.source} has {source.ensemble_size} member(s) for {len(config.seeds)} seeds: the transfer "
                      f"of seed s starts from source member s mod {source.ensemble_size}, so transferred runs of seeds "
                      "that share a start and their batches repeat each other (scratch runs still differ)", stacklevel=3)
    return {"checkpoint": source, "sha256": sha256_of(path)}


def pool_order(selection: str, model: Checkpoint, pool: Dataset, seed: int) -> np.ndarray:
    """Indices of ``pool``, best first, as ``selection`` ranks them through the transferred ``model``."""
    if selection == "active":
        return ranked_by_disagreement(force_disagreement(model, pool))
    if selection == "diverse":
        return farthest_point_order(structure_descriptors(model, pool), seed, pool.group)
    raise MlpkitError(f"no ranking of the pool is called {selection!r}")


def ranked_order(selection: str, config: StudyConfig, data: StudyData, source: dict, checksums: dict, out: Path) -> list[int]:
    """The Ge pool's indices in the order of ``selection`` (seen through the transfer's length scale); cached."""
    transfer = recipe_of(config, "transfer").transfer
    payload = {"role": "selection", "source_sha256": source["sha256"], "data": config.data, "data_sha256": checksums,
               "data_seed": config.data_seed, "validation_fraction": config.validation_fraction,
               "length_scale": transfer.length_scale, "version": mlpkit.__version__}
    if selection != "active":  # the active ranking's key is older than the others: kept, so its runs stay cached
        payload["selection"] = selection
    if config.max_train_temperature_k is not None:  # the pool it ranks is the split's
        payload["max_train_temperature_k"] = config.max_train_temperature_k
    path = out / "runs" / run_key(payload) / "order.json"
    if not path.exists():
        order = pool_order(selection, transferred(source["checkpoint"], transfer), data.ge_pool, config.data_seed)
        write_text_atomic(path, json.dumps(order.tolist()))
    return json.loads(path.read_text())


def target_payload(config: StudyConfig, data: StudyData, checksums: dict, source_sha256: str | None, size: int,
                   init: str) -> tuple[dict, int, TrainConfig]:
    """(the configuration that keys one cell's run, its frame count, its training configuration)."""
    recipe = recipe_of(config, init)
    n_frames = len(data.frames(recipe.selection, size))
    members = config.members_for(n_frames)
    payload = _payload(config, checksums, "target", size=n_frames, init=init, train=members.key_fields())
    if config.max_train_temperature_k is not None:  # absent otherwise, so that older runs keep their keys
        payload["max_train_temperature_k"] = config.max_train_temperature_k
    if recipe.needs_source:  # an active selection ranks through the transfer's length scale, so it is part of the key
        payload["transfer"] = dataclasses.asdict(recipe.transfer or recipe_of(config, "transfer").transfer)
        payload["source_sha256"] = source_sha256
    return payload, n_frames, members


def target_run(config: StudyConfig, data: StudyData, checksums: dict, source: dict | None, size: int, init: str, out: Path,
               progress: bool, claim: bool = False) -> tuple[dict, int, Path] | None:
    """Train (or read back) one cell; returns (the run as :func:`cached_training` gives it, its frame count,
    its checkpoint's path), or with ``claim`` None while another process trains it."""
    payload, n_frames, members = target_payload(config, data, checksums, source and source["sha256"], size, init)
    folder = out / "runs" / run_key(payload)

    def fit():
        return train_cell(data, recipe_of(config, init), size, members, source and source["checkpoint"], progress=progress)

    run = cached_training(folder, payload, fit, data.ge_test, claim=claim)
    return None if run is None else (run, n_frames, folder / "model.npz")
