"""The learning-curve study: Ge models trained from scratch or transferred from Si, over training-set sizes.

One call trains the Si source model, then for every Ge training-set size and every initialisation
trains an ensemble (one member per seed, vmapped) and evaluates each member on the Ge test set.
Each run is stored under ``out/runs/<hash of its full configuration>/``, written atomically, so an
interrupted study resumes where it stopped and a repeated call only reads results back.

An initialisation with the suffix ``-active`` (``transfer-active``, ``scratch-active``) trains on the Ge
frames the Si ensemble disagrees on most (:mod:`mlpkit.selection`) instead of a random subset.

Cells (size, initialisation) are independent, so they are shared out: over processes by
``jax.process_index()`` (each takes every P-th cell; all read the others' results from the shared
``out/runs`` folder) and, within a process, round-robin over ``jax.local_devices()``, one thread per
device. The numbers do not depend on how the cells were shared.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

import mlpkit
from mlpkit.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from mlpkit.data import load_dataset, shuffled, sw_data_path, train_val_split
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import dataclass_from_dict, folder_in_use, locked_folder, sha256_of, write_text_atomic
from mlpkit.report import errors_by_label, write_report
from mlpkit.selection import force_disagreement, ranked_by_disagreement
from mlpkit.training import TrainConfig, evaluate_members, predict_members, train
from mlpkit.transfer import TransferConfig, fine_tune, transferred

INITS = ("scratch", "transfer", "transfer-plain", "scratch-active", "transfer-active")
ACTIVE = "-active"  # suffix of an initialisation trained on actively selected frames
QUICK_STUDY_EPOCHS = 20  # with 40 the quick SW sweep took 18 min on 2 CPU cores; 20 keeps it under 10 (RESULTS.md)
POLL_S = 5.0  # how often a process looks for a run another process is doing
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
    # "transfer" models see Ge scaled by a_Si / a_Ge of this data's reference: the best protocol measured
    # (benchmarks/transfer_protocols.py); "transfer-plain" never is
    rescale_lengths: bool = True
    validation_fraction: float = 0.1
    data_seed: int = 0
    source: str | None = None  # a trained Si checkpoint (path or pretrained:NAME) used instead of training one

    def __post_init__(self):
        if self.data not in ("sw", "mlearn"):
            raise MlpkitError(f"unknown data source {self.data!r}: use 'sw' or 'mlearn'")
        if self.data == "mlearn" and not self.mlearn_dir:
            raise MlpkitError("the mlearn study needs mlearn_dir, the folder with {Si,Ge}/{training,test}.json")
        unknown = sorted(set(self.inits) - set(INITS))
        if unknown or not self.inits or not self.seeds or min(self.sizes, default=-1) < 0:
            raise MlpkitError(f"invalid study: inits must come from {list(INITS)}, seeds and sizes ≥ 0 non-empty")

    def quick(self) -> StudyConfig:
        """Sizes up to 100 and quick models trained for half the quick epochs (the sweep is 11 trainings)."""
        train = dataclasses.replace(self.train.quick(), max_epochs=QUICK_STUDY_EPOCHS, patience_epochs=QUICK_STUDY_EPOCHS // 2)
        return dataclasses.replace(self, sizes=(5, 10, 25, 50, 100), train=train)

    @classmethod
    def from_dict(cls, values: dict) -> StudyConfig:
        """From parsed JSON (``results.json``'s ``config``), every field type-checked; bad input raises MlpkitError."""
        return dataclass_from_dict(cls, values, "study configuration")


def _path(config: StudyConfig, element: str, split: str) -> Path:
    if config.data == "sw":
        return sw_data_path(element, split)
    return Path(config.mlearn_dir) / element / f"{split}.json"


STUDY_FILES = (("Si", "training"), ("Ge", "training"), ("Ge", "test"))


def load_study_data(config: StudyConfig) -> dict[str, Dataset]:
    """Si training/validation, the shuffled Ge pool (nested subsets via ``first``), Ge validation and test."""
    si_train, si_validation = train_val_split(load_dataset(_path(config, "Si", "training")), config.validation_fraction, config.data_seed)
    ge_pool, ge_validation = train_val_split(load_dataset(_path(config, "Ge", "training")), config.validation_fraction, config.data_seed)
    return {
        "si_train": si_train, "si_validation": si_validation,
        "ge_pool": shuffled(ge_pool, config.data_seed), "ge_validation": ge_validation,
        "ge_test": load_dataset(_path(config, "Ge", "test")),
    }


def data_checksums(config: StudyConfig) -> dict[str, str]:
    """SHA-256 of every data file the study reads, by ``El/split``: part of every run's key."""
    return {f"{element}/{split}": sha256_of(_path(config, element, split)) for element, split in STUDY_FILES}


def run_key(payload: dict) -> str:
    """Short SHA-256 of a run's full configuration (canonical JSON)."""
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:16]


