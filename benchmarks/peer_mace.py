"""The peer: mace-torch's MACE trained on the split that ``accuracy.py`` uses, timed on this machine.

    python benchmarks/peer_mace.py --mace-bin PEER_VENV/bin --mlearn-dir PATH/TO/mlearn [--epochs 65] --out DIR
    python benchmarks/peer_mace.py --smoke --out DIR       # the split and the log reader only (CI: no torch)

mace-torch lives in a virtual environment of its own (``pip install torch==2.13.0 mace-torch``); mlpkit never
imports it. The script writes the fixed split (training / validation of ``training.json``, 90/10 stratified,
seed 0, and the test file) as extxyz, runs ``mace_run_train`` with the issue's peer settings (32 channels,
L = 1, correlation 3, two interactions, 5 Å, forces weighted 100:1, a late stage with energies weighted up),
then ``mace_eval_configs`` on the test file. It prints the validation force MAE at each evaluation against
the minutes since the start (the Pareto table's axes) and the test errors of the final model. Pin it to one
core with ``taskset`` to compare with one-core mlpkit runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import time
from pathlib import Path

import ase.io
import numpy as np

from accuracy import split
from mlpkit.data import load_dataset, sw_data_path
from mlpkit.data.extxyz import LabelKeys, write_extxyz
from mlpkit.data.splits import train_val_split
from sw_energy_forces import cpu_name

KEYS = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress")
EPOCH_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: Epoch (?P<epoch>\d+):.*?"
    r"MAE_E_per_atom=\s*(?P<energy>[\d.]+) meV, MAE_F=\s*(?P<forces>[\d.]+) meV / A", re.M)


def write_split(data, folder: Path) -> dict[str, Path]:
    """The training, validation and test sets of ``data`` as extxyz files in ``folder``."""
    paths = {name: folder / f"{name}.xyz" for name in ("train", "valid", "test")}
    for name, dataset in zip(paths, data):
        write_extxyz(dataset, paths[name], KEYS)
    return paths


def epoch_errors(log_text: str) -> list[dict]:
    """(epoch, seconds since the first line, validation E MAE meV/atom, F MAE eV/Å) from mace-torch's log."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ", log_text, flags=re.M)
    if not stamps:
        return []
    start = datetime.datetime.fromisoformat(stamps[0])
    rows = []
    for match in EPOCH_LINE.finditer(log_text):
        elapsed = (datetime.datetime.fromisoformat(match["stamp"]) - start).total_seconds()
        rows.append({"epoch": int(match["epoch"]), "elapsed_s": elapsed,
                     "val_energy_mae_mev_per_atom": float(match["energy"]),
                     "val_force_mae_ev_per_a": float(match["forces"]) / 1000})
    return rows


PREDICTED = LabelKeys(energy="MACE_energy", forces="MACE_forces", stress="MACE_stress")  # mace_eval_configs' names


def test_errors(reference: Path, predicted: Path) -> dict:
    """Energy MAE per atom (meV) and force MAE per component (eV/Å) of ``predicted`` against ``reference``."""
    truth, model = load_dataset(reference, KEYS), load_dataset(predicted, PREDICTED)
    return {"energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(model.energy_ev - truth.energy_ev) / truth.n_atoms)),
            "force_mae_ev_per_a": float(np.mean(np.abs(model.forces_ev_per_a - truth.forces_ev_per_a)))}


