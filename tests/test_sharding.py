"""Sharding the study: cells run round-robin on two (forced host) devices, and two processes splitting the
cells through the shared run folder, give exactly the numbers of the unsharded study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from mlpkit.study import shard

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    import jax
    from mlpkit.models import ModelConfig
    from mlpkit.study import StudyConfig, run_study
    from mlpkit.training import TrainConfig

    out = sys.argv[1]
    tiny = TrainConfig(model=ModelConfig("painn", features=8, layers=1), max_epochs=1, warmup_epochs=1, batch_size=4)
    config = StudyConfig(sizes=(2, 3, 4), seeds=(0, 1), inits=("scratch",), train=tiny)  # no Si model: fast
    devices = jax.local_devices()
    assert len(devices) == 2, devices
    single = run_study(config, out + "/single", progress=False, devices=devices[:1])
    on_devices = run_study(config, out + "/devices", progress=False)
    other = threading.Thread(target=run_study, args=(config, out + "/processes"),
                             kwargs={"progress": False, "devices": devices[1:], "process": (1, 2)})
    other.start()
    processes = run_study(config, out + "/processes", progress=False, devices=devices[:1], process=(0, 2))
    other.join()
    print(json.dumps({"single": single, "devices": on_devices, "processes": processes}))
""")


def test_cells_are_dealt_to_processes_without_overlap_or_gap():
    cells = [(size, init) for size in (5, 10, 25) for init in ("scratch", "transfer")]
    parts = [shard(cells, index, 4) for index in range(4)]
    assert sorted(cell for part in parts for cell in part) == sorted(cells)
    assert parts[1] == [cells[1], cells[5]]


def test_sharded_studies_give_the_numbers_of_the_unsharded_one(tmp_path):
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=environment, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    studies = json.loads(completed.stdout.strip().splitlines()[-1])
    metrics = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "force_rmse_ev_per_a")

    def numbers(rows):
        return [(r["size"], r["seed"], r["init"], *(r[m] for m in metrics)) for r in rows]

    assert numbers(studies["devices"]) == numbers(studies["single"])
    assert numbers(studies["processes"]) == numbers(studies["single"])
    assert (tmp_path / "processes" / "report.html").exists()
