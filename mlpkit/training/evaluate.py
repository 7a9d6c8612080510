"""Error metrics of a trained model on a data set, and the training history as CSV."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import csv_text, write_text_atomic
from mlpkit.models import ModelConfig
from mlpkit.members import over_members
from mlpkit.models.energy import cast_params, neighbor_cutoff_a, normalised_energy_fn
from mlpkit.models.graph import ElementTable
from mlpkit.training.batches import BatchPlan
from mlpkit.training.loss import error_sums, metrics_from_sums, predict_batch


def accumulate_sums(sums_fn, params, plan: BatchPlan) -> dict:
    """Error sums of ``sums_fn(params, batch)`` added over every batch of ``plan`` (host arrays)."""
    total = None
    for batch in plan.batches():
        part = jax.device_get(sums_fn(params, batch))
        total = part if total is None else {k: total[k] + part[k] for k in total}
    return total


def member_metrics(sums_fn, stacked_params, plan: BatchPlan) -> list[dict]:
    """Metrics of each member from ``sums_fn(stacked_params, batch) -> error sums with a member axis``."""
    total = accumulate_sums(sums_fn, stacked_params, plan)
    return [metrics_from_sums({k: v[m] for k, v in total.items()}) for m in range(len(total["force_n"]))]


@functools.lru_cache(maxsize=8)
def member_sums_program(config: ModelConfig, table: ElementTable):
    """Compiled ``f(stacked_params, normalisation_arrays, batch)`` -> error sums with a member axis; one per model."""
    energy = normalised_energy_fn(config, table)

    def sums(params, normalisation, batch):
        return error_sums(predict_batch(lambda p, *args: energy(p, normalisation, *args), params, batch), batch)

    return jax.jit(over_members(sums, (0, None, None)))


@functools.lru_cache(maxsize=8)
def _mean_sums_program(config: ModelConfig, table: ElementTable):
    energy = over_members(normalised_energy_fn(config, table), (0, None, None, None, None, None))

    def sums(params, normalisation, batch):
        return error_sums(predict_batch(lambda p, *args: jnp.mean(energy(p, normalisation, *args)), params, batch), batch)

    return jax.jit(sums)


def evaluation_plan(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> BatchPlan:
    """``dataset`` batched with the neighbour lists ``checkpoint`` needs; its elements checked against the model's."""
    if len(dataset) == 0:
        raise MlpkitError("the evaluation set has no frames")
    checkpoint.table.check(dataset.species, "the evaluation set")
    return BatchPlan(dataset, neighbor_cutoff_a(checkpoint.config, checkpoint.normalisation), batch_size)


@functools.lru_cache(maxsize=8)
def _member_prediction_program(config: ModelConfig, table: ElementTable):
    energy = normalised_energy_fn(config, table)

    def predict(params, normalisation, batch):
        return predict_batch(lambda p, *args: energy(p, normalisation, *args), params, batch)[:2]

    return jax.jit(over_members(predict, (0, None, None)))


def predict_members(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Each member's energies [K, F] (eV) and forces [K, ΣN, 3] (eV/Å), frames and atoms in ``dataset`` order."""
    plan = evaluation_plan(checkpoint, dataset, batch_size)
    program = _member_prediction_program(checkpoint.config, checkpoint.table)
    arrays = checkpoint.normalisation.arrays(np.float32)
    params = cast_params(checkpoint.params, np.float32)
    energies = np.zeros((checkpoint.ensemble_size, len(dataset)))
    forces = np.zeros((checkpoint.ensemble_size, int(dataset.n_atoms.sum()), 3))
    offsets = dataset.offsets
    for frames, batch in plan.indexed_batches():
        energy, force = jax.device_get(program(params, arrays, batch))  # [K, B], [K, B, N, 3]
        for row, frame in enumerate(frames):
            energies[:, frame] = energy[:, row]
            forces[:, offsets[frame]:offsets[frame + 1]] = force[:, row, :dataset.n_atoms[frame]]
    return energies, forces


def evaluate(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> dict:
    """Errors of the ensemble-mean prediction on ``dataset`` (see :func:`~mlpkit.training.loss.metrics_from_sums`)."""
    program = _mean_sums_program(checkpoint.config, checkpoint.table)
    arrays = checkpoint.normalisation.arrays(np.float32)
    params = cast_params(checkpoint.params, np.float32)
    return metrics_from_sums(accumulate_sums(lambda p, batch: program(p, arrays, batch), params, evaluation_plan(checkpoint, dataset, batch_size)))


def evaluate_members(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> list[dict]:
    """Errors of each ensemble member on ``dataset``, one compiled program for all members."""
    program = member_sums_program(checkpoint.config, checkpoint.table)
    arrays = checkpoint.normalisation.arrays(np.float32)
    return member_metrics(lambda p, batch: program(p, arrays, batch), cast_params(checkpoint.params, np.float32),
                          evaluation_plan(checkpoint, dataset, batch_size))


def errors_by_label(dataset: Dataset, energy_ev: np.ndarray, forces_ev_per_a: np.ndarray, label_of_frame: np.ndarray) -> dict:
    """{label: {"frames", energy and force MAE / RMSE}} of one model's predictions (energies [F] eV, forces
    [ΣN, 3] eV/Å) over the frames of each non-empty label (a group, a temperature); the metrics are those
    of :func:`~mlpkit.training.loss.metrics_from_sums`."""
    frame_of_atom = np.repeat(np.arange(len(dataset)), dataset.n_atoms)
    energy_error = (energy_ev - dataset.energy_ev) / dataset.n_atoms  # [F] eV/atom
    force_error = forces_ev_per_a - dataset.forces_ev_per_a  # [ΣN, 3] eV/Å
    result = {}
    for label in sorted(set(label_of_frame) - {""}):
        frames = label_of_frame == label
        energy, forces = energy_error[frames], force_error[frames[frame_of_atom]]
        sums = {"energy_abs": np.abs(energy).sum(), "energy_sq": np.square(energy).sum(), "energy_n": energy.size,
                "force_abs": np.abs(forces).sum(), "force_sq": np.square(forces).sum(), "force_n": forces.size,
                "stress_abs": 0.0, "stress_sq": 0.0, "stress_n": 0}
        metrics = metrics_from_sums(sums)
        result[str(label)] = {"frames": int(frames.sum()), **{k: v for k, v in metrics.items() if not k.startswith("stress")}}
    return result


def history_csv(history: list[dict]) -> str:
    """Per-epoch metrics as CSV text, one row per epoch, columns in a fixed order."""
    if not history:
        raise MlpkitError("no epochs to write")
    rounded = [{k: (f"{v:.6g}" if isinstance(v, float) and np.isfinite(v) else v) for k, v in row.items()} for row in history]
    return csv_text(rounded, history[0])


def write_history(path, history: list[dict]) -> None:
    write_text_atomic(path, history_csv(history))
