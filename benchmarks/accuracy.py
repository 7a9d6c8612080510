"""What limits the models' accuracy: one fixed split, one baseline, ablations one at a time.

    python benchmarks/accuracy.py --data sw:Si [--quick] [--epochs 200] [--variants baseline forces-x10 ...]
    python benchmarks/accuracy.py --data mlearn:Ge --mlearn-dir PATH/TO/mlearn --model mace
    python benchmarks/accuracy.py --smoke

Every variant trains on the same training/validation split of the training file (90/10, stratified,
seed 0) and is chosen on validation errors; the test file is evaluated once, on the best state of
each run, to report. Per-epoch histories go to ``OUT/<data>/<model>/<variant>.csv``; a run whose CSV
and summary exist is read back rather than retrained. The table gives, per variant, the best
validation force MAE, its ratio to the baseline's (measured in the same run), the validation energy
MAE, the test errors, the epochs and the wall time on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mlpkit.data import load_dataset, sw_data_path, train_val_split
from mlpkit.fileio import write_text_atomic
from mlpkit.models import ModelConfig
from mlpkit.training import LossWeights, TrainConfig, evaluate, train
from mlpkit.training.evaluate import history_csv
from sw_energy_forces import cpu_name

VARIANTS = {
    "baseline": lambda c: c,
    "forces-x10": lambda c: dataclasses.replace(c, weights=dataclasses.replace(c.weights, forces=10.0)),
    "forces-x100": lambda c: dataclasses.replace(c, weights=dataclasses.replace(c.weights, forces=100.0)),
    "no-virial": lambda c: dataclasses.replace(c, weights=dataclasses.replace(c.weights, virial=0.0)),
    "lr-5e-3": lambda c: dataclasses.replace(c, learning_rate=5e-3),
    "lr-5e-4": lambda c: dataclasses.replace(c, learning_rate=5e-4),
    "batch-2": lambda c: dataclasses.replace(c, batch_size=2),
    "batch-4": lambda c: dataclasses.replace(c, batch_size=4),
    "no-ema": lambda c: dataclasses.replace(c, ema_decay=0.0),
    "wide": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, features=2 * c.model.features)),
    "deep": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, layers=c.model.layers + 1)),
    "radial-16": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, radial_basis=16)),
    "radial-hidden-64": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, radial_hidden=64)),
    "vector-messages": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, vector_messages=True)),
    "cutoff-4": lambda c: dataclasses.replace(c, model=dataclasses.replace(c.model, cutoff_a=4.0)),
    "float64": lambda c: dataclasses.replace(c, float64=True),
    # MACE's training recipe (mace-torch's defaults), one part at a time and all together
    "amsgrad": lambda c: dataclasses.replace(c, optimiser="amsgrad"),
    "weight-decay": lambda c: dataclasses.replace(c, weight_decay=5e-7),
    "plateau-1e-2": lambda c: dataclasses.replace(c, schedule="plateau", learning_rate=1e-2),
    "late-stage": lambda c: dataclasses.replace(c, late_weights=LossWeights(energy=10.0, forces=1.0, virial=c.weights.virial),
                                                late_fraction=0.25, late_learning_rate=1e-3),
    "mace-recipe": lambda c: c.mace_recipe(),
}


def split(data: str, mlearn_dir: Path | None):
    """(training, validation, test) of ``sw:El`` or ``mlearn:El``: the fixed split every variant shares."""
    source, element = data.split(":")
    if source == "sw":
        training, test = load_dataset(sw_data_path(element, "training")), load_dataset(sw_data_path(element, "test"))
    elif source == "mlearn" and mlearn_dir is not None:
        training, test = (load_dataset(mlearn_dir / element / f"{name}.json") for name in ("training", "test"))
    else:
        raise SystemExit(f"--data {data}: use sw:Si, sw:Ge, or mlearn:Si / mlearn:Ge with --mlearn-dir")
    train_set, val_set = train_val_split(training, val_fraction=0.1, seed=0)
    return train_set, val_set, test


def measured(folder: Path, name: str, config: TrainConfig, data) -> dict:
    """Summary of one variant: trained now, or read back from ``folder`` if it was trained before."""
    summary_path = folder / f"{name}.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    train_set, val_set, test = data
    result = train(train_set, val_set, config, progress=False)
    best = result.history[int(result.best_epoch[0])]
    summary = {
        "variant": name, "val_force_mae_ev_per_a": best["force_mae_ev_per_a"],
        "val_energy_mae_mev_per_atom": best["energy_mae_mev_per_atom"], "best_epoch": int(result.best_epoch[0]),
        "epochs": len(result.history) - 1, "wall_s": result.wall_s,
        "test": evaluate(result.checkpoint, test), "config": dataclasses.asdict(config),
    }
    write_text_atomic(folder / f"{name}.csv", history_csv(result.history))
    write_text_atomic(summary_path, json.dumps(summary, indent=2))
    return summary


def table(rows: list[dict]) -> str:
    baseline = rows[0]["val_force_mae_ev_per_a"]
    lines = ["| variant | val F MAE (eV/Å) | ÷ baseline | val E MAE (meV/atom) | test F MAE (eV/Å) | test E MAE (meV/atom) "
             "| best epoch / epochs | wall (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['val_force_mae_ev_per_a']:.4f} | {r['val_force_mae_ev_per_a'] / baseline:.2f} "
            f"| {r['val_energy_mae_mev_per_atom']:.2f} | {r['test']['force_mae_ev_per_a']:.4f} "
            f"| {r['test']['energy_mae_mev_per_atom']:.2f} | {r['best_epoch']} / {r['epochs']} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sw:Si")
    parser.add_argument("--mlearn-dir", type=Path)
    parser.add_argument("--model", default="painn")
    parser.add_argument("--quick", action="store_true", help="the quick model size")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("accuracy-runs"))
    parser.add_argument("--smoke", action="store_true", help="a tiny run of two variants (CI)")
    args = parser.parse_args(argv)
    model = ModelConfig(args.model).quick() if args.quick or args.smoke else ModelConfig(args.model)
    base = TrainConfig(model=model, max_epochs=args.epochs, patience_epochs=args.patience, warmup_epochs=min(5, args.epochs // 4))
    data = split(args.data, args.mlearn_dir)
    variants = args.variants
    if args.smoke:
        base = dataclasses.replace(base, model=dataclasses.replace(model, features=8, layers=1), max_epochs=2, warmup_epochs=0)
        data = tuple(d.first(8) for d in data)
        variants = ["baseline", "forces-x10"]
    elif variants[0] != "baseline":
        variants = ["baseline", *variants]
    folder = args.out / args.data.replace(":", "-") / (model.architecture + ("-quick" if args.quick else ""))
    print(f"{args.data}, {model}, {len(data[0])}/{len(data[1])}/{len(data[2])} frames (train/val/test), {cpu_name()}")
    rows = []
    for name in variants:
        rows.append(measured(folder, name, VARIANTS[name](base), data))
        print(table(rows).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
