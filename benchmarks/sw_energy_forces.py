"""SW energy + forces: mlpkit against jax-md's neighbour-list Stillinger–Weber, in one run.

    python benchmarks/sw_energy_forces.py [--sizes 64 512 4096] [--repeats 20] [--smoke]

Both run float32 on the same rattled diamond Si cell, jit-compiled and warmed up; times are medians
(and min–max) of ``--repeats`` calls. mlpkit also returns the stress in the same call; jax-md does not.
The neighbour-list columns time the host-side mlpkit build and jax-md's on-device update.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import jax
import numpy as np

from mlpkit.neighbors import build_neighbors
from mlpkit.potentials import compiled_evaluator, sw_potential
from mlpkit.structures import diamond, rattled


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) wall time of ``fn()`` in ms, after one warm-up call."""
    jax.block_until_ready(fn())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(1e3 * (time.perf_counter() - start))
    return statistics.median(samples), min(samples), max(samples)


def structure(n_atoms: int):
    side = round((n_atoms / 8) ** (1 / 3))
    if 8 * side**3 != n_atoms:
        raise SystemExit(f"{n_atoms} atoms is not a cubic diamond supercell (8·k³)")
    return rattled(diamond("Si", (side,) * 3), 0.05, seed=0)


def bench_mlpkit(atoms, repeats):
    potential = sw_potential("Si")
    positions = np.asarray(atoms.positions, np.float32)
    cell = np.asarray(atoms.cell.array, np.float32)
    build = lambda: build_neighbors(atoms.positions, atoms.cell.array, atoms.pbc, potential.cutoff_a)
    neighbors = build()
    evaluate = compiled_evaluator(potential)
    energy = float(evaluate(positions, cell, atoms.numbers, neighbors)[0])
    return energy, timed(lambda: evaluate(positions, cell, atoms.numbers, neighbors), repeats), timed(build, max(3, repeats // 4))


def bench_jax_md(atoms, repeats):
    from jax_md import energy as jmd_energy
    from jax_md import space

    box = float(atoms.cell.array[0, 0])
    displacement, _ = space.periodic(box)
    neighbor_fn, energy_fn = jmd_energy.stillinger_weber_neighbor_list(displacement, box, epsilon=2.1683, cutoff=1.8 * 2.0951)
    positions = jax.numpy.asarray(atoms.positions, np.float32)
    neighbors = neighbor_fn.allocate(positions)
    energy_and_forces = jax.jit(jax.value_and_grad(energy_fn))
    energy = float(energy_and_forces(positions, neighbors)[0])
    update = jax.jit(lambda r, nbrs: nbrs.update(r))
    return energy, timed(lambda: energy_and_forces(positions, neighbors), repeats), timed(lambda: update(positions, neighbors), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="64 atoms, 3 repeats: checks the script runs")
    args = parser.parse_args()
    sizes, repeats = ([64], 3) if args.smoke else (args.sizes, args.repeats)

    warnings.filterwarnings("ignore", message="Explicitly requested dtype")  # jax-md asks for float64 under float32
    device = jax.devices()[0]
    print(f"machine: {cpu_name()}, {len(jax.devices())} × {device.platform} ({device.device_kind}), jax {jax.__version__}")
    print("| atoms | mlpkit E+F+σ ms (min–max) | jax-md E+F ms (min–max) | jax-md / mlpkit | mlpkit NL build ms | jax-md NL update ms | ΔE/E |")
    print("|---|---|---|---|---|---|---|")
    for n_atoms in sizes:
        atoms = structure(n_atoms)
        e_ours, ours, build = bench_mlpkit(atoms, repeats)
        e_ref, ref, update = bench_jax_md(atoms, repeats)
        print(
            f"| {n_atoms} | {ours[0]:.2f} ({ours[1]:.2f}–{ours[2]:.2f}) | {ref[0]:.2f} ({ref[1]:.2f}–{ref[2]:.2f}) "
            f"| {ref[0] / ours[0]:.2f} | {build[0]:.1f} | {update[0]:.2f} | {abs(e_ours - e_ref) / abs(e_ref):.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
