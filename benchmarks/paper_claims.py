"""The paper's claims from a finished (or running) study: learning-curve table over the draws, wall time, verdicts.

    python benchmarks/paper_claims.py --study data/results/sw

Reads the study's ``results.csv`` (and ``stability.csv`` / the temperature bands of ``results.json`` where
present); nothing is trained. Prints Markdown: per (N, init) the Ge test force and energy MAE as mean ± std
over the draws, transfer's ratio to scratch, the training wall time, and each claim of
:func:`mlpkit.study.report.claims` with its numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mlpkit.md.stability_grid import read_stability_csv
from mlpkit.study.check import read_results_csv, study_problems
from mlpkit.study.report import claims, curve
from sw_energy_forces import cpu_name


def curve_table(rows: list[dict]) -> str:
    """Markdown rows: N, then per init the force and energy MAE (mean ± std over draws, :func:`curve`), and
    transfer ÷ scratch."""
    lines = ["| N | draws | scratch F (eV/Å) | transfer F (eV/Å) | transfer ÷ scratch | scratch E (meV/atom) | "
             "transfer E (meV/atom) | mean wall per run (s) |", "|---" * 8 + "|"]
    by_size = {metric: {init: {int(n): (m, d) for n, m, d in zip(*curve(rows, init, metric))} for init in ("scratch", "transfer")}
               for metric in ("force_mae_ev_per_a", "energy_mae_mev_per_atom")}
    force, energy = by_size["force_mae_ev_per_a"], by_size["energy_mae_mev_per_atom"]
    for size in sorted(set(force["scratch"]) & set(force["transfer"])):
        runs = [row for row in rows if row["size"] == size and row["init"] in ("scratch", "transfer")]
        draws = " / ".join(str(sum(row["init"] == init for row in runs)) for init in ("scratch", "transfer"))
        (fs, fs_d), (ft, ft_d) = force["scratch"][size], force["transfer"][size]
        (es, es_d), (et, et_d) = energy["scratch"][size], energy["transfer"][size]
        lines.append(f"| {size} | {draws} | {fs:.4f} ± {fs_d:.4f} | {ft:.4f} ± {ft_d:.4f} | {ft / fs:.2f} | "
                     f"{es:.2f} ± {es_d:.2f} | {et:.2f} ± {et_d:.2f} | {np.mean([row['wall_s'] for row in runs]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True)
    args = parser.parse_args()
    rows = read_results_csv(args.study / "results.csv")
    breakdown = json.loads((args.study / "results.json").read_text()).get("breakdown", [])
    problems = study_problems(args.study)
    print(f"Study {args.study} ({len(rows)} runs; {'current' if not problems else 'STALE: ' + problems[0]}), read on {cpu_name()}\n")
    print(curve_table(rows), "\n")
    print(f"Total training time: {sum(row['wall_s'] for row in rows) / 60:.0f} CPU-minutes (one core per run)\n")
    for claim, held, numbers in claims(rows, read_stability_csv(args.study / "stability.csv"), breakdown):
        print(f"- {claim}: **{ {True: 'holds', False: 'does not hold', None: 'not measured'}[held] }** ({numbers})")


if __name__ == "__main__":
    main()
