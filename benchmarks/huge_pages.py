"""Training with and without transparent huge pages for XLA's buffers (glibc.malloc.hugetlb, mlpkit.runtime).

    python benchmarks/huge_pages.py [--repeats 5] [--epochs 10] [--smoke]

Runs ``python -m mlpkit train --data sw:Si --model painn --quick --ensemble 3`` (the quick study's cell: three members
as one vmapped program) in a child process, alternately with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0``
(the baseline: glibc's default) and ``=1``, and reports medians (min–max) of the training's own wall time
(``metrics.json``), the child's user and system CPU seconds and its minor page faults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sw_energy_forces import cpu_name

SETTINGS = {"glibc default (baseline)": "glibc.malloc.hugetlb=0", "huge pages": "glibc.malloc.hugetlb=1"}


def run_once(tunables: str, options: list[str], out: Path) -> dict:
    """One training in a fresh process: its wall time and the process's CPU seconds and minor faults."""
    command = [sys.executable, "-m", "mlpkit", "train", "--data", "sw:Si", "--model", "painn", "--quick", "--ensemble", "3",
               "--out", str(out), "--no-progress", *options]
    child = subprocess.Popen(command, env={**os.environ, "GLIBC_TUNABLES": tunables}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    wall_s = json.loads((out / "metrics.json").read_text())["wall_s"]
    return {"wall_s": wall_s, "user_s": usage.ru_utime, "system_s": usage.ru_stime, "faults": usage.ru_minflt}


def cell(values: list[float], digits: int) -> str:
    return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="one repeat, 1 epoch of a tiny PaiNN on 24 frames: checks the script runs")
    args = parser.parse_args()
    options = ["--epochs", "1", "--max-frames", "24", "--features", "8", "--layers", "1"] if args.smoke else ["--epochs", str(args.epochs)]
    repeats = 1 if args.smoke else args.repeats
    results = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(repeats):
            for name, tunables in SETTINGS.items():  # alternated, so drifts in machine load hit both alike
                results[name].append(run_once(tunables, options, Path(scratch) / f"{repeat}-{len(results[name])}-{tunables[-1]}"))
    print(f"# {cpu_name()}; mlpkit train --data sw:Si --model painn --quick --ensemble 3 {' '.join(options)}; {repeats} runs each")
    print("| allocator | training wall s | × baseline | user CPU s | system CPU s | minor page faults (millions) |")
    print("|---|---|---|---|---|---|")
    baseline = np.median([r["wall_s"] for r in results[next(iter(SETTINGS))]])
    for name, runs in results.items():
        column = {key: [r[key] for r in runs] for key in runs[0]}
        print(f"| {name} | {cell(column['wall_s'], 1)} | {np.median(column['wall_s']) / baseline:.2f} | "
              f"{cell(column['user_s'], 0)} | {cell(column['system_s'], 0)} | {cell([f / 1e6 for f in column['faults']], 2)} |")


if __name__ == "__main__":
    main()
