"""Nothing trusted that was not checked: edited or swapped run records, outputs shared by two writers, resumes
against changed files, unit slips, bad settings, file-system errors, signals and memory, each refused with one
line that names the place and the way out."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ase import units

from mlpkit.study import cache, cells
from mlpkit import cli
from mlpkit.cli import main
from mlpkit.data import load_dataset, outlier_report, sw_data_path
from mlpkit.errors import MlpkitError, TrainingError
from mlpkit.fileio import locked_folder, remove_unused_folder, sha256_of
from mlpkit.md import StabilityLimits
from mlpkit.models import ModelConfig
from mlpkit.study import run_study
from mlpkit.training import TrainConfig
from mlpkit.training.batches import BatchPlan
from mlpkit.training.memory import check_step_memory, step_memory_bytes
from mlpkit.training.train import training_programs
from conftest import STUDY_CONFIG as CONFIG

REPO = Path(__file__).resolve().parents[1]
MD_ARGS = ["md", "--potential", "sw:Si", "--supercell", "1", "--steps", "20", "--no-progress"]


@pytest.fixture
def study(finished_study):
    return finished_study


def _run_folder(out: Path, rows: list[dict], init: str) -> Path:
    return (out / next(r for r in rows if r["init"] == init)["checkpoint"]).parent


def _source_folder(out: Path) -> Path:
    return next(p.parent for p in (out / "runs").glob("*/done.json") if json.loads(p.read_text())["config"]["role"] == "source")



def test_md_that_blows_up_exits_with_its_own_status_and_keeps_its_record(tmp_path, capsys):
    """A 100 fs time step throws the crystal apart at once: the run is stopped, says so on stderr, records it in
    summary.json, and exits with status 3, so that a script running many MD jobs can tell it from a good run."""
    assert main([*MD_ARGS, "--dt", "100", "--steps", "40", "--out", str(tmp_path / "md")]) == 3
    assert "became unphysical and was stopped" in capsys.readouterr().err
    assert json.loads((tmp_path / "md" / "summary.json").read_text())["stable"] is False
    assert main([*MD_ARGS, "--out", str(tmp_path / "good")]) == 0

def test_a_transfer_run_is_keyed_by_the_source_checkpoint_and_the_data_files(study):
    out, rows = study
    record = json.loads((_run_folder(out, rows, "transfer") / "done.json").read_text())
    assert record["config"]["source_sha256"] == sha256_of(_source_folder(out) / "model.npz")
    assert record["config"]["data_sha256"]["Ge/test"] == sha256_of(sw_data_path("Ge", "test"))
    assert "source_sha256" not in json.loads((_run_folder(out, rows, "scratch") / "done.json").read_text())["config"]


@pytest.mark.parametrize("damage", ["edited number", "edited config", "swapped checkpoints", "replaced source"])
def test_a_damaged_finished_run_is_refused_naming_the_folder(study, tmp_path, damage):
    out = shutil.copytree(study[0], tmp_path / "study")  # the shared study stays intact
    rows = study[1]
    scratch, transfer = _run_folder(out, rows, "scratch"), _run_folder(out, rows, "transfer")
    victim = {"swapped checkpoints": scratch, "replaced source": _source_folder(out)}.get(damage, transfer)
    models = {folder: (folder / "model.npz").read_bytes() for folder in (scratch, transfer)}
    if damage == "edited number":
        record = json.loads((transfer / "done.json").read_text())
        record["test"][0]["force_mae_ev_per_a"] = 1e-4
        (transfer / "done.json").write_text(json.dumps(record))
    elif damage == "edited config":
        text = (transfer / "done.json").read_text()
        (transfer / "done.json").write_text(text.replace('"max_epochs": 2', '"max_epochs": 3'))
    elif damage == "swapped checkpoints":
        (scratch / "model.npz").write_bytes(models[transfer])
        (transfer / "model.npz").write_bytes(models[scratch])
    else:  # another run's checkpoint under the source's name: once trusted, now refused
        (victim / "model.npz").write_bytes(models[scratch])
    problem = "model.npz is not the checkpoint" if "checkpoint" in damage or "source" in damage else "done.json was edited"
    with pytest.raises(MlpkitError, match=f"{victim.name}: {problem}.*delete the folder"):
        run_study(CONFIG, out, progress=False)


def test_two_studies_into_one_folder_share_each_run_through_its_lock(tmp_path, monkeypatch):
    trained = []
    original = cells.cached_training

    def counting(folder, payload, fit, *args, **kwargs):
        return original(folder, payload, lambda: trained.append(payload["role"]) or fit(), *args, **kwargs)

    monkeypatch.setattr(cells, "cached_training", counting)
    config = dataclasses.replace(CONFIG, sizes=(2,), seeds=(0,), inits=("scratch",))
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_study(config, tmp_path, progress=False))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trained == ["target"] and len(results) == 2 and results[0] == results[1]


def test_a_process_waiting_for_a_run_nobody_trains_gives_up_naming_it(tmp_path):
    folder = tmp_path / "runs" / "0123456789abcdef"
    folder.mkdir(parents=True)
    start = time.monotonic()
    with pytest.raises(MlpkitError, match="waited 0.3 s for the run in .*0123456789abcdef.*no process is training it"):
        cache.wait_for(folder / "done.json", 0.3)
    assert time.monotonic() - start < 6
    holder = threading.Event()

    def train_for_a_while():  # another process holds the run: the waiter keeps waiting past its timeout
        with locked_folder(folder):
            holder.set()
            time.sleep(1.0)
            (folder / "done.json").write_text("{}")

    thread = threading.Thread(target=train_for_a_while)
    thread.start()
    holder.wait()
    cache.wait_for(folder / "done.json", 0.3)
    thread.join()


def test_a_second_writer_into_a_locked_output_folder_gets_one_line_naming_the_holder(tmp_path):
    with locked_folder(tmp_path):
        result = subprocess.run([sys.executable, "-m", "mlpkit", *MD_ARGS, "--out", str(tmp_path)], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"mlpkit: error: {tmp_path}: in use by another mlpkit run (pid {os.getpid()}); " \
                            "wait for it to finish or choose another output folder\n"
    assert not (tmp_path / "thermo.csv").exists()


def test_a_waiting_writer_whose_lock_file_was_tidied_away_locks_the_folder_anew(tmp_path):
    """A refused command removes the empty folder it made, lock file included, while another process may be
    waiting on that file: the waiter must then lock the file that is there, not the unlinked one."""
    folder, locked = tmp_path / "out", []

    def waiter():
        with locked_folder(folder, wait=True):
            lock = folder / ".lock"
            locked.append(lock.exists() and lock.read_text() == str(os.getpid()))

    with locked_folder(folder):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)  # the waiter has opened the lock file and waits on it
        remove_unused_folder(folder)  # refused: the folder is held, nothing is removed
        assert (folder / ".lock").exists()
        (folder / ".lock").unlink()  # what the tidy-up of a process that held it last does
    thread.join(10)
    assert locked == [True]
    remove_unused_folder(folder)
    assert not folder.exists()


def test_md_refuses_to_resume_against_a_changed_structure_file(tmp_path, capsys):
    from mlpkit.structures import diamond

    structure = tmp_path / "start.extxyz"
    diamond("Si", (1, 1, 1)).write(structure)
    args = [*MD_ARGS, "--structure", str(structure), "--steps", "40", "--chunk", "20", "--out", str(tmp_path / "md")]
    assert main(args) == 0
    diamond("Si", (1, 1, 1), a_angstrom=5.6).write(structure)  # same path, another cell
    assert main(args) == 2
    assert "other settings (structure_sha256)" in capsys.readouterr().err


def test_unit_slips_are_flagged_one_frame_a_whole_file_and_sparse_cells():
    dataset = load_dataset(sw_data_path("Si", "training"))
    hartree_frame = dataclasses.replace(dataset, energy_ev=dataset.energy_ev * np.where(np.arange(len(dataset)) == 3, 1 / units.Hartree, 1))
    assert (3, "energy") in {(o.frame, o.field) for o in outlier_report(hartree_frame)}
    all_hartree = dataclasses.replace(dataset, energy_ev=dataset.energy_ev / units.Hartree)
    assert {o.frame for o in outlier_report(all_hartree) if o.field == "energy"} == set(range(len(dataset)))
    for scale in (1.5, 1e6):
        cells = dataset.cell_a.copy()
        cells[5] *= scale
        frame = dataset.offsets[5], dataset.offsets[6]
        positions = dataset.positions_a.copy()
        positions[frame[0]:frame[1]] *= scale
        sparse = dataclasses.replace(dataset, cell_a=cells, positions_a=positions)
        assert any(o.frame == 5 and "too large" in o.reason for o in outlier_report(sparse)), scale
    assert outlier_report(dataset) == []


def test_an_absurd_training_loss_stops_training():
    from mlpkit.training.train import _check_finite

    frames = [np.array([0, 1]), np.array([2, 3])]
    with pytest.raises(TrainingError, match="training loss is \\[1.6e\\+28\\] at epoch 1, batch 2 of 2"):
        _check_finite(np.array([[0.5], [1.6e28]]), frames, 1)


@pytest.mark.parametrize("field, value", [("learning_rate", float("nan")), ("learning_rate", 0.0), ("batch_size", 0),
                                          ("ema_decay", 1.0), ("final_learning_rate", float("inf"))])
def test_bad_training_settings_name_the_field(field, value):
    with pytest.raises(MlpkitError, match=f"invalid training settings: {field}={value!r}") as raised:
        TrainConfig(**{field: value})
    assert "ModelConfig" not in str(raised.value)  # the field, not the whole dataclass


def test_nan_stability_limits_are_refused():
    with pytest.raises(MlpkitError, match="max_spread_ev_per_a=nan"):
        StabilityLimits(max_spread_ev_per_a=float("nan"))


@pytest.mark.parametrize("extra, message", [
    (["--chunk", "100000000"], "--chunk 1 … --steps"),
    (["--ensemble", "nve", "--temperature", "-5"], "finite number of kelvin ≥ 0, got -5.0"),
    (["--ensemble", "nve", "--temperature", "nan"], "finite number of kelvin ≥ 0, got nan"),
    (["--temperature", "inf"], "positive finite number of kelvin, got inf"),
    (["--supercell", "100000"], "--supercell must be 1 … 40"),
    (["--max-spread", "nan"], "max_spread_ev_per_a=nan"),
])
def test_bad_md_settings_are_refused_before_any_work(tmp_path, capsys, extra, message):
    assert main([*MD_ARGS, *extra, "--out", str(tmp_path / "md")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "md").exists()  # nor an empty output folder


def test_a_fifo_as_potential_and_negative_max_frames_are_refused(tmp_path, capsys):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    assert main(["md", "--potential", str(fifo), "--steps", "20", "--out", str(tmp_path / "md")]) == 2
    assert f"--potential {fifo}: not a regular file" in capsys.readouterr().err
    assert main(["train", "--data", "sw:Si", "--max-frames", "-3", "--out", str(tmp_path / "t")]) == 2
    assert "--max-frames must be at least 1, got -3" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [
    ["train", "--data", "sw:Si", "--quick"], MD_ARGS, ["properties", "--potential", "sw:Si", "--quick"],
    ["study", "--quick", "--sizes", "2", "--seeds", "1"],
])
@pytest.mark.parametrize("out", ["a file", "/dev/null", "/proc/mlpkit"])
def test_an_unusable_output_folder_is_one_line_before_any_work(tmp_path, capsys, verb, out):
    path = tmp_path / "file" if out == "a file" else Path(out)
    if out == "a file":
        path.write_text("")
    assert main([*verb, "--out", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mlpkit: error: --out {path}: ") and error.count("\n") == 1


def test_a_full_disk_during_a_run_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import mlpkit.md.output

    def full_disk(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mlpkit.md.output, "write_bytes_atomic", full_disk)
    assert main([*MD_ARGS, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"mlpkit: error: {tmp_path / 'state.npz'}: No space left on device\n"


SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
TRAIN_ARGS = ["train", "--data", "sw:Si", "--model", "painn", "--features", "8", "--layers", "1", "--max-frames", "8",
              "--batch-size", "4", "--epochs", "100000", "--no-progress"]


def signal_when_kept(runs: list[tuple[subprocess.Popen, Path, str, int, float]]) -> None:
    """Send each running ``process`` its ``signum`` ``delay_s`` after ``out/kept`` first appears (a finished chunk or
    epoch: XLA is at work by then)."""
    deadline, kept_at, signalled = time.monotonic() + 300, {}, set()
    while len(signalled) < len(runs):
        for index, (process, out, kept, signum, delay_s) in enumerate(runs):
            if index in signalled:
                continue
            if time.monotonic() > deadline:
                process.kill()
            assert process.poll() is None, (out, process.wait(), process.stderr.read())
            if index not in kept_at and (out / kept).exists():
                kept_at[index] = time.monotonic()
            if index in kept_at and time.monotonic() >= kept_at[index] + delay_s:
                process.send_signal(signum)
                signalled.add(index)
        time.sleep(0.02)


def test_interrupted_runs_say_what_was_kept_and_never_crash_on_the_way_out(tmp_path):
    """14 MD runs and 2 trainings, SIGINT or SIGTERM at a different moment of the work each: every one exits with
    the signal's own status and one line saying what is kept, never a segfault or an abort while XLA's threads
    shut down, and leaves no partial file. Four run at a time (a signal lands while the others load the CPU)."""
    md = (MD_ARGS + ["--steps", "1000000"], "state.npz", "the last finished chunk is kept in {out}/state.npz")
    train = (TRAIN_ARGS, "model.resume.npz", "the last finished epoch is kept in {out}/model.resume.npz")
    # the trainings get SIGINT and SIGTERM; the MD runs every (signal, delay) pair of the loop below once
    cases = [train] + [md] * 10 + [train] + [md] * 4
    signals = [signal.SIGINT, signal.SIGTERM]
    for start in range(0, len(cases), 4):
        runs = []
        try:
            for index in range(start, start + 4):
                args, kept, _ = cases[index]
                out = tmp_path / f"run{index}"
                process = subprocess.Popen([sys.executable, "-m", "mlpkit", *args, "--out", str(out)], cwd=REPO,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                runs.append((process, out, kept, signals[index % 2], 0.05 * (index % 7)))
            signal_when_kept(runs)
            for index, (process, out, _, signum, _) in zip(range(start, start + 4), runs):
                assert process.wait(60) == SIGNAL_CODES[signum], (out, process.stderr.read())
                hint = cases[index][2].format(out=out)
                assert process.stderr.read() == f"mlpkit: interrupted; {hint}; run the same command again to resume\n"
                assert sorted(p.name for p in out.glob(".*.part")) == []
        finally:
            for process, *_ in runs:
                if process.poll() is None:
                    process.kill()
                    process.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_that_lands_in_a_gc_callback_still_stops_the_run(signum, capsys):
    """JAX runs Python in every garbage collection (``gc.callbacks``); a signal handled there raises where Python
    drops the exception ("Exception ignored"), and a training once ran on after its SIGTERM. Here the signal arrives
    in such a callback: it comes again and stops the verb, with the signal's own status, within seconds."""
    delivered = []

    def callback(phase, info):
        if not delivered:
            delivered.append(time.monotonic())
            os.kill(os.getpid(), signum)  # handled right here, inside the collection

    def verb(args):  # work in Python with a collection of the youngest objects every 10 ms
        until = time.monotonic() + 8
        while time.monotonic() < until:
            gc.collect(0)
            busy_until = time.monotonic() + 0.01
            while time.monotonic() < busy_until:
                pass
        return 0

    gc.callbacks.append(callback)
    try:
        code = cli._run(argparse.Namespace(verb="check", run=verb))
    finally:
        gc.callbacks.remove(callback)
    assert code == SIGNAL_CODES[signum] and time.monotonic() - delivered[0] < 2 + cli.REDELIVERY_S
    assert capsys.readouterr().err == "mlpkit: interrupted; run the same command again to start over\n"  # no traceback


