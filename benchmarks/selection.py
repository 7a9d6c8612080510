"""Which Ge frames to label: random subsets against the rankings of :mod:`mlpkit.selection`, at equal N.

    python benchmarks/selection.py --out DIR [--data sw|mlearn] [--mlearn-dir DIR] [--source CHECKPOINT]
                                   [--methods random diverse active] [--sizes 5 10 25 50] [--data-seeds 0 1 2]

Every method fine-tunes the same Si source (``--source``, else the quick study's own 3-member source)
with the study's default transfer on the first N frames of its ranking of the Ge pool, in quick study
settings. The spread is over data seeds: each seed draws another validation split, random order and
farthest-point start, so it measures how much the outcome depends on the draw (with a one-member source
the ensemble members of one cell would be identical). Results are cached in ``DIR`` per seed; the table
gives mean ± std over seeds of the best validation force MAE (what a method is chosen on) and of the
test force MAE (eV/Å), and each method's ratio to random.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mlpkit.checkpoint import load_checkpoint
from mlpkit.study import StudyConfig, run_study
from sw_energy_forces import cpu_name

INIT = {"random": "transfer", "active": "transfer-active", "diverse": "transfer-diverse"}


def method_rows(base: StudyConfig, method: str, out: Path) -> list[dict]:
    """Result rows of one method, each with its member's best validation force MAE added."""
    rows = run_study(dataclasses.replace(base, inits=(INIT[method],)), out, progress=False)
    for row in rows:
        best = load_checkpoint(out / row["checkpoint"]).metadata["best_validation_force_mae_ev_per_a"]
        row["validation_force_mae_ev_per_a"] = best[base.seeds.index(row["seed"])]
        row["data_seed"] = base.data_seed
    return rows


def cell(rows: list[dict], size: int, column: str) -> np.ndarray:
    """Per data seed, the mean over the cell's members."""
    seeds = sorted({row["data_seed"] for row in rows})
    return np.array([np.mean([r[column] for r in rows if r["size"] == size and r["data_seed"] == s]) for s in seeds])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="cache folder (one study folder per data seed)")
    parser.add_argument("--data", default="sw", choices=("sw", "mlearn"))
    parser.add_argument("--mlearn-dir")
    parser.add_argument("--source", help="a trained Si checkpoint (path or pretrained:NAME); active needs an ensemble")
    parser.add_argument("--methods", nargs="+", default=["random", "diverse"], choices=list(INIT))
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 25, 50])
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    results = {method: [] for method in args.methods}
    for data_seed in args.data_seeds:
        base = StudyConfig(data=args.data, mlearn_dir=args.mlearn_dir, source=args.source, data_seed=data_seed).quick()
        base = dataclasses.replace(base, seeds=(0, 1, 2))  # a 3-member source unless --source (the quick preset has one seed)
        base = dataclasses.replace(base, sizes=tuple(args.sizes), seeds=(0,) if args.source else base.seeds)
        for method in args.methods:
            results[method] += method_rows(base, method, Path(args.out) / f"data_seed_{data_seed}")
    print(f"# {cpu_name()}; {args.data} data, quick study, source {args.source or 'trained by the study'}, "
          f"data seeds {args.data_seeds}; force MAE eV/Å, mean ± std over data seeds (÷ random)")
    for column, label in (("validation_force_mae_ev_per_a", "validation"), ("force_mae_ev_per_a", "test")):
        print(f"\n{label}:\n\n| N | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
        for size in args.sizes:
            reference = cell(results[args.methods[0]], size, column).mean()
            values = [cell(rows, size, column) for rows in results.values()]
            print(f"| {size} | " + " | ".join(f"{v.mean():.4f} ± {v.std():.4f} ({v.mean() / reference:.2f})" for v in values) + " |")


if __name__ == "__main__":
    main()
