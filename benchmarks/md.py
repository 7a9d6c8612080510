"""MD throughput of mlpkit's potentials and two peer models against jax-md's SW MD, in one run; SW NVE drift.

    python benchmarks/md.py [--sizes 64 512 4096 32768] [--repeats 5] [--potentials NAME ...] [--quick-models] [--smoke]

Every potential runs NVE (velocity Verlet, dt 1 fs, float32 as in production MD on a GPU) from the
same rattled diamond Si cell at 600 K. One timed sample is ``--steps`` steps through the public
``run_md`` (per-step traces, host-side checks and any neighbour-list rebuild included): the second
chunk of a run started from the state after a warm-up chunk that compiles. The table shows the median
(min–max) over ``--repeats`` samples in atom-steps/s and the cost per atom-step, which is flat when
the cost is O(N). mlpkit runs SW, PaiNN, MACE (dense and symmetric products), DimeNet++ and the SchNet-like
baseline (``models.py``, as an mlpkit potential). jax-md's SW and NequIP-small (``jaxmd_nequip.py``) run with
jax-md's on-device neighbour list (skins 0.5 and 0.4 Å: the largest the 64-atom cell allows NequIP), stepped by
``simulate.nve`` in a ``fori_loop`` of the same length.
The models are untrained (random parameters): their cost does not depend on the values. Each potential
runs up to the size in ``LARGEST`` for the platform (2-core CPU: what finishes in minutes; GPU: what fits).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from ase import units

from jaxmd_nequip import nequip_small
from models import SCHNET_CUTOFF_A, schnet_energy
from sw_energy_forces import cpu_name, structure
from mlpkit.checkpoint import Checkpoint
from mlpkit.md import MDConfig, run_md
from mlpkit.models import ModelConfig, init_params
from mlpkit.models.energy import Normalisation
from mlpkit.models.graph import ElementTable
from mlpkit.neighbors import build_neighbors
from mlpkit.potentials import Potential, energy_forces_stress, sw_potential

START_K = 600.0
NEQUIP_SKIN_A = 0.4
# the largest size each potential runs at (a DimeNet++ step on 4096 atoms takes ~6 s on 2 cores; on a GPU
# its [N, M, M] triplet tensors at 32768 atoms would need ~130 GB)
LARGEST = {
    "cpu": {"mlpkit SW": 32768, "mlpkit PaiNN": 32768, "mlpkit MACE": 4096, "mlpkit MACE symmetric": 4096, "SchNet-like": 4096,
            "mlpkit DimeNet++": 512, "jax-md NequIP": 512},
    "gpu": {"mlpkit SW": 32768, "mlpkit PaiNN": 32768, "mlpkit MACE": 32768, "mlpkit MACE symmetric": 32768, "SchNet-like": 32768,
            "mlpkit DimeNet++": 4096, "jax-md NequIP": 4096},
}
KEYS = {"sw": "mlpkit SW", "painn": "mlpkit PaiNN", "mace": "mlpkit MACE", "mace-symmetric": "mlpkit MACE symmetric",
        "schnet": "SchNet-like", "dimenet++": "mlpkit DimeNet++", "nequip": "jax-md NequIP"}


def model_potential(config: ModelConfig, quick: bool = False):
    config = config.quick() if quick else config
    params = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], init_params(config, 1, seed=0))
    return Checkpoint(config, ElementTable(("Si",)), Normalisation((-4.3,), (0.5,)), params).potential()


def mlpkit_rate(potential, atoms, steps: int, repeats: int) -> tuple[list[float], float]:
    """Atom-steps/s of ``repeats`` samples, and the warm-up (compile + first chunk) time in s."""
    config = MDConfig(chunk_steps=steps, float64=False)
    start = time.perf_counter()
    *_, warm = run_md(potential, atoms, 1, config, initial_temperature_k=START_K, progress=False, limits=None)
    warmup_s = time.perf_counter() - start
    samples = []
    for _ in range(repeats):  # each sample starts from the warmed-up state: untrained models drift apart later
        run = run_md(potential, atoms, 2, config, progress=False, limits=None, resume=warm.resume)
        next(run)  # the first chunk of a call also builds the neighbour list: time the second, as in a long run
        start = time.perf_counter()
        next(run)
        samples.append(len(atoms) * steps / (time.perf_counter() - start))
    return samples, warmup_s


def schnet_potential() -> Potential:
    energy, params = schnet_energy(structure(64))
    return Potential("SchNet-like", functools.partial(energy, params), SCHNET_CUTOFF_A, ("Si",))


def jax_md_energy(name: str, atoms):
    """``(neighbor_fn, energy_fn(positions, neighbor=…))`` of jax-md's SW or NequIP-small on ``atoms``."""
    from jax_md import energy, space

    box = float(atoms.cell.array[0, 0])
    if name == "jax-md SW":
        displacement, _ = space.periodic(box)
        return energy.stillinger_weber_neighbor_list(displacement, box, epsilon=2.1683, cutoff=1.8 * 2.0951)
    nequip_energy, params, _, neighbor_fn = nequip_small(atoms, skin_a=NEQUIP_SKIN_A)
    return neighbor_fn, lambda positions, neighbor, **_: nequip_energy(params, positions, neighbor)


