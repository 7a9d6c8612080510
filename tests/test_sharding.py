"""Sharding the study: two OS processes under jax.distributed splitting the cells through the shared run
folder, each dealing its share round-robin to two (forced host) devices, give exactly the numbers of the
unsharded study; a run another process holds is skipped by the claiming pass and taken over if it stops."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlpkit.fileio import locked_folder
from mlpkit.study import claim_order
from mlpkit.study.cache import cached_training, run_key
from mlpkit.training import TrainResult
from conftest import random_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_each_process_takes_its_share_first_then_the_others_cells_from_the_end():
    cells = [(size, init) for size in (5, 10, 25) for init in ("scratch", "transfer")]
    orders = [claim_order(cells, index, 4) for index in range(4)]
    assert all(sorted(order) == sorted(cells) for order in orders)  # every process can take every cell
    shares = [cells[index::4] for index in range(4)]
    assert sorted(cell for share in shares for cell in share) == sorted(cells)  # the shares split the sweep
    assert orders[1] == [cells[1], cells[5], cells[4], cells[3], cells[2], cells[0]]


def _study_numbers(folder: Path) -> list[tuple]:
    with open(folder / "results.csv") as stream:
        return [(r["size"], r["seed"], r["init"], r["energy_mae_mev_per_atom"], r["force_mae_ev_per_a"])
                for r in csv.DictReader(stream)]


def test_two_real_processes_match_one(tmp_path):
    """``mlpkit study --distributed`` as two OS processes with a coordinator on 127.0.0.1 (jax.distributed on CPU),
    each dealing its cells round-robin to two (forced host) devices, against one process on one device."""
    study = [sys.executable, "-m", "mlpkit", "study", "--model", "painn", "--features", "8", "--layers", "1", "--epochs", "1",
             "--sizes", "2", "3", "4", "--seeds", "1", "--inits", "scratch", "--no-progress", "--wait-timeout", "60"]
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two_devices = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    sharded = [subprocess.Popen([*study, "--out", str(tmp_path / "two"), "--distributed", "--coordinator", f"127.0.0.1:{port}",
                                 "--num-processes", "2", "--process-id", str(index)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=two_devices) for index in (0, 1)]
    one = subprocess.Popen([*study, "--out", str(tmp_path / "one")], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)  # beside them: the pair spends part of its time waiting
    assert [p.wait(300) for p in sharded] == [0, 0], [p.stderr.read()[-2000:] for p in sharded]
    assert one.wait(300) == 0, one.stderr.read()[-2000:]
    numbers = _study_numbers(tmp_path / "one")
    assert len(numbers) == 3 and _study_numbers(tmp_path / "two") == numbers


def test_a_run_another_process_holds_is_skipped_when_claimed_and_waited_for_otherwise(tmp_path):
    """The claim of :func:`claim_order`'s pass: a held run gives None at once; read back in sweep order, the same
    run waits for the holder, and trains itself if the holder let go without finishing (a stopped process)."""
    payload, trained = {"run": 1}, []
    folder = tmp_path / "runs" / run_key(payload)

    def fit():
        trained.append(1)
        return TrainResult(random_checkpoint("painn"), history=[], best_epoch=np.zeros(1, int), wall_s=1.0)

    with locked_folder(folder):  # another process (flock: a second open file description) is training it
        assert cached_training(folder, payload, fit, claim=True) is None and trained == []
    run = cached_training(folder, payload, fit)  # the holder stopped: this process trains it
    assert trained == [1] and run["wall_s"] == 1.0 and (folder / "done.json").exists()
    assert cached_training(folder, payload, fit, claim=True)["sha256"] == run["sha256"] and trained == [1]
