"""The study's run cache: one folder per run under ``out/runs/<hash of its full configuration>/``.

A run's folder holds its checkpoint ``model.npz`` and, written last, ``done.json`` (configuration,
wall time, test errors, the checkpoint's SHA-256 and a checksum of the record), so an interrupted
study resumes where it stopped and a repeated call only reads results back. Training holds the
folder's lock: two studies writing into one folder share each run instead of both training it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from mlpkit.checkpoint import load_checkpoint, save_checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.fileio import FolderInUse, folder_in_use, locked_folder, sha256_of, write_text_atomic
from mlpkit.training import evaluate_members

POLL_S = 5.0  # how often a process looks for a run another process is doing


def run_key(payload: dict) -> str:
    """Short SHA-256 of a run's full configuration (canonical JSON)."""
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:16]


def _canonical(values: dict) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cached_training(folder: Path, payload: dict, train_fn, test_set: Dataset | None = None,
                    wait_timeout_s: float | None = None, claim: bool = False) -> dict | None:
    """The finished run in ``folder``, or train (and test) it now.

    With ``wait_timeout_s``, the run belongs to another process: wait for it, for as long as some process
    holds the folder's lock or at most ``wait_timeout_s`` without one. With ``claim``, a run another process
    is training right now gives None at once. Returns {"checkpoint", "wall_s", "test", "sha256"}: "test"
    holds each member's errors on ``test_set``, "sha256" the checkpoint's.
    """
    done = folder / "done.json"
    if wait_timeout_s is not None:
        wait_for(done, wait_timeout_s)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locked_folder(folder, wait=not claim))
        except FolderInUse:
            return None
        if done.exists():
            record = finished_record(folder)
            return {**record, "checkpoint": load_checkpoint(folder / "model.npz"), "sha256": record["model_sha256"]}
        result = train_fn()
        save_checkpoint(result.checkpoint, folder / "model.npz")
        tested = evaluate_members(result.checkpoint, test_set) if test_set is not None else []
        record = {"config": payload, "wall_s": result.wall_s, "test": tested, "model_sha256": sha256_of(folder / "model.npz")}
        write_text_atomic(done, json.dumps({**record, "record_sha256": _sha256_text(_canonical(record))}, default=str, indent=1))
    return {**record, "checkpoint": result.checkpoint, "sha256": record["model_sha256"]}


def wait_for(done: Path, timeout_s: float) -> None:
    """Return once ``done`` exists; raise if for ``timeout_s`` no process held its folder's lock."""
    idle_since = time.monotonic()
    while not done.exists():
        if folder_in_use(done.parent):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > timeout_s:
            raise MlpkitError(f"waited {timeout_s:g} s for the run in {done.parent}, and no process is training it: the "
                              "process it belongs to has stopped; start all processes again with the same command to resume")
        time.sleep(min(POLL_S, timeout_s))


def finished_record(folder: Path) -> dict:
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