def jax_md_rate(name: str, atoms, steps: int, repeats: int) -> list[float]:
    from jax_md import simulate, space

    _, shift = space.periodic(float(atoms.cell.array[0, 0]))
    neighbor_fn, energy_fn = jax_md_energy(name, atoms)
    init, apply = simulate.nve(energy_fn, shift, dt=1.0 * units.fs)
    positions = jnp.asarray(atoms.positions, jnp.float32)
    neighbors = neighbor_fn.allocate(positions)
    state = init(jax.random.key(0), positions, kT=units.kB * START_K, mass=float(atoms.get_masses()[0]), neighbor=neighbors)

    @jax.jit
    def chunk(state, neighbors):
        def body(_, carry):
            state, neighbors = carry
            state = apply(state, neighbor=neighbors)
            return state, neighbors.update(state.position)

        return jax.lax.fori_loop(0, steps, body, (state, neighbors))

    state, neighbors = jax.block_until_ready(chunk(state, neighbors))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, neighbors = jax.block_until_ready(chunk(state, neighbors))
        samples.append(len(atoms) * steps / (time.perf_counter() - start))
    if neighbors.did_buffer_overflow:
        raise SystemExit(f"{name}: jax-md's neighbour list overflowed; the timing is void")
    return samples


def nve_drift(element: str = "Si", duration_ps: float = 10.0) -> tuple[float, float]:
    """SW NVE at dt 1 fs, float64, 64 atoms from 1000 K: the drift (slope) and the fluctuation (std)
    of the total energy, meV/atom per ps and meV/atom."""
    atoms = structure(64)
    config = MDConfig(chunk_steps=100)
    frames = list(run_md(sw_potential(element), atoms, int(duration_ps * 10), config, initial_temperature_k=1000.0, progress=False))
    total = np.concatenate([f.potential_energy_ev + f.kinetic_energy_ev for f in frames]) / len(atoms) * 1e3
    time_ps = np.arange(1, len(total) + 1) * 1e-3
    return float(np.polyfit(time_ps, total, 1)[0]), float(total.std())


def compile_stats(potential, atoms) -> tuple[float, float]:
    """Compile time (s) of the energy + forces + stress program and its scratch memory (MiB), from XLA's
    own memory analysis (comparable on CPU and GPU)."""
    positions, cell = np.float32(atoms.positions), np.float32(atoms.cell.array)
    neighbors = build_neighbors(positions, cell, atoms.pbc, potential.cutoff_a + MDConfig().skin_a)
    lowered = jax.jit(energy_forces_stress(potential.energy_fn)).lower(positions, cell, atoms.numbers, neighbors)
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    return compile_s, (memory.temp_size_in_bytes + memory.output_size_in_bytes) / 2**20 if memory else float("nan")


