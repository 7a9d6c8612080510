"""Sharding the study: two OS processes under jax.distributed splitting the cells through the shared run
folder, each dealing its share round-robin to two (forced host) devices (one process killed, its cells
taken over by the other), give exactly the numbers of the unsharded study."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlpkit.study import claim_order

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


def test_two_real_processes_match_one_and_a_killed_process_leaves_its_cells_to_the_other(tmp_path):
    """``mlpkit study --distributed`` as two OS processes with a coordinator on 127.0.0.1 (jax.distributed on CPU),
    each dealing its cells round-robin to two (forced host) devices, against one process on one device; and two
    independent processes on one folder, one killed once the source is trained: the other finishes the sweep."""
    study = [sys.executable, "-m", "mlpkit", "study", "--model", "painn", "--features", "8", "--layers", "1", "--epochs", "1",
             "--sizes", "2", "3", "--seeds", "1", "--inits", "scratch", "transfer", "--no-progress", "--wait-timeout", "5"]
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two_devices = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}

    def process(out: str, *flags: str) -> subprocess.Popen:
        return subprocess.Popen([*study, "--out", str(tmp_path / out), *flags], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=two_devices)

    sharded = [process("two", "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                       "--process-id", str(index)) for index in (0, 1)]
    assert [p.wait(300) for p in sharded] == [0, 0], [p.stderr.read()[-2000:] for p in sharded]
    survivor, killed = process("shared"), process("shared")
    deadline = time.monotonic() + 300
    while not list((tmp_path / "shared" / "runs").glob("*/done.json")):  # the source model: both are at work now
        assert survivor.poll() is None and killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    killed.kill()
    assert survivor.wait(300) == 0, survivor.stderr.read()[-2000:]
    assert subprocess.run([*study, "--out", str(tmp_path / "one")], cwd=REPO, capture_output=True, timeout=300).returncode == 0
    numbers = _study_numbers(tmp_path / "one")
    assert len(numbers) == 4 and _study_numbers(tmp_path / "two") == numbers and _study_numbers(tmp_path / "shared") == numbers
