"""Accuracy per minute of training on the SW Si set: validation force MAE against wall time, and its Pareto front.

    python benchmarks/pareto.py [--out DIR] [--repeats 5] [--smoke]

Trains each configuration below ``--repeats`` times with ``mlpkit train --data sw:Si --test sw:Si:test``
into ``DIR/<name>/run<k>`` (a folder that already holds ``metrics.json`` is read back, not retrained),
then reads every epoch of each ``history.csv`` as one (minutes, validation force MAE) point: the
minutes are the median over the repeats (the errors are the same in every repeat: training is
deterministic, which is checked). Prints, per configuration, the best
error reached within fixed budgets and the test error of its best state, and writes ``DIR/pareto.html``:
one curve per configuration and the front (the lowest error any configuration reached by that time).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from mlpkit.cli import main as mlpkit_main
from mlpkit.fileio import write_text_atomic
from sw_energy_forces import cpu_name

CONFIGURATIONS = {
    "PaiNN quick (32 features, 2 layers)": ["--model", "painn", "--quick", "--epochs", "40"],
    "PaiNN quick, 16 features": ["--model", "painn", "--quick", "--features", "16", "--epochs", "40"],
    "PaiNN (64 features, 3 layers)": ["--model", "painn", "--epochs", "20"],
    "DimeNet++ quick (32 features, 2 blocks)": ["--model", "dimenet++", "--quick", "--epochs", "12"],
}
SMOKE = {"PaiNN, 8 features, 1 layer": ["--model", "painn", "--features", "8", "--layers", "1", "--epochs", "2",
                                        "--max-frames", "24"]}
BUDGETS_MIN = (0.5, 1.0, 2.0, 5.0)


def trained(folder: Path, options: list[str]) -> Path:
    """``folder`` after ``mlpkit train`` with ``options`` on the SW Si set, trained now unless it already was."""
    if not (folder / "metrics.json").exists():
        mlpkit_main(["train", "--data", "sw:Si", "--test", "sw:Si:test", "--out", str(folder), "--no-progress", *options])
    return folder


def run_curve(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(minutes since the start, validation force MAE eV/Å) after every epoch of a run."""
    with open(folder / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    return (np.array([float(r["elapsed_s"]) / 60 for r in rows]), np.array([float(r["force_mae_ev_per_a"]) for r in rows]))


def curve(folders: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median minutes, errors, [repeats, epochs] minutes) of repeated runs of one configuration."""
    runs = [run_curve(folder) for folder in folders]
    errors = runs[0][1]
    if any(not np.allclose(e, errors, rtol=1e-4) for _, e in runs):
        raise SystemExit(f"the repeats in {folders[0].parent} learned differently: training is not deterministic here")
    minutes = np.stack([m for m, _ in runs])
    return np.median(minutes, axis=0), errors, minutes


def best_within(minutes: np.ndarray, errors: np.ndarray, budget_min: float) -> float:
    """The lowest error reached within ``budget_min`` minutes (NaN if no epoch finished by then)."""
    reached = errors[minutes <= budget_min]
    return float(reached.min()) if reached.size else float("nan")


def front(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The Pareto front of all points: at each time, the lowest error any configuration had reached."""
    minutes = np.concatenate([c[0] for c in curves.values()])
    errors = np.concatenate([c[1] for c in curves.values()])
    order = np.argsort(minutes)
    lowest = np.minimum.accumulate(errors[order])
    keep = np.concatenate([[True], lowest[1:] < lowest[:-1]])
    return minutes[order][keep], lowest[keep]


def figure(curves: dict, front_points: tuple[np.ndarray, np.ndarray], title: str) -> go.Figure:
    fig = go.Figure()
    for name, (minutes, errors, _) in curves.items():
        fig.add_trace(go.Scatter(x=minutes, y=errors, mode="lines+markers", name=name, marker={"size": 4}))
    fig.add_trace(go.Scatter(x=front_points[0], y=front_points[1], mode="lines", name="Pareto front",
                             line={"shape": "hv", "dash": "dash", "color": "black"}))
    fig.update_layout(title=title, xaxis={"title": "training wall time (min)", "type": "log"},
                      yaxis={"title": "validation force MAE (eV/Å)", "type": "log"})
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="training folders and pareto.html (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=5, help="trainings per configuration (wall times vary, errors do not)")
    parser.add_argument("--smoke", action="store_true", help="one tiny model, 2 epochs, 2 repeats: checks the script runs")
    args = parser.parse_args()
    configurations, repeats = (SMOKE, 2) if args.smoke else (CONFIGURATIONS, args.repeats)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        folders = {}
        for k in range(repeats):  # one round of every configuration after another: drifts in the machine's speed spread evenly
            for name, options in configurations.items():
                folder = out / name.split(" (")[0].replace(" ", "_").replace(",", "") / f"run{k}"
                folders.setdefault(name, []).append(trained(folder, options))
        curves = {name: curve(runs) for name, runs in folders.items()}
        front_points = front(curves)
        title = f"SW Si: validation force MAE vs training time ({cpu_name()})"
        write_text_atomic(out / "pareto.html", figure(curves, front_points, title).to_html(include_plotlyjs=True))
        print(f"# {title}; {repeats} repeats, median minutes; the front is in {out / 'pareto.html'}")
        print("| model | " + " | ".join(f"best ≤ {b:g} min" for b in BUDGETS_MIN)
              + " | best validation (min) | run wall min, median (min–max) | test force MAE eV/Å |")
        print("|---|" + "---|" * (len(BUDGETS_MIN) + 3))
        for name, runs in folders.items():
            minutes, errors, every_run = curves[name]
            test = json.loads((runs[0] / "metrics.json").read_text())["test"]["force_mae_ev_per_a"]
            cells = " | ".join(f"{best_within(minutes, errors, b):.3f}" for b in BUDGETS_MIN)
            best = int(np.argmin(errors))
            last = every_run[:, -1]
            print(f"| {name} | {cells} | {errors[best]:.3f} ({minutes[best]:.1f}) "
                  f"| {np.median(last):.2f} ({last.min():.2f}–{last.max():.2f}) | {test:.3f} |")


if __name__ == "__main__":
    main()