def formatted(samples: list[float]) -> str:
    return f"{statistics.median(samples):,.0f} ({min(samples):,.0f}–{max(samples):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096, 32768])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed sample (a quarter of it at 32768 atoms on a CPU)")
    parser.add_argument("--potentials", nargs="+", default=list(KEYS), choices=list(KEYS), metavar="NAME",
                        help="which to run beside the jax-md SW baseline (default: all of %(choices)s)")
    parser.add_argument("--smoke", action="store_true", help="64 atoms, 2 repeats: checks the script runs")
    parser.add_argument("--quick-models", action="store_true", help="PaiNN and both MACEs at their quick size (32 features, 2 layers)")
    args = parser.parse_args()
    sizes, repeats, steps = ([64], 2, 20) if args.smoke else (args.sizes, args.repeats, args.steps)
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")

    device = jax.devices()[0]
    largest = LARGEST["cpu" if device.platform == "cpu" else "gpu"]
    print(f"machine: {cpu_name()}, {len(jax.devices())} × {device.platform} ({device.device_kind}), jax {jax.__version__}")
    print("| potential | atoms | atom-steps/s median (min–max) | µs per atom-step | warm-up s | E+F compile s | E+F memory MiB | × jax-md SW |")
    print("|---|---|---|---|---|---|---|---|")
    builders = {"mlpkit SW": lambda: sw_potential("Si"), "SchNet-like": schnet_potential,
                "mlpkit PaiNN": lambda: model_potential(ModelConfig("painn"), args.quick_models or args.smoke),
                "mlpkit MACE": lambda: model_potential(ModelConfig("mace"), args.quick_models),
                "mlpkit MACE symmetric": lambda: model_potential(ModelConfig("mace", product="symmetric"), args.quick_models),
                "mlpkit DimeNet++": lambda: model_potential(ModelConfig("dimenet++"))}
    # DimeNet++ compiles for ~25 s, NequIP for longer: the smoke run leaves them out
    chosen = ["mlpkit SW", "mlpkit PaiNN"] if args.smoke else [KEYS[key] for key in args.potentials]
    potentials = {name: build() for name, build in builders.items() if name in chosen}
    for n_atoms in sizes:
        atoms = structure(n_atoms)
        n_steps = steps if n_atoms < 32768 or device.platform != "cpu" else max(steps // 4, 2)
        baseline = jax_md_rate("jax-md SW", atoms, n_steps, repeats)
        reference = statistics.median(baseline)
        print(f"| jax-md SW | {n_atoms} | {formatted(baseline)} | {1e6 / reference:.2f} | – | – | – | 1.00 |", flush=True)
        for name, potential in potentials.items():
            if n_atoms > largest[name] and not args.smoke:
                continue
            samples, warmup_s = mlpkit_rate(potential, atoms, n_steps, repeats)
            compile_s, memory_mib = compile_stats(potential, atoms)
            rate = statistics.median(samples)
            print(f"| {name} | {n_atoms} | {formatted(samples)} | {1e6 / rate:.2f} | {warmup_s:.1f} | {compile_s:.1f} "
                  f"| {memory_mib:.1f} | {rate / reference:.2f} |", flush=True)
        if "jax-md NequIP" in chosen and n_atoms <= largest["jax-md NequIP"]:
            samples = jax_md_rate("jax-md NequIP", atoms, n_steps, repeats)
            rate = statistics.median(samples)
            print(f"| jax-md NequIP | {n_atoms} | {formatted(samples)} | {1e6 / rate:.2f} | – | – | – | {rate / reference:.2f} |",
                  flush=True)
    if not args.smoke:
        drift, fluctuation = nve_drift()
        print(f"\nSW Si NVE, 64 atoms from 1000 K, dt 1 fs, float64, 10 ps: drift {drift:+.2e} meV/atom/ps, "
              f"fluctuation (std) {fluctuation:.3f} meV/atom")


if __name__ == "__main__":
    main()