def test_a_batch_too_large_for_memory_is_refused_with_the_estimate_and_the_way_out():
    dataset = load_dataset(sw_data_path("Si", "training")).select(list(range(8)))
    config = dataclasses.replace(TrainConfig(model=ModelConfig("mace")).quick(), batch_size=8)
    plan = BatchPlan(dataset, 5.0, config.batch_size)
    need = step_memory_bytes(config.model, plan.largest_batch, 1, False)
    check_step_memory(config, plan, available_bytes=2 * need)
    with pytest.raises(MlpkitError, match=r"needs about .* GB .*8 frames padded to 64 atoms.*batch size of 2 \(--batch-size\)"):
        check_step_memory(config, plan, available_bytes=need / 3)


def test_the_memory_estimate_is_within_a_third_of_what_xla_plans():
    import jax

    from mlpkit.models import init_params
    from mlpkit.models.energy import fit_normalisation
    from mlpkit.models.graph import ElementTable
    from mlpkit.training.train import _stack

    dataset = load_dataset(sw_data_path("Si", "training")).select(list(range(8)))
    config = TrainConfig(model=ModelConfig("painn", features=16, layers=2))
    table = ElementTable.from_species(dataset.species)
    plan = BatchPlan(dataset, config.model.cutoff_a, config.batch_size)
    step, _, optimizer = training_programs(config, table)
    params = _stack([init_params(config.model, len(table), 0)])
    arguments = (params, jax.vmap(optimizer.init)(params), params, np.float32(0), np.float32(1e-3),
                 fit_normalisation(dataset, table).arrays(np.float32), next(plan.batches()))
    planned = step.lower(*arguments).compile().memory_analysis().temp_size_in_bytes
    assert step_memory_bytes(config.model, plan.largest_batch, 1, False) == pytest.approx(planned, rel=0.33)