def _canonical(values: dict) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def _cached_training(folder: Path, payload: dict, train_fn, test_set: Dataset | None = None,
                     wait_timeout_s: float | None = None) -> dict:
    """The finished run in ``folder``, or train (and test) it now.

    With ``wait_timeout_s``, the run belongs to another process: wait for it, for as long as some process
    holds the folder's lock or at most ``wait_timeout_s`` without one. Training holds the folder's lock, so
    two studies writing into one folder share the run instead of both training it. Returns {"checkpoint",
    "wall_s", "test", "sha256"}: "test" holds each member's errors on ``test_set``, "sha256" the checkpoint's.
    ``done.json`` is written last, so a run interrupted before it is simply run again.
    """
    done = folder / "done.json"
    if wait_timeout_s is not None:
        _wait_for(done, wait_timeout_s)
    with locked_folder(folder, wait=True):
        if done.exists():
            record = _finished_record(folder)
            return {**record, "checkpoint": load_checkpoint(folder / "model.npz"), "sha256": record["model_sha256"]}
        result = train_fn()
        save_checkpoint(result.checkpoint, folder / "model.npz")
        tested = evaluate_members(result.checkpoint, test_set) if test_set is not None else []
        record = {"config": payload, "wall_s": result.wall_s, "test": tested, "model_sha256": sha256_of(folder / "model.npz")}
        write_text_atomic(done, json.dumps({**record, "record_sha256": _sha256_text(_canonical(record))}, default=str, indent=1))
    return {**record, "checkpoint": result.checkpoint, "sha256": record["model_sha256"]}


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _wait_for(done: Path, timeout_s: float) -> None:
    """Return once ``done`` exists; raise if for ``timeout_s`` no process held its folder's lock."""
    idle_since = time.monotonic()
    while not done.exists():
        if folder_in_use(done.parent):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > timeout_s:
            raise MlpkitError(f"waited {timeout_s:g} s for the run in {done.parent}, and no process is training it: the "
                              "process it belongs to has stopped; start all processes again with the same command to resume")
        time.sleep(min(POLL_S, timeout_s))


def _finished_record(folder: Path) -> dict:
    """A finished run's ``done.json``, checked: its own checksum, its configuration against the folder's name
    (the hash of it) and its checkpoint's SHA-256. Anything edited, swapped or unreadable is refused, naming
    the folder and the way out, instead of being trusted."""
    done = folder / "done.json"
    try:
        record = json.loads(done.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("test"), list) or "wall_s" not in record:
            raise ValueError("it lacks 'test' or 'wall_s'")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise MlpkitError(f"{done}: unreadable record of a finished run ({error}); delete its folder to run it again") from None
    stored = record.pop("record_sha256", None)
    if stored != _sha256_text(_canonical(record)):
        problem = "done.json was edited (its checksum does not match its contents)"
    elif run_key(record.get("config")) != folder.name:
        problem = "the configuration in done.json is not the one the folder's name is the hash of"
    elif not (folder / "model.npz").is_file() or sha256_of(folder / "model.npz") != record.get("model_sha256"):
        problem = "model.npz is not the checkpoint this run wrote (its SHA-256 differs from done.json's)"
    else:
        return record
    raise MlpkitError(f"{folder}: {problem}; delete the folder to train this run again")


def _source_model(config: StudyConfig, data: dict, checksums: dict, out: Path, progress: bool,
                  wait_timeout_s: float | None) -> dict:
    """The Si source run: {"checkpoint", "sha256", ...} (see :func:`_cached_training`), or ``config.source``."""
    if config.source is not None:
        path = checkpoint_path(config.source)
        source = load_checkpoint(path)
        if source.config != config.train.model:
            raise MlpkitError(f"{config.source}: the source is {source.config}, the study trains {config.train.model}")
        if source.ensemble_size < len(config.seeds):
            warnings.warn(f"{config.source} has {source.ensemble_size} member(s) for {len(config.seeds)} seeds: transfer "
                          f"member i starts from source member i mod {source.ensemble_size} on the same batches, so "
                          "transferred members repeat each other (scratch members still differ)", stacklevel=2)
        return {"checkpoint": source, "sha256": sha256_of(path)}
    train_config = dataclasses.replace(config.train, seeds=config.seeds)
    payload = {"role": "source", "data": config.data, "train": dataclasses.asdict(train_config),
               "validation_fraction": config.validation_fraction, "data_seed": config.data_seed,
               "data_sha256": checksums, "version": mlpkit.__version__}
    folder = out / "runs" / run_key(payload)

    def fit():
        return train(data["si_train"], data["si_validation"], train_config, progress=progress)

    return _cached_training(folder, payload, fit, wait_timeout_s=wait_timeout_s)


