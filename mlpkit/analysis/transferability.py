"""Temperature transferability: a model's errors and MD stability at temperatures it was not trained on.

The reference is any data set whose frames carry their temperatures: fresh SW snapshots
(:func:`mlpkit.reference.sw_snapshots`) on the SW path, the mlearn test set (its AIMD frames) on the DFT path.
"""

from __future__ import annotations

import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.md.replicas import run_replicas, stability_summary
from mlpkit.md.run import MDConfig
from mlpkit.md.stability import StabilityLimits
from mlpkit.structures import diamond
from mlpkit.training.evaluate import errors_by_label, predict_members


def errors_by_temperature(checkpoint: Checkpoint, dataset: Dataset) -> list[dict]:
    """Errors of the ensemble mean per temperature of ``dataset``: rows of ``temperature_k``, ``frames``,
    ``energy_mae_mev_per_atom`` and ``force_mae_ev_per_a``; frames of unknown temperature are left out."""
    energies, forces = predict_members(checkpoint, dataset)
    temperature = np.asarray(dataset.temperature_k, float)
    labels = np.array([f"{t:g}" if np.isfinite(t) else "" for t in temperature])
    by_label = errors_by_label(dataset, energies.mean(axis=0), forces.mean(axis=0), labels)
    return sorted(({"temperature_k": float(key), **errors} for key, errors in by_label.items()),
                  key=lambda row: row["temperature_k"])


def temperature_transferability(
    checkpoint: Checkpoint,
    reference: Dataset,
    seeds=(0, 1),
    duration_fs: float = 2000.0,
    config: MDConfig = MDConfig(temperature_k=300.0, float64=False),
    limits: StabilityLimits = StabilityLimits(),
    progress: bool = True,
) -> list[dict]:
    """Per temperature of ``reference``: the model's errors there and the stability of NVT MD at it
    (``fraction_stable`` and ``mean_time_to_failure_fs`` over ``seeds``, from the 64-atom crystal)."""
    rows = errors_by_temperature(checkpoint, reference)
    element = checkpoint.table.symbols[0]
    temperatures = [row["temperature_k"] for row in rows]
    replicas = run_replicas(checkpoint.potential(), diamond(element), temperatures, seeds, duration_fs, config, limits, progress)
    stability = {row["temperature_k"]: row for row in stability_summary(replicas)}
    return [{**row, **{k: v for k, v in stability[row["temperature_k"]].items() if k != "temperature_k"}} for row in rows]
