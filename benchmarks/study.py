"""Wall time of the SW study end to end, and the share of it spent compiling.

    python benchmarks/study.py [--full] [--sizes 5 10 25 50 100] [--seeds 3] [--repeats 5] [--out DIR] [--smoke]

Runs ``mlpkit study --data sw --quick`` (with ``--full``: the full-size study, for a GPU) into a fresh
folder (nothing cached), counting JAX's own compile events: tracing to a jaxpr, lowering to MLIR and
the XLA backend compile.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from jax import monitoring

from mlpkit.cli import main as mlpkit_main
from sw_energy_forces import cpu_name

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "XLA compile",
}


def timed_study(sizes: list[int], seeds: int, out: str | None, full: bool) -> tuple[float, collections.Counter, collections.Counter]:
    """(wall s, seconds and counts of each compile stage) of one study into ``out`` (default: a fresh temporary folder)."""
    seconds, counts = collections.Counter(), collections.Counter()

    def listen(event: str, duration_s: float, **_) -> None:
        if event in EVENTS:
            seconds[EVENTS[event]] += duration_s
            counts[EVENTS[event]] += 1

    jax.clear_caches()  # every repeat compiles, as a fresh `mlpkit study` process does
    monitoring.register_event_duration_secs_listener(listen)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out = out or scratch
            if Path(out, "runs").exists():
                raise SystemExit(f"{out} already holds a study: its cached runs would not be timed")
            start = time.perf_counter()
            mlpkit_main(["study", "--data", "sw", *([] if full else ["--quick", "--train-source"]), "--sizes", *map(str, sizes),
                         "--seeds", str(seeds), "--out", out, "--no-progress"])
            return time.perf_counter() - start, seconds, counts
    finally:
        monitoring.unregister_event_duration_listener(listen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size models and epochs instead of --quick")
    parser.add_argument("--sizes", type=int, nargs="+", help="Ge frames per run, 0 = all (default: 5 10 25 50 100, and 0 with --full)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="whole studies, each in a fresh folder with JAX's caches cleared")
    parser.add_argument("--out", help="keep the study here (it must not exist yet; one repeat only); default: a temporary folder")
    parser.add_argument("--smoke", action="store_true", help="one size, one seed: checks the script runs")
    args = parser.parse_args()
    if args.out and args.repeats > 1:
        parser.error("--out keeps one study: use it with --repeats 1")
    sizes = args.sizes or [5, 10, 25, 50, 100] + ([0] if args.full else [])
    sizes, seeds = ([5], 1) if args.smoke else (sizes, args.seeds)
    print(f"machine: {cpu_name()}, {jax.devices()[0].platform}, jax {jax.__version__}; "
          f"{'full' if args.full else 'quick'} SW study, sizes {sizes}, {seeds} seeds, scratch and transfer")
    print("| run | wall s | compiling s | share | trace s (n) | lower s (n) | XLA compile s (n) |")
    print("|---|---|---|---|---|---|---|")
    walls = []
    for run in range(args.repeats):
        wall_s, seconds, counts = timed_study(sizes, seeds, args.out, args.full)
        walls.append(wall_s)
        compiling_s = sum(seconds.values())
        parts = " | ".join(f"{seconds[name]:.1f} ({counts[name]})" for name in EVENTS.values())
        print(f"| {run + 1} | {wall_s:.0f} | {compiling_s:.0f} | {compiling_s / wall_s:.0%} | {parts} |", flush=True)
    print(f"median wall {np.median(walls):.0f} s (min {min(walls):.0f}, max {max(walls):.0f}) over {len(walls)} run(s)")


if __name__ == "__main__":
    main()
