"""The study's results: one row schema, the files ``results.csv`` / ``results.json``, and the Ge test
errors of every stored run by group and temperature."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

import mlpkit
from mlpkit.checkpoint import load_checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.fileio import csv_text, write_text_atomic
from mlpkit.training import predict_members
from mlpkit.training.evaluate import errors_by_label

TEMPERATURE_BANDS = ("trained range", "hotter")  # test frames inside and above a study's training temperatures
RESULT_COLUMNS = (
    "data", "size", "seed", "init", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_ev_per_a",
    "force_rmse_ev_per_a", "stress_mae_gpa", "train_frames", "wall_s", "checkpoint",
)


def result_rows(data: str, size: int, init: str, seeds, tested: list[dict], wall_s: float, checkpoint="") -> list[dict]:
    """One row per seed of a cell, with ``RESULT_COLUMNS``: ``tested`` holds each member's test errors
    (:func:`~mlpkit.training.evaluate_members`), ``checkpoint`` the run's stored model ("" if none)."""
    rows = []
    for seed, metrics in zip(seeds, tested):
        row = {"data": data, "size": size, "seed": seed, "init": init, **metrics, "train_frames": size, "wall_s": wall_s,
               "checkpoint": str(checkpoint)}
        rows.append({column: row[column] for column in RESULT_COLUMNS})
    return rows


def breakdown_on_test_set(test: Dataset, out: Path, rows: list[dict], max_train_temperature_k: float | None = None
                          ) -> tuple[list[dict], dict]:
    """Test errors of every stored run by group and by temperature, and parity data of chosen runs.

    Reads the cached checkpoints (nothing is retrained); the rows naming a checkpoint give its members'
    seeds, in order. With ``max_train_temperature_k`` (a study trained only up to it) also by temperature
    band: "trained range" (at or below it, or of unknown temperature) and "hotter". Returns (records,
    parity): one record per (run, seed, kind, label) with "kind" "group", "temperature" or "band", and for
    the smallest and largest size of each initialisation the first seed's (reference, predicted) force
    components and energies per atom.
    """
    labels = {"group": test.group.astype(str),
              "temperature": np.array([f"{t:g} K" if np.isfinite(t) else "" for t in test.temperature_k])}
    if max_train_temperature_k is not None:
        labels["band"] = np.where(test.temperature_k > max_train_temperature_k, TEMPERATURE_BANDS[1], TEMPERATURE_BANDS[0])
    sizes = sorted({row["size"] for row in rows})
    records, parity = [], {}
    for path in dict.fromkeys(row["checkpoint"] for row in rows):
        mine = [row for row in rows if row["checkpoint"] == path]
        first = mine[0]
        energies, forces = predict_members(load_checkpoint(out / path), test)
        for row, member_energy, member_forces in zip(mine, energies, forces):
            for kind, label_of_frame in labels.items():
                for label, errors in errors_by_label(test, member_energy, member_forces, label_of_frame).items():
                    records.append({"size": first["size"], "init": first["init"], "seed": row["seed"], "kind": kind,
                                    "label": label, **errors})
        label = f"{first['init']}, N = {first['size']}"
        if first["size"] in (sizes[0], sizes[-1]) and label not in parity:
            parity[label] = {
                "forces_ev_per_a": (test.forces_ev_per_a.ravel(), forces[0].ravel()),
                "energy_ev_per_atom": (test.energy_ev / test.n_atoms, energies[0] / test.n_atoms),
            }
    return records, parity


def write_results(out: Path, config, rows: list[dict], breakdown: list[dict] = ()) -> None:
    """``results.csv`` (one row per run) and ``results.json`` (rows, the study's configuration, versions,
    test errors by group and temperature), atomically."""
    write_text_atomic(out / "results.csv", csv_text(rows, RESULT_COLUMNS))
    versions = {"mlpkit": mlpkit.__version__, "jax": jax.__version__, "numpy": np.__version__}
    finite_rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows]
    document = {"config": dataclasses.asdict(config), "versions": versions, "rows": finite_rows, "breakdown": list(breakdown)}
    write_text_atomic(out / "results.json", json.dumps(document, indent=1, default=str))
