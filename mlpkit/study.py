"""The learning-curve study: Ge models trained from scratch or transferred from Si, over training-set sizes.

One call trains the Si source model, then for every Ge training-set size and every initialisation
trains an ensemble (one member per seed, vmapped) and evaluates each member on the Ge test set.
Each run is stored under ``out/runs/<hash of its full configuration>/``, written atomically, so an
interrupted study resumes where it stopped and a repeated call only reads results back.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

import mlpkit
from mlpkit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mlpkit.data import load_dataset, shuffled, sw_data_path, train_val_split
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import write_text_atomic
from mlpkit.report import write_report
from mlpkit.training import TrainConfig, evaluate_members, train
from mlpkit.transfer import TransferConfig, fine_tune

INITS = ("scratch", "transfer", "transfer-plain")
RESULT_COLUMNS = (
    "data", "size", "seed", "init", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_ev_per_a",
    "force_rmse_ev_per_a", "stress_mae_gpa", "train_frames", "wall_s", "checkpoint",
)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What to sweep. ``sizes``: Ge training frames per run, 0 meaning all of them."""

    data: str = "sw"  # "sw" (shipped Stillinger–Weber sets) or "mlearn" (DFT, from mlearn_dir)
    mlearn_dir: str | None = None
    sizes: tuple[int, ...] = (5, 10, 25, 50, 100, 0)
    seeds: tuple[int, ...] = (0, 1, 2)
    inits: tuple[str, ...] = ("scratch", "transfer")
    train: TrainConfig = TrainConfig()
    transfer: TransferConfig = TransferConfig()
    validation_fraction: float = 0.1
    data_seed: int = 0

    def __post_init__(self):
        if self.data not in ("sw", "mlearn"):
            raise MlpkitError(f"unknown data source {self.data!r}: use 'sw' or 'mlearn'")
        if self.data == "mlearn" and not self.mlearn_dir:
            raise MlpkitError("the mlearn study needs mlearn_dir, the folder with {Si,Ge}/{training,test}.json")
        unknown = sorted(set(self.inits) - set(INITS))
        if unknown or not self.inits or not self.seeds or min(self.sizes, default=-1) < 0:
            raise MlpkitError(f"invalid study: inits must come from {list(INITS)}, seeds and sizes ≥ 0 non-empty")

    def quick(self) -> StudyConfig:
        return dataclasses.replace(self, sizes=(5, 10, 25, 50, 100), train=self.train.quick())


def _load(config: StudyConfig, element: str, split: str) -> Dataset:
    if config.data == "sw":
        return load_dataset(sw_data_path(element, split))
    return load_dataset(Path(config.mlearn_dir) / element / f"{split}.json")


def load_study_data(config: StudyConfig) -> dict[str, Dataset]:
    """Si training/validation, the shuffled Ge pool (nested subsets via ``first``), Ge validation and test."""
    si_train, si_validation = train_val_split(_load(config, "Si", "training"), config.validation_fraction, config.data_seed)
    ge_pool, ge_validation = train_val_split(_load(config, "Ge", "training"), config.validation_fraction, config.data_seed)
    return {
        "si_train": si_train, "si_validation": si_validation,
        "ge_pool": shuffled(ge_pool, config.data_seed), "ge_validation": ge_validation,
        "ge_test": _load(config, "Ge", "test"),
    }


