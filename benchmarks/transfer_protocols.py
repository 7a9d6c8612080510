"""Which transfer protocol to make the default: every variant against scratch, on validation and test errors.

    python benchmarks/transfer_protocols.py --out DIR [--data sw|mlearn] [--mlearn-dir DIR] [--variants ...] [--full]

Each variant is a quick study (``StudyConfig().quick()``; ``--full`` for the default sizes and models)
run into the same ``DIR``, so runs that several variants share (the source model, scratch) are trained
once, and a second call only reads results back. The table gives, per Ge training-set size, the mean ±
std over seeds of the best validation force MAE (what a default may be chosen on) and the test force MAE
(eV/Å). Variants:

- ``default``: the study's "transfer": ``TransferConfig()`` (E0 re-fit, learning rate 5e-4) with Ge lengths
  scaled by a_Si / a_Ge of the data's reference;
- ``no-scaling``: the same without the length scaling;
- ``plain``: ``transfer-plain``, the paper's protocol (no E0 re-fit, the scratch learning rate, no scaling);
- ``plain-scaled``: the paper's protocol with the length scaling;
- ``frozen-interactions``: ``no-scaling`` with the message-passing blocks kept at their Si values (only the
  embedding and the readout learn Ge);
- ``active``: ``no-scaling`` trained on the frames the Si ensemble disagrees on most (compare with ``no-scaling``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from mlpkit.checkpoint import load_checkpoint
from mlpkit.study import StudyConfig, run_study
from mlpkit.transfer import TransferConfig
from sw_energy_forces import cpu_name

VARIANTS = {
    "scratch": ("scratch", {}),
    "default": ("transfer", {}),
    "no-scaling": ("transfer", {"rescale_lengths": False}),
    "plain": ("transfer-plain", {}),
    "plain-scaled": ("transfer", {"transfer": TransferConfig.plain()}),
    "frozen-interactions": ("transfer", {"transfer": TransferConfig(frozen_blocks=("interactions",)), "rescale_lengths": False}),
    "active": ("transfer-active", {"rescale_lengths": False}),
}


def variant_rows(base: StudyConfig, variant: str, out: Path) -> list[dict]:
    """Result rows of one variant, each with its member's best validation force MAE added."""
    init, changes = VARIANTS[variant]
    rows = run_study(dataclasses.replace(base, inits=(init,), **changes), out, progress=False)
    best = {path: load_checkpoint(out / path).metadata["best_validation_force_mae_ev_per_a"]  # one read per cell
            for path in {row["checkpoint"] for row in rows}}
    for row in rows:
        row["validation_force_mae_ev_per_a"] = best[row["checkpoint"]][base.seeds.index(row["seed"])]
    return rows


def summary(rows: list[dict], size: int, column: str) -> str:
    values = np.array([row[column] for row in rows if row["size"] == size])
    return f"{values.mean():.3f} ± {values.std():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="study folder shared by all variants (a cache)")
    parser.add_argument("--data", default="sw", choices=("sw", "mlearn"))
    parser.add_argument("--mlearn-dir")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--full", action="store_true", help="the default study sizes and models instead of quick ones")
    args = parser.parse_args()
    base = StudyConfig(data=args.data, mlearn_dir=args.mlearn_dir)
    # the quick preset's models and epochs over the sweep these tables were measured on (the preset itself is smaller)
    base = base if args.full else dataclasses.replace(base.quick(), sizes=(5, 10, 25, 50, 100), seeds=(0, 1, 2))
    results = {variant: variant_rows(base, variant, Path(args.out)) for variant in args.variants}
    sizes = sorted({row["size"] for rows in results.values() for row in rows})
    print(f"# {cpu_name()}; {args.data} data, {'full' if args.full else 'quick'} study, seeds {list(base.seeds)}; "
          "force MAE eV/Å, mean ± std over seeds")
    for column, label in (("validation_force_mae_ev_per_a", "validation"), ("force_mae_ev_per_a", "test")):
        print(f"\n{label}:\n\n| N | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
        for size in sizes:
            print(f"| {size} | " + " | ".join(summary(rows, size, column) for rows in results.values()) + " |")


if __name__ == "__main__":
    main()
