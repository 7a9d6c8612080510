"""Training work for the panels: Ge from scratch or transferred from Si, with live curves and a Stop that works.

Every function takes the ``job`` of its panel: the training callback draws the epoch, reports it, and
returns ``job.stop_requested``, which makes ``train`` finish after that epoch with its best state so far.
"""

from __future__ import annotations

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.training import TrainConfig, TrainResult, evaluate_members, predict_members, train
from mlpkit.transfer import TransferConfig, fine_tune
from mlpkit.viz.figures import record_epoch, set_learning_curves
from mlpkit.viz.jobs import Job

TRANSFER_OPTIONS = {  # the first is the study's default "transfer", measured best (mlpkit.transfer)
    "length scaling + refit E0 + small learning rate": TransferConfig().with_length_scaling("sw"),
    "refit E0 + small learning rate": TransferConfig(),
    "plain (copy all, train all)": TransferConfig.plain(),
    "freeze embedding": TransferConfig(frozen_blocks=("embedding",)),
    "freeze embedding + interactions": TransferConfig(frozen_blocks=("embedding", "interactions")),
}


def epoch_callback(figure, name: str, job: Job, max_epochs: int):
    """``train``'s callback: plot the epoch, report it, and ask to stop when Stop was pressed."""

    def callback(epoch: int, metrics: dict) -> bool:
        record_epoch(figure, name, metrics)
        job.report(f"{name}: epoch {epoch}/{max_epochs}, validation force MAE {metrics['force_mae_ev_per_a']:.3f} eV/Å")
        return job.stop_requested

    return callback


def train_ge(init: str, frames: Dataset, validation: Dataset, config: TrainConfig, source: Checkpoint | None = None,
             transfer: TransferConfig = TransferConfig(), callback=None) -> TrainResult:
    """A Ge model from scratch (``init="scratch"``) or fine-tuned from ``source`` (``"transfer"``)."""
    if init == "scratch":
        return train(frames, validation, config, callback=callback, progress=False)
    return fine_tune(source, frames, validation, config, transfer, callback=callback, progress=False)


def compare_inits(data: dict, source: Checkpoint, size: int, config: TrainConfig, transfer: TransferConfig,
                  figure, job: Job, inits=("scratch", "transfer")) -> dict[str, TrainResult]:
    """Train each initialisation on the first ``size`` Ge frames of ``data`` (``mlpkit.study.load_study_data``).

    Stops between and within runs when asked; returns the runs that started (a stopped one keeps its best state).
    """
    frames = data["ge_pool"].first(size)
    results = {}
    for init in inits:
        if job.stop_requested:
            break
        name = f"{init} (N={size})"
        callback = epoch_callback(figure, name, job, config.max_epochs)
        results[init] = train_ge(init, frames, data["ge_validation"], config, source, transfer, callback)
    return results


def rows_on_test_set(results: dict[str, TrainResult], size: int, seeds, test_set: Dataset) -> list[dict]:
    """One row per (init, seed) with each member's test errors, in ``mlpkit.study``'s row format."""
    rows = []
    for init, result in results.items():
        for seed, metrics in zip(seeds, evaluate_members(result.checkpoint, test_set)):
            rows.append({"size": size, "seed": seed, "init": init, **metrics})
    return rows


def learning_curve(data: dict, source: Checkpoint, sizes, config: TrainConfig, transfer: TransferConfig,
                   training_figure, curve_figure, job: Job) -> list[dict]:
    """Scratch and transfer at every size; the learning-curve figure grows after each size."""
    rows = []
    for size in sizes:
        results = compare_inits(data, source, size, config, transfer, training_figure, job)
        rows += rows_on_test_set(results, size, config.seeds, data["ge_test"])
        set_learning_curves(curve_figure, rows)
        if job.stop_requested:
            break
    return rows


def force_predictions(checkpoint: Checkpoint, dataset: Dataset):
    """(reference, ensemble mean, ensemble spread) of every force component in ``dataset``, each [atoms, 3] eV/Å."""
    _, forces = predict_members(checkpoint, dataset)  # [K, atoms, 3]
    return dataset.forces_ev_per_a, forces.mean(axis=0), forces.std(axis=0)
