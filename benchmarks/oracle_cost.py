"""What a DFT label costs: the oracle's wall time against cell size and k-point mesh, beside its own estimate.

    python benchmarks/oracle_cost.py [--cells 8 16 32] [--budget 900]
    python benchmarks/oracle_cost.py --smoke

Each row labels a displaced diamond Ge cell (8 atoms: the cubic cell; 16: two of them along x; 32: 2 × 2 × 1) with
the default settings (LDA, gth-szv, gth-pade, the Γ point: the oracle's forces do not work with k-points), in a
fresh cache, so every label is computed. ``--budget`` lifts the oracle's refusal so large cells can be timed. Prints a Markdown table with the
machine: seconds per label, the estimate (``DFTSettings.estimated_seconds``) and the net force left (a check
that the forces converged).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import numpy as np
from ase.build import bulk

from mlpkit.oracle import DFTOracle, DFTSettings
from sw_energy_forces import cpu_name

REPEATS = {8: (1, 1, 1), 16: (2, 1, 1), 32: (2, 2, 1), 64: (2, 2, 2)}


def displaced_cell(n_atoms: int):
    atoms = bulk("Ge", "diamond", a=5.658, cubic=True).repeat(REPEATS[n_atoms])
    atoms.positions[0] += [0.1, 0.05, 0.0]
    return atoms


def timed(n_atoms: int, budget_s: float) -> dict:
    settings = DFTSettings(max_seconds=budget_s)
    atoms = displaced_cell(n_atoms)
    with tempfile.TemporaryDirectory() as cache:
        atoms.calc = DFTOracle(settings, cache_dir=cache)
        forces = atoms.get_forces()
        seconds = atoms.calc.last_seconds
    return {"atoms": n_atoms, "seconds": seconds, "estimate": settings.estimated_seconds(n_atoms),
            "net_force": float(np.abs(forces.sum(axis=0)).max())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[8, 16, 32], choices=sorted(REPEATS))
    parser.add_argument("--budget", type=float, default=900.0, help="seconds a label may take (the oracle refuses beyond)")
    parser.add_argument("--smoke", action="store_true", help="the 8-atom cell only (CI)")
    args = parser.parse_args(argv)
    cells = [8] if args.smoke else args.cells
    print(f"DFT oracle cost, {dataclasses.asdict(DFTSettings())}, {cpu_name()}\n")
    print("| atoms | seconds per label | estimate (s) | max net force (eV/Å) |\n|---|---|---|---|")
    for n_atoms in cells:
        row = timed(n_atoms, args.budget)
        print(f"| {row['atoms']} | {row['seconds']:.1f} | {row['estimate']:.0f} | {row['net_force']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
