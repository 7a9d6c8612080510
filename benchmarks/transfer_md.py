"""Stability and properties of transferred vs scratch Ge models, from a finished SW study.

    python benchmarks/transfer_md.py --study DIR [--sizes 10 50] [--temperatures 605 1089 1816 2422]

Reads the Ge checkpoints of ``mlpkit study --data sw`` (nothing is retrained). For each size and
initialisation, every member (seed) runs NVT Langevin MD from the 64-atom crystal at each temperature
and each MD seed, all as one vmapped batch, under the default stability monitor; the table gives the
fraction of runs that stayed physical for ``--duration-fs`` and the mean time to failure. The property
table compares the ensemble-mean models with the SW truth (quick property settings).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mlpkit.analysis import property_table
from mlpkit.checkpoint import load_checkpoint
from mlpkit.md import MDConfig
from mlpkit.md.replicas import run_replicas, stability_summary
from mlpkit.potentials import sw_potential
from mlpkit.structures import diamond
from sw_energy_forces import cpu_name


def study_checkpoints(study: Path, sizes, inits) -> dict[str, Path]:
    """``"<init> N=<size>"`` → the checkpoint (ensemble over seeds) of that cell of the study; with independent
    draws one entry per draw (``"… draw k"``)."""
    with open(study / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    found = {}
    for size in sizes:
        for init in inits:
            paths = list(dict.fromkeys(row["checkpoint"] for row in rows if int(row["size"]) == size and row["init"] == init))
            if not paths:
                raise SystemExit(f"{study}/results.csv has no checkpoint for size {size}, init {init}")
            for draw, path in enumerate(paths):  # one ensemble per cell, or one model per independent draw
                found[f"{init} N={size}" + (f" draw {draw}" if len(paths) > 1 else "")] = study / path
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="output folder of `mlpkit study --data sw`")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--inits", nargs="+", default=["scratch", "transfer"])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[605.0, 1089.0, 1816.0, 2422.0])
    parser.add_argument("--md-seeds", type=int, default=2)
    parser.add_argument("--duration-fs", type=float, default=2000.0)
    args = parser.parse_args()

    checkpoints = study_checkpoints(args.study, args.sizes, args.inits)
    config = MDConfig(temperature_k=300.0, float64=False)
    print(f"machine: {cpu_name()}; NVT Langevin, 64-atom Ge crystal, {args.duration_fs:.0f} fs, "
          f"{args.md_seeds} MD seeds × every model seed per temperature")
    print("| model | " + " | ".join(f"{t:g} K stable (mean t_fail fs)" for t in args.temperatures) + " |")
    print("|---|" + "---|" * len(args.temperatures))
    models = {"SW truth": sw_potential("Ge")}
    for name, path in checkpoints.items():
        checkpoint = load_checkpoint(path)
        models.update({name: [checkpoint.member(k).potential() for k in range(checkpoint.ensemble_size)]})
    for name, potentials in models.items():
        rows = []
        for potential in potentials if isinstance(potentials, list) else [potentials]:
            rows += run_replicas(potential, diamond("Ge"), args.temperatures, range(args.md_seeds), args.duration_fs,
                                 config, progress=False)
        cells = [f"{s['fraction_stable']:.0%} ({s['mean_time_to_failure_fs']:.0f})" for s in stability_summary(rows)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    table = property_table({"truth": "sw:Ge", **{name: str(path) for name, path in checkpoints.items()}},
                           reference="truth", element="Ge", quick=True)
    print()
    print(table.to_markdown())


if __name__ == "__main__":
    main()
