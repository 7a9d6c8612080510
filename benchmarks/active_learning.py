"""Active against random selection of DFT labels for the transferred Si → Ge model, over several seeds.

    python benchmarks/active_learning.py [--seeds 0 1 2] [--rounds 10] [--labels-per-round 2] [--cache DIR]
    python benchmarks/active_learning.py --smoke

For each seed: candidates from MD of the transferred `pretrained:si_mace_mlearn` (the default ActiveConfig: 600 and
1200 K, strains −2/0/+2 %, 6 snapshots each), a test set drawn the same way from other MD seeds and labelled once,
then both strategies of mlpkit.active from the same pool. Labels come from the DFT oracle (its default settings) and
are cached in ``--cache``, so a rerun computes only what it has not seen. Prints the machine, the test force MAE
per label count (mean ± standard deviation over the seeds, eV/Å) and the ratio active / random. ``--smoke``: the
shipped SW Si PaiNN, SW Ge as the oracle, one round of one label (CI checks the table, not the science).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from mlpkit.active import STRATEGIES, ActiveConfig, compare_strategies
from mlpkit.calculator import SWCalculator
from mlpkit.checkpoint import load_checkpoint
from mlpkit.oracle import DFTOracle
from mlpkit.transfer import TransferConfig
from sw_energy_forces import cpu_name


def curves(source, oracle, config: ActiveConfig, seed: int, transfer: TransferConfig) -> dict[str, dict[int, float]]:
    """{strategy: {labels: test force MAE eV/Å}} of one seed."""
    found: dict[str, dict[int, float]] = {strategy: {} for strategy in STRATEGIES}
    for strategy, round_ in compare_strategies(source, oracle, config, seed, transfer):
        found[strategy][round_.labels] = round_.force_mae_ev_per_a
    return found


def table(per_seed: list[dict[str, dict[int, float]]]) -> str:
    counts = sorted(per_seed[0]["active"])
    lines = ["| labels | active (eV/Å) | random (eV/Å) | active / random |", "|---|---|---|---|"]
    for n in counts:
        values = {s: np.array([run[s][n] for run in per_seed]) for s in STRATEGIES}
        ratio = float(np.mean(values["active"] / values["random"]))
        lines.append(f"| {n} | {values['active'].mean():.4f} ± {values['active'].std():.4f} | "
                     f"{values['random'].mean():.4f} ± {values['random'].std():.4f} | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--labels-per-round", type=int, default=2)
    parser.add_argument("--cache", default=None, help="the oracle's label cache (default: the user's cache folder)")
    parser.add_argument("--smoke", action="store_true", help="quick preset, one seed, SW Ge as the oracle (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        source, transfer, oracle, seeds = load_checkpoint("pretrained:si_painn_quick"), TransferConfig().with_length_scaling("sw"), SWCalculator("Ge"), [0]
        config = ActiveConfig(temperatures_k=(900.0,), strains=(0.0,), snapshots=3, interval_fs=20.0, equilibration_fs=40.0,
                              rounds=1, labels_per_round=1, members=2, steps=20, test_frames=2)
    else:
        source, transfer = load_checkpoint("pretrained:si_mace_mlearn"), TransferConfig().with_length_scaling("mlearn")
        config = dataclasses.replace(ActiveConfig(), rounds=args.rounds, labels_per_round=args.labels_per_round)
        seeds, oracle = args.seeds, DFTOracle(cache_dir=args.cache)
    start = time.perf_counter()
    per_seed = []
    for seed in seeds:  # the table so far after every seed: a long run stopped early still reports what it did
        per_seed.append(curves(source, oracle, config, seed, transfer))
        print(f"\nmachine: {cpu_name()}; oracle: {'SW Ge' if args.smoke else oracle.settings}; seeds {seeds[:len(per_seed)]}; "
              f"{config.pool_size} candidates, {config.test_frames} test structures, {config.members} members; "
              f"{time.perf_counter() - start:.0f} s\n", flush=True)
        print(table(per_seed), flush=True)


if __name__ == "__main__":
    main()