def _transfer_config(config: StudyConfig, init: str) -> TransferConfig:
    """``transfer-plain`` is the paper's protocol as it is; ``transfer`` is ``config.transfer``, length-scaled by default."""
    if init.removesuffix(ACTIVE) == "transfer-plain":
        return TransferConfig.plain()
    return config.transfer.with_length_scaling(config.data) if config.rescale_lengths else config.transfer


def active_order(config: StudyConfig, data: dict, source: dict, checksums: dict, out: Path) -> list[int]:
    """Ge pool indices, most disputed by the Si ensemble first (seen through the transfer's length scale); cached."""
    transfer = _transfer_config(config, "transfer")
    payload = {"role": "selection", "source_sha256": source["sha256"], "data": config.data, "data_sha256": checksums,
               "data_seed": config.data_seed, "validation_fraction": config.validation_fraction,
               "length_scale": transfer.length_scale, "version": mlpkit.__version__}
    path = out / "runs" / run_key(payload) / "order.json"
    if not path.exists():
        order = ranked_by_disagreement(force_disagreement(transferred(source["checkpoint"], transfer), data["ge_pool"]))
        write_text_atomic(path, json.dumps(order.tolist()))
    return json.loads(path.read_text())


def _target_run(config: StudyConfig, data: dict, checksums: dict, source: dict | None, size: int, init: str, out: Path,
                progress: bool, wait_timeout_s: float | None = None):
    """Train (or read back) one cell: all seeds of one (size, init) as one vmapped ensemble."""
    train_config = dataclasses.replace(config.train, seeds=config.seeds)
    pool = data["ge_active_pool"] if init.endswith(ACTIVE) else data["ge_pool"]
    frames = pool.first(size or len(pool))  # nested: N = 10 ⊂ N = 25
    transfer = _transfer_config(config, init)
    payload = {"role": "target", "data": config.data, "size": len(frames), "init": init,
               "train": dataclasses.asdict(train_config), "validation_fraction": config.validation_fraction,
               "data_seed": config.data_seed, "data_sha256": checksums, "version": mlpkit.__version__}
    if init != "scratch":  # the active selection depends on the source too
        payload["transfer"] = dataclasses.asdict(transfer)
        payload["source_sha256"] = source["sha256"]
    folder = out / "runs" / run_key(payload)

    def fit():
        if init.startswith("scratch"):
            return train(frames, data["ge_validation"], train_config, progress=progress)
        return fine_tune(source["checkpoint"], frames, data["ge_validation"], train_config, transfer, progress=progress)

    return _cached_training(folder, payload, fit, data["ge_test"], wait_timeout_s), len(frames), folder / "model.npz"


def shard(cells: list, index: int, count: int) -> list:
    """The cells process ``index`` of ``count`` runs: every count-th, starting at its index."""
    return cells[index::count]


def _submit_on_devices(cells: list, run_cell, devices: list, executors: list) -> dict:
    """{cell: future of run_cell(cell)}, the cells dealt round-robin to ``devices``, one worker thread each."""
    def on(device):
        def run(cell):
            with jax.default_device(device):
                return run_cell(cell)
        return run

    return {cell: executors[k % len(devices)].submit(on(devices[k % len(devices)]), cell) for k, cell in enumerate(cells)}


