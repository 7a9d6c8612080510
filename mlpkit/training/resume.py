"""Resume state of a training run: everything carried from one epoch to the next, in one npz (no pickle).

``train(..., checkpoint_path="run/model.npz")`` writes ``run/model.resume.npz`` atomically after every
epoch and removes it when training finishes. A later ``train`` call with the same configuration, data
and initial parameters (checked by a fingerprint) continues from it and reproduces the uninterrupted
run exactly: parameters, EMA and optimiser state, the best state so far, the batch-order RNG and the
history are all restored. The file is an mlpkit archive (:func:`~mlpkit.fileio.archive_bytes`); a state
from another run, or a damaged file, is ignored with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import jax
import numpy as np

from mlpkit.errors import MlpkitError
from mlpkit.fileio import archive_bytes, read_archive, write_bytes_atomic

FORMAT_VERSION = 2
TREES = ("params", "opt_state", "ema", "best")


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """A run after ``epoch`` (−1: nothing done yet) and ``count`` optimiser steps.

    ``params``, ``opt_state``, ``ema`` and ``best`` are pytrees with a leading member axis K;
    ``best_score`` (the score the best state was chosen by), ``best_force_mae`` (its validation force MAE,
    eV/Å) and ``best_epoch`` are [K]; ``rng_state`` is the batch-order generator's state.
    """

    epoch: int
    count: int
    params: object
    opt_state: object
    ema: object
    best: object
    best_score: np.ndarray
    best_force_mae: np.ndarray
    best_epoch: np.ndarray
    rng_state: dict
    history: list
    elapsed_s: float


def resume_path(checkpoint_path) -> Path:
    """``run/model.npz`` → ``run/model.resume.npz``."""
    path = Path(checkpoint_path)
    return path.with_name(f"{path.stem}.resume.npz")


def fingerprint(*parts) -> str:
    """SHA-256 over JSON-able parts and numpy arrays (dtype, shape and bytes): what makes a run this run."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            digest.update(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def save_resume_state(path, state: TrainingState, run_fingerprint: str) -> None:
    arrays = {}
    for tree in TREES:
        for index, leaf in enumerate(jax.tree_util.tree_leaves(jax.device_get(getattr(state, tree)))):
            arrays[f"{tree}/{index:05d}"] = leaf
    for name in ("best_score", "best_force_mae", "best_epoch"):
        arrays[name] = getattr(state, name)
    meta = {"fingerprint": run_fingerprint, "epoch": state.epoch, "count": state.count, "rng_state": state.rng_state,
            "history": state.history, "elapsed_s": state.elapsed_s}
    write_bytes_atomic(path, archive_bytes(meta, arrays, FORMAT_VERSION))


def load_resume_state(path, template: TrainingState, run_fingerprint: str) -> TrainingState | None:
    """The state saved at ``path`` if it belongs to this run (``run_fingerprint``), else None (with a warning)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        meta, arrays = read_archive(path, "training resume state", FORMAT_VERSION)
    except MlpkitError as error:
        warnings.warn(f"{error}; starting afresh")
        return None
    if meta.get("fingerprint") != run_fingerprint:
        warnings.warn(f"{path}: resume state of another training run (settings or data differ); starting afresh")
        return None
    try:
        trees = {tree: _restore(getattr(template, tree), arrays, tree) for tree in TREES}
        return TrainingState(
            epoch=int(meta["epoch"]), count=int(meta["count"]), **trees,
            best_score=arrays["best_score"], best_force_mae=arrays["best_force_mae"], best_epoch=arrays["best_epoch"],
            rng_state=meta["rng_state"],
            history=meta["history"], elapsed_s=float(meta["elapsed_s"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"{path}: unusable resume state ({error}); starting afresh")
        return None


def _restore(template, arrays: dict, tree: str):
    """The leaves stored under ``tree/`` in the structure of ``template``; shapes and dtypes must match."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    stored = [arrays[f"{tree}/{index:05d}"] for index in range(len(leaves))]
    for leaf, value in zip(leaves, stored):
        if np.shape(leaf) != value.shape or np.asarray(leaf).dtype != value.dtype:
            raise ValueError(f"{tree}: stored leaf {value.dtype}{value.shape} does not fit {np.asarray(leaf).dtype}{np.shape(leaf)}")
    if f"{tree}/{len(leaves):05d}" in arrays:
        raise ValueError(f"{tree}: more stored leaves than the run has")
    return jax.tree_util.tree_unflatten(treedef, stored)


def remove_resume_state(path) -> None:
    Path(path).unlink(missing_ok=True)
