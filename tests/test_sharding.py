"""Sharding the study: two OS processes under jax.distributed splitting the cells through the shared run
folder, each dealing its share round-robin to two (forced host) devices (one process killed, both
restarted), give exactly the numbers of the unsharded study."""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlpkit.study import shard

REPO = Path(__file__).resolve().parents[1]


def test_cells_are_dealt_to_processes_without_overlap_or_gap():
    cells = [(size, init) for size in (5, 10, 25) for init in ("scratch", "transfer")]
    parts = [shard(cells, index, 4) for index in range(4)]
    assert sorted(cell for part in parts for cell in part) == sorted(cells)
    assert parts[1] == [cells[1], cells[5]]


def _study_numbers(folder: Path) -> list[tuple]:
    with open(folder / "results.csv") as stream:
        return [(r["size"], r["seed"], r["init"], r["energy_mae_mev_per_atom"], r["force_mae_ev_per_a"])
                for r in csv.DictReader(stream)]


def test_two_real_processes_match_one_and_a_restart_of_both_after_a_kill_finishes_with_the_same_numbers(tmp_path):
    """``mlpkit study --distributed`` as two OS processes with a coordinator on 127.0.0.1 (jax.distributed on CPU),
    each dealing its cells round-robin to two (forced host) devices, against one process on one device."""
    study = [sys.executable, "-m", "mlpkit", "study", "--model", "painn", "--features", "8", "--layers", "1", "--epochs", "1",
             "--sizes", "2", "3", "--seeds", "1", "--inits", "scratch", "transfer", "--no-progress", "--wait-timeout", "5"]
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def process(index: int) -> subprocess.Popen:
        return subprocess.Popen([*study, "--out", str(tmp_path / "two"), "--distributed", "--coordinator", f"127.0.0.1:{port}",
                                 "--num-processes", "2", "--process-id", str(index)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=two_devices)

    two_devices = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    first, second = process(0), process(1)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "two" / "runs").glob("*/done.json")):  # the source model: both are at work now
        assert first.poll() is None and second.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second.kill()
    assert first.wait(300) == 2  # it gives up on the run the killed process owned, with one line naming it
    assert re.fullmatch(r"mlpkit: error: waited 5 s for the run in .*runs/[0-9a-f]{16}, and no process is training it: .*"
                        "start all processes again with the same command to resume\n", first.stderr.read())
    restarted = [process(0), process(1)]
    assert [p.wait(300) for p in restarted] == [0, 0], [p.stderr.read()[-2000:] for p in restarted]
    assert subprocess.run([*study, "--out", str(tmp_path / "one")], cwd=REPO, capture_output=True, timeout=300).returncode == 0
    assert _study_numbers(tmp_path / "two") == _study_numbers(tmp_path / "one") and len(_study_numbers(tmp_path / "one")) == 4
