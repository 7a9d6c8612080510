"""Training work for the panels: the study's cells (:func:`mlpkit.study.train_cell`) with live curves and a
Stop that works.

Every function takes the ``job`` of its panel: the training callback draws the epoch, reports it, and
returns ``job.stop_requested``, which makes ``train`` finish after that epoch with its best state so far.
"""

from __future__ import annotations

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.study import Recipe, StudyData, parse_init, pool_order, result_rows, train_cell
from mlpkit.training import TrainConfig, TrainResult, evaluate_members, predict_members
from mlpkit.transfer import TransferConfig, transferred
from mlpkit.viz.figures import record_epoch, set_learning_curves
from mlpkit.viz.jobs import Job

DEFAULT_TRANSFER = "length scaling + refit E0 + small learning rate"  # the study's "transfer", measured best
TRANSFER_OPTIONS = {  # label: (protocol, whether Ge lengths are scaled by a_Si / a_Ge of the data's reference)
    DEFAULT_TRANSFER: (TransferConfig(), True),
    "refit E0 + small learning rate": (TransferConfig(), False),
    "plain (copy all, train all)": (TransferConfig.plain(), False),
    "freeze embedding": (TransferConfig(frozen_blocks=("embedding",)), False),
    "freeze embedding + interactions": (TransferConfig(frozen_blocks=("embedding", "interactions")), False),
}


SELECTION_OPTIONS = ("random", "diverse")  # the frame selections a one-member source can rank (active needs an ensemble)


def recipes(data: StudyData, transfer: str = DEFAULT_TRANSFER, selection: str = "random") -> list[Recipe]:
    """Scratch, and transfer with the protocol labelled ``transfer`` in :data:`TRANSFER_OPTIONS`, both on the
    frames of ``selection``."""
    protocol, scaled = TRANSFER_OPTIONS[transfer]
    suffix = "" if selection == "random" else f"-{selection}"
    return [parse_init(f"scratch{suffix}"), parse_init(f"transfer{suffix}", protocol, data.name, scaled)]


def with_selection(data: StudyData, source: Checkpoint, selection: str, transfer: str = DEFAULT_TRANSFER) -> StudyData:
    """``data`` with its Ge pool also ranked by ``selection`` through ``source`` transferred as ``transfer``
    (:func:`mlpkit.study.pool_order`, seed 0); "random" needs no ranking."""
    if selection == "random" or selection in data.ranked_pools:
        return data
    protocol = recipes(data, transfer)[1].transfer
    return data.with_ranking(selection, pool_order(selection, transferred(source, protocol), data.ge_pool, seed=0))


def epoch_callback(figure, name: str, job: Job, max_epochs: int):
    """``train``'s callback: plot the epoch, report it, and ask to stop when Stop was pressed."""

    def callback(epoch: int, metrics: dict) -> bool:
        record_epoch(figure, name, metrics)
        job.report(f"{name}: epoch {epoch}/{max_epochs}, validation force MAE {metrics['force_mae_ev_per_a']:.3f} eV/Å")
        return job.stop_requested

    return callback


def compare_inits(data: StudyData, source: Checkpoint, size: int, config: TrainConfig, figure, job: Job,
                  transfer: str = DEFAULT_TRANSFER, selection: str = "random") -> dict[str, TrainResult]:
    """Train scratch and transfer (see :func:`recipes`) on the first ``size`` frames of the Ge pool in the
    order of ``selection`` (:data:`SELECTION_OPTIONS`).

    Stops between and within runs when asked; returns the runs that started (a stopped one keeps its best state).
    """
    results = {}
    data = with_selection(data, source, selection, transfer)
    for recipe in recipes(data, transfer, selection):
        if job.stop_requested:
            break
        callback = epoch_callback(figure, f"{recipe.name} (N={size})", job, config.max_epochs)
        results[recipe.name] = train_cell(data, recipe, size, config, source, callback)
    return results


def rows_on_test_set(data: StudyData, results: dict[str, TrainResult]) -> list[dict]:
    """The study's result rows (:func:`mlpkit.study.result_rows`) of each run, on the Ge test set."""
    rows = []
    for init, result in results.items():
        metadata = result.checkpoint.metadata
        rows += result_rows(data.name, metadata["training_frames"], init, metadata["train_config"]["seeds"],
                            evaluate_members(result.checkpoint, data.ge_test), result.wall_s)
    return rows


def learning_curve(data: StudyData, source: Checkpoint, sizes, config: TrainConfig, training_figure, curve_figure, job: Job,
                   transfer: str = DEFAULT_TRANSFER) -> list[dict]:
    """Scratch and transfer at every size; the learning-curve figure grows after each size."""
    rows = []
    for size in sizes:
        rows += rows_on_test_set(data, compare_inits(data, source, size, config, training_figure, job, transfer))
        set_learning_curves(curve_figure, rows)
        if job.stop_requested:
            break
    return rows


def force_predictions(checkpoint: Checkpoint, dataset: Dataset):
    """(reference, ensemble mean, ensemble spread) of every force component in ``dataset``, each [atoms, 3] eV/Å."""
    _, forces = predict_members(checkpoint, dataset)  # [K, atoms, 3]
    return dataset.forces_ev_per_a, forces.mean(axis=0), forces.std(axis=0)
