"""Error metrics of a trained model on a data set, and the training history as CSV."""

from __future__ import annotations

import csv
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import write_text_atomic
from mlpkit.models.energy import cast_params, member_energy_fn, over_members
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


@functools.lru_cache(maxsize=4)
def _mean_sums_program(checkpoint: Checkpoint):
    energy = over_members(member_energy_fn(checkpoint.config, checkpoint.table, checkpoint.normalisation), (0, None, None, None, None))

    def mean_energy(params, *args):
        return jnp.mean(energy(params, *args))

    return jax.jit(lambda params, batch: error_sums(predict_batch(mean_energy, params, batch), batch))


def evaluate(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> dict:
    """Errors of the ensemble-mean prediction on ``dataset`` (see :func:`~mlpkit.training.loss.metrics_from_sums`)."""
    if len(dataset) == 0:
        raise MlpkitError("the evaluation set has no frames")
    checkpoint.table.check(dataset.species, "the evaluation set")
    plan = BatchPlan(dataset, checkpoint.config.cutoff_a, batch_size)
    params = cast_params(checkpoint.params, jnp.float32)
    return metrics_from_sums(accumulate_sums(_mean_sums_program(checkpoint), params, plan))


def evaluate_members(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> list[dict]:
    """Errors of each ensemble member on ``dataset``, one compiled program for all members."""
    if len(dataset) == 0:
        raise MlpkitError("the evaluation set has no frames")
    checkpoint.table.check(dataset.species, "the evaluation set")
    energy = member_energy_fn(checkpoint.config, checkpoint.table, checkpoint.normalisation)
    sums = jax.jit(over_members(lambda params, batch: error_sums(predict_batch(energy, params, batch), batch), (0, None)))
    plan = BatchPlan(dataset, checkpoint.config.cutoff_a, batch_size)
    return member_metrics(sums, cast_params(checkpoint.params, np.float32), plan)


def history_csv(history: list[dict]) -> str:
    """Per-epoch metrics as CSV text, one row per epoch, columns in a fixed order."""
    if not history:
        raise MlpkitError("no epochs to write")
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and np.isfinite(v) else v) for k, v in row.items()})
    return stream.getvalue()


def write_history(path, history: list[dict]) -> None:
    write_text_atomic(path, history_csv(history))