def run_key(payload: dict) -> str:
    """Short SHA-256 of a run's full configuration (canonical JSON)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached_training(folder: Path, payload: dict, train_fn, test_set: Dataset | None = None) -> dict:
    """The finished run in ``folder``, or train (and test) it now.

    Returns {"checkpoint", "wall_s", "test"}: "test" holds each member's errors on ``test_set``.
    ``done.json`` is written last, so a run interrupted before it is simply run again.
    """
    done = folder / "done.json"
    if done.exists():
        record = json.loads(done.read_text())
        return {**record, "checkpoint": load_checkpoint(folder / "model.npz")}
    result = train_fn()
    save_checkpoint(result.checkpoint, folder / "model.npz")
    tested = evaluate_members(result.checkpoint, test_set) if test_set is not None else []
    record = {"config": payload, "wall_s": result.wall_s, "test": tested}
    write_text_atomic(done, json.dumps(record, default=str, indent=1))
    return {**record, "checkpoint": result.checkpoint}


def _source_model(config: StudyConfig, data: dict, out: Path, progress: bool) -> Checkpoint:
    train_config = dataclasses.replace(config.train, seeds=config.seeds)
    payload = {"role": "source", "data": config.data, "train": dataclasses.asdict(train_config),
               "validation_fraction": config.validation_fraction, "data_seed": config.data_seed,
               "version": mlpkit.__version__}
    folder = out / "runs" / run_key(payload)

    def fit():
        return train(data["si_train"], data["si_validation"], train_config, progress=progress)

    return _cached_training(folder, payload, fit)["checkpoint"]


def _target_run(config: StudyConfig, data: dict, source: Checkpoint, size: int, init: str, out: Path, progress: bool):
    """Train (or read back) one cell: all seeds of one (size, init) as one vmapped ensemble."""
    train_config = dataclasses.replace(config.train, seeds=config.seeds)
    frames = data["ge_pool"].first(size or len(data["ge_pool"]))  # nested: N = 10 ⊂ N = 25
    transfer = TransferConfig.plain() if init == "transfer-plain" else config.transfer
    payload = {"role": "target", "data": config.data, "size": len(frames), "init": init,
               "train": dataclasses.asdict(train_config), "validation_fraction": config.validation_fraction,
               "data_seed": config.data_seed, "version": mlpkit.__version__}
    if init != "scratch":
        payload["transfer"] = dataclasses.asdict(transfer)
        payload["source"] = source.metadata.get("train_config")
    folder = out / "runs" / run_key(payload)

    def fit():
        if init == "scratch":
            return train(frames, data["ge_validation"], train_config, progress=progress)
        return fine_tune(source, frames, data["ge_validation"], train_config, transfer, progress=progress)

    return _cached_training(folder, payload, fit, data["ge_test"]), len(frames), folder / "model.npz"


def run_study(config: StudyConfig, out, progress: bool = True, on_row=None) -> list[dict]:
    """Run (or resume) the whole sweep; writes ``out/results.csv``, ``results.json`` and ``report.html``.

    ``on_row(row)`` is called as each row becomes available (live plots).
    """
    out = Path(out)
    data = load_study_data(config)
    source = _source_model(config, data, out, progress) if set(config.inits) - {"scratch"} else None
    cells = [(size, init) for size in config.sizes for init in config.inits]
    rows = []
    for size, init in tqdm(cells, desc="study", unit="run", disable=not progress):
        run, n_frames, path = _target_run(config, data, source, size, init, out, progress)
        for seed, metrics in zip(config.seeds, run["test"]):
            row = {"data": config.data, "size": n_frames, "seed": seed, "init": init, **metrics,
                   "train_frames": n_frames, "wall_s": run["wall_s"], "checkpoint": str(path.relative_to(out))}
            rows.append({column: row[column] for column in RESULT_COLUMNS})
            if on_row is not None:
                on_row(rows[-1])
        write_results(out, config, rows)
    write_report(rows, out / "report.html", title=f"Si → Ge transfer on {config.data} data: learning curves")
    return rows


def write_results(out: Path, config: StudyConfig, rows: list[dict]) -> None:
    """``results.csv`` (one row per run) and ``results.json`` (rows, configuration, versions), atomically."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "results.csv", stream.getvalue())
    versions = {"mlpkit": mlpkit.__version__, "jax": jax.__version__, "numpy": np.__version__}
    finite_rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows]
    document = {"config": dataclasses.asdict(config), "versions": versions, "rows": finite_rows}
    write_text_atomic(out / "results.json", json.dumps(document, indent=1, default=str))