def run_study(config: StudyConfig, out, progress: bool = True, on_row=None, devices=None, process=None,
              wait_timeout_s: float = 600.0) -> list[dict]:
    """Run (or resume) the whole sweep; writes ``out/results.csv``, ``results.json`` and ``report.html``.

    ``on_row(row)`` is called as each row becomes available (live plots). ``devices`` (default
    ``jax.local_devices()``) run this process's cells round-robin; ``process`` = (index, count) (default
    ``jax.process_index()``, ``jax.process_count()``) picks its share. Process 0 trains the source model
    and writes the files; the other processes wait for the runs they need in ``out/runs``, and give up with
    an error after ``wait_timeout_s`` in which no process held the run's folder.
    """
    out = Path(out)
    devices = jax.local_devices() if devices is None else list(devices)
    index, count = (jax.process_index(), jax.process_count()) if process is None else process
    data, checksums = load_study_data(config), data_checksums(config)
    needs_source = set(config.inits) - {"scratch"}
    source_wait = wait_timeout_s if index != 0 else None
    source = _source_model(config, data, checksums, out, progress, source_wait) if needs_source else None
    if any(init.endswith(ACTIVE) for init in config.inits):
        data["ge_active_pool"] = data["ge_pool"].select(active_order(config, data, source, checksums, out))
    cells = [(size, init) for size in config.sizes for init in config.inits]
    inner_progress = progress and len(devices) == 1

    def run_cell(cell, wait_s=None):
        return _target_run(config, data, checksums, source, *cell, out, inner_progress, wait_s)

    executors = [ThreadPoolExecutor(1) for _ in devices]
    try:
        futures = _submit_on_devices(shard(cells, index, count), run_cell, devices, executors)
        rows = []
        for size, init in tqdm(cells, desc="study", unit="run", disable=not progress):
            mine = futures.get((size, init))
            run, n_frames, path = mine.result() if mine else run_cell((size, init), wait_timeout_s)
            for seed, metrics in zip(config.seeds, run["test"]):
                row = {"data": config.data, "size": n_frames, "seed": seed, "init": init, **metrics,
                       "train_frames": n_frames, "wall_s": run["wall_s"], "checkpoint": str(path.relative_to(out))}
                rows.append({column: row[column] for column in RESULT_COLUMNS})
                if on_row is not None:
                    on_row(rows[-1])
            if index == 0:
                write_results(out, config, rows)
    finally:
        for executor in executors:
            executor.shutdown(cancel_futures=True)
    if index == 0:
        breakdown, parity = test_breakdown(config, data, out, rows)
        write_results(out, config, rows, breakdown)
        write_report(rows, out / "report.html", title=f"Si → Ge transfer on {config.data} data: learning curves",
                     breakdown=breakdown, parity=parity)
    return rows


def test_breakdown(config: StudyConfig, data: dict, out: Path, rows: list[dict]) -> tuple[list[dict], dict]:
    """Ge test errors of every stored run by group and by temperature, and parity data of chosen runs.

    Reads the cached checkpoints (nothing is retrained). Returns (records, parity): one record per
    (run, seed, kind, label) with "kind" "group" or "temperature", and for the smallest and largest size
    of each initialisation the first seed's (reference, predicted) force components and energies per atom.
    """
    test = data["ge_test"]
    labels = {"group": test.group.astype(str),
              "temperature": np.array([f"{t:g} K" if np.isfinite(t) else "" for t in test.temperature_k])}
    sizes = sorted({row["size"] for row in rows})
    records, parity = [], {}
    for path in dict.fromkeys(row["checkpoint"] for row in rows):
        first = next(row for row in rows if row["checkpoint"] == path)
        checkpoint = load_checkpoint(out / path)
        energies, forces = predict_members(checkpoint, test)
        for seed, member_energy, member_forces in zip(config.seeds, energies, forces):
            for kind, label_of_frame in labels.items():
                for label, errors in errors_by_label(test, member_energy, member_forces, label_of_frame).items():
                    records.append({"size": first["size"], "init": first["init"], "seed": seed, "kind": kind, "label": label, **errors})
        if first["size"] in (sizes[0], sizes[-1]):
            parity[f"{first['init']}, N = {first['size']}"] = {
                "forces_ev_per_a": (test.forces_ev_per_a.ravel(), forces[0].ravel()),
                "energy_ev_per_atom": (test.energy_ev / test.n_atoms, energies[0] / test.n_atoms),
            }
    return records, parity


def write_results(out: Path, config: StudyConfig, rows: list[dict], breakdown: list[dict] = ()) -> None:
    """``results.csv`` (one row per run) and ``results.json`` (rows, configuration, versions, test errors by
    group and temperature), atomically."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "results.csv", stream.getvalue())
    versions = {"mlpkit": mlpkit.__version__, "jax": jax.__version__, "numpy": np.__version__}
    finite_rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows]
    document = {"config": dataclasses.asdict(config), "versions": versions, "rows": finite_rows, "breakdown": list(breakdown)}
    write_text_atomic(out / "results.json", json.dumps(document, indent=1, default=str))
