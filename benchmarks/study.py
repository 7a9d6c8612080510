"""Wall time of the quick SW study end to end, and the share of it spent compiling.

    python benchmarks/study.py [--sizes 5 10 25 50 100] [--seeds 3] [--smoke]

Runs ``mlpkit study --data sw --quick`` into a fresh temporary folder (nothing cached), counting
JAX's own compile events: tracing to a jaxpr, lowering to MLIR and the XLA backend compile.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import jax
from jax import monitoring

from mlpkit.cli import main as mlpkit_main
from sw_energy_forces import cpu_name

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "XLA compile",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 25, 50, 100])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="keep the study here (it must not exist yet); default: a temporary folder")
    parser.add_argument("--smoke", action="store_true", help="one size, one seed: checks the script runs")
    args = parser.parse_args()
    sizes, seeds = ([5], 1) if args.smoke else (args.sizes, args.seeds)

    seconds, counts = collections.Counter(), collections.Counter()

    def listen(event: str, duration_s: float, **_) -> None:
        if event in EVENTS:
            seconds[EVENTS[event]] += duration_s
            counts[EVENTS[event]] += 1

    monitoring.register_event_duration_secs_listener(listen)
    print(f"machine: {cpu_name()}, {jax.devices()[0].platform}, jax {jax.__version__}; "
          f"quick SW study, sizes {sizes}, {seeds} seeds, scratch and transfer")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        if Path(out, "runs").exists():
            raise SystemExit(f"{out} already holds a study: its cached runs would not be timed")
        start = time.perf_counter()
        mlpkit_main(["study", "--data", "sw", "--quick", "--sizes", *map(str, sizes), "--seeds", str(seeds),
                     "--out", out, "--no-progress"])
        wall_s = time.perf_counter() - start
    compiling_s = sum(seconds.values())
    print("| wall s | compiling s | share | trace s (n) | lower s (n) | XLA compile s (n) |")
    print("|---|---|---|---|---|---|")
    parts = " | ".join(f"{seconds[name]:.1f} ({counts[name]})" for name in EVENTS.values())
    print(f"| {wall_s:.0f} | {compiling_s:.0f} | {compiling_s / wall_s:.0%} | {parts} |")


if __name__ == "__main__":
    main()
