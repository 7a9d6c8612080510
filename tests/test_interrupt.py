"""Runs killed with SIGKILL mid-way and started again finish with exactly the uninterrupted results:
data generation, training (resumed from its per-epoch state) and the study (resumed run by run)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlpkit.cli import main

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
TRAIN_ARGS = ["train", "--data", "sw:Si", "--model", "painn", "--quick", "--epochs", "6", "--max-frames", "16", "--features", "8", "--layers", "1",
              "--val-fraction", "0.05", "--no-progress"]
STUDY_SCRIPT = """
import sys
from mlpkit.models import ModelConfig
from mlpkit.study import StudyConfig, run_study
from mlpkit.training import TrainConfig

train = TrainConfig(model=ModelConfig("painn", features=8, layers=1), max_epochs=3, warmup_epochs=1, batch_size=4)
run_study(StudyConfig(sizes=(2, 4), seeds=(0,), inits=("scratch",), train=train), sys.argv[1], progress=False)
"""


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def kill_when(process: subprocess.Popen, ready) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds (polled); fail if it ends or stalls first."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ready():
        assert process.poll() is None, f"finished before it could be interrupted: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "never reached the point of interruption"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(TIMEOUT_S) == -signal.SIGKILL


def finish(args: list[str]) -> None:
    process = start(args)
    assert process.wait(TIMEOUT_S) == 0, process.stderr.read().decode()[-2000:]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part"))


def test_killed_data_generation_reruns_to_the_same_files(tmp_path):
    out = tmp_path / "sw"
    command = ["-m", "mlpkit.cli", "data", "generate", "--quick", "--element", "Si", "--out", str(out), "--no-progress"]
    written = out / "Si" / "training.extxyz"
    kill_when(start(command), written.exists)
    before = written.read_bytes()
    finish(command)
    assert written.read_bytes() == before  # same seed, same bytes
    assert {p.name for p in (out / "Si").iterdir()} >= {"training.extxyz", "test.extxyz", "GENERATED_BY"}
    assert leftovers(out) == []


def history_without_times(path: Path) -> list[dict]:
    with open(path) as stream:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(stream)]


def test_killed_training_resumes_to_the_uninterrupted_model(tmp_path):
    reference = tmp_path / "reference"
    assert main([*TRAIN_ARGS, "--out", str(reference)]) == 0
    resumed = tmp_path / "resumed"
    command = ["-m", "mlpkit.cli", *TRAIN_ARGS, "--out", str(resumed)]
    kill_when(start(command), lambda: (resumed / "model.resume.npz").exists())
    assert (resumed / "model.npz").exists()  # the best model so far survives the kill
    finish(command)
    assert not (resumed / "model.resume.npz").exists() and leftovers(resumed) == []
    with np.load(reference / "model.npz") as want, np.load(resumed / "model.npz") as got:
        assert want.files == got.files
        for name in want.files:
            assert np.array_equal(want[name], got[name]), name
    assert history_without_times(resumed / "history.csv") == history_without_times(reference / "history.csv")
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (reference, resumed)]
    assert metrics[0]["validation"] == metrics[1]["validation"] and metrics[0]["best_epoch"] == metrics[1]["best_epoch"]


def results_without_times(out: Path) -> list[dict]:
    with open(out / "results.csv") as stream:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(stream)]


@pytest.fixture(scope="module")
def study_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("script") / "study.py"
    path.write_text(STUDY_SCRIPT)
    return path


def test_killed_study_resumes_to_the_uninterrupted_results(tmp_path, study_script):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    uninterrupted = start([str(study_script), str(reference)])  # beside the run that is killed, on the other core
    kill_when(start([str(study_script), str(resumed)]), lambda: any((resumed / "runs").glob("*/done.json")))
    assert not (resumed / "results.csv").exists() or len(results_without_times(resumed)) < 2
    finish([str(study_script), str(resumed)])
    assert uninterrupted.wait(TIMEOUT_S) == 0, uninterrupted.stderr.read().decode()[-2000:]
    assert results_without_times(resumed) == results_without_times(reference)
    assert leftovers(resumed) == []