def train_command(mace_bin: Path, paths: dict[str, Path], folder: Path, epochs: int) -> list[str]:
    late = max(1, round(0.75 * epochs))  # the last quarter with energies weighted up (mace-torch's stage two)
    return [
        str(mace_bin / "mace_run_train"), "--name", "peer", "--work_dir", str(folder), "--seed", "0",
        "--train_file", str(paths["train"]), "--valid_file", str(paths["valid"]),
        "--energy_key", KEYS.energy, "--forces_key", KEYS.forces, "--E0s", "average",
        "--model", "MACE", "--num_channels", "32", "--max_L", "1", "--correlation", "3", "--num_interactions", "2",
        "--r_max", "5.0", "--num_radial_basis", "8", "--loss", "weighted", "--energy_weight", "1",
        "--forces_weight", "100", "--swa", "--start_swa", str(late), "--swa_energy_weight", "1000",
        "--swa_forces_weight", "100", "--batch_size", "5", "--valid_batch_size", "10", "--lr", "0.01",
        "--ema", "--ema_decay", "0.99", "--amsgrad", "--max_num_epochs", str(epochs), "--patience", str(epochs),
        "--eval_interval", "1", "--error_table", "PerAtomMAE", "--default_dtype", "float32", "--device", "cpu",
        "--save_cpu",
    ]


def run_peer(mace_bin: Path, paths: dict[str, Path], folder: Path, epochs: int) -> tuple[list[dict], dict, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(train_command(mace_bin, paths, folder, epochs), check=True, env=env, cwd=folder)
    wall_s = time.perf_counter() - start
    model = next(path for path in (folder / "peer_stagetwo.model", folder / "peer.model") if path.exists())
    predicted = folder / "test_predicted.xyz"
    subprocess.run([str(mace_bin / "mace_eval_configs"), "--configs", str(paths["test"]), "--model", str(model),
                    "--output", str(predicted), "--device", "cpu", "--default_dtype", "float32"],
                   check=True, env=env, cwd=folder)
    log_text = (folder / "logs" / "peer_run-0.log").read_text()
    return epoch_errors(log_text), test_errors(paths["test"], predicted), wall_s


SMOKE_LOG = """2026-12-02 19:00:00.000 INFO: MACE version: 0.3.16
2026-12-02 19:00:30.500 INFO: Epoch 0: head: Default, loss=60.25015259, MAE_E_per_atom=  449.71 meV, MAE_F=  855.88 meV / A
2026-12-02 19:01:30.500 INFO: Epoch 1: head: Default, loss=13.04487610, MAE_E_per_atom=  12.30 meV, MAE_F=  81.00 meV / A
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mace-bin", type=Path, help="the bin folder of a venv with mace-torch")
    parser.add_argument("--mlearn-dir", type=Path)
    parser.add_argument("--element", default="Ge")
    parser.add_argument("--epochs", type=int, default=65)
    parser.add_argument("--out", type=Path, default=Path("peer-runs"))
    parser.add_argument("--smoke", action="store_true", help="write the split and read a sample log, no training")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        training = load_dataset(sw_data_path("Ge", "test"))
        paths = write_split((*train_val_split(training.first(10), 0.2, seed=0), training.first(3)), args.out)
        write_extxyz(training.first(3), args.out / "predicted.xyz", PREDICTED)  # a perfect "model"
        print(json.dumps({"frames": {name: len(ase.io.read(path, index=":")) for name, path in paths.items()},
                          "test": test_errors(paths["test"], args.out / "predicted.xyz"),
                          "epochs": epoch_errors(SMOKE_LOG)}))
        return
    data = split(f"mlearn:{args.element}", args.mlearn_dir)
    print(f"mace-torch on mlearn {args.element}, {len(data[0])}/{len(data[1])}/{len(data[2])} frames, "
          f"{args.epochs} epochs, {cpu_name()}", flush=True)
    paths = write_split(data, args.out)
    history, test, wall_s = run_peer(args.mace_bin.resolve(), paths, args.out.resolve(), args.epochs)
    print("| epoch | minutes | val F MAE (eV/Å) | val E MAE (meV/atom) |\n|---|---|---|---|")
    for row in history:
        print(f"| {row['epoch']} | {row['elapsed_s'] / 60:.1f} | {row['val_force_mae_ev_per_a']:.4f} "
              f"| {row['val_energy_mae_mev_per_atom']:.2f} |")
    print(f"test: F MAE {test['force_mae_ev_per_a']:.4f} eV/Å, E MAE {test['energy_mae_mev_per_atom']:.2f} meV/atom; "
          f"wall {wall_s:.0f} s")


if __name__ == "__main__":
    main()
