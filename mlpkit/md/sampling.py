"""Configurations sampled by Langevin MD: the "AIMD-like" snapshots of the reference data sets."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlpkit.md.run import MDConfig, run_md
from mlpkit.potentials import Potential


def sample_configurations(
    potential: Potential,
    atoms: Atoms,
    temperature_k: float,
    n_snapshots: int,
    seed: int,
    interval_fs: float = 250.0,
    equilibration_fs: float = 2000.0,
    dt_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    premelt_k: float | None = None,
    progress: bool = True,
) -> list[Atoms]:
    """Snapshots every ``interval_fs`` after ``equilibration_fs`` of Langevin MD at ``temperature_k``.

    The interval is several vibrational periods (Si optical phonon ≈ 64 fs) and the thermostat
    relaxation time 1/γ = 100 fs, so successive snapshots are decorrelated. Each snapshot has its
    positions wrapped into the cell and ``info["temperature_k"]`` set to the target temperature.
    A perfect periodic crystal superheats far above its melting point within picoseconds, so for a
    liquid pass ``premelt_k``: the run then first melts the structure at that temperature for
    ``equilibration_fs`` before equilibrating at ``temperature_k``.
    """
    if premelt_k is not None:
        melt_config = MDConfig(dt_fs=dt_fs, temperature_k=premelt_k, friction_per_fs=friction_per_fs, chunk_steps=10)
        melt_chunks = int(np.ceil(equilibration_fs / dt_fs / melt_config.chunk_steps))
        *_, melted = run_md(potential, atoms, melt_chunks, melt_config, seed=seed, progress=progress, limits=None)
        atoms = atoms.copy()
        atoms.positions = melted.positions_a
        atoms.set_momenta(melted.momenta)
    chunk_steps = _chunk_length(interval_fs, dt_fs)
    config = MDConfig(dt_fs=dt_fs, temperature_k=temperature_k, friction_per_fs=friction_per_fs, chunk_steps=chunk_steps)
    chunks_per_snapshot = round(interval_fs / dt_fs) // chunk_steps
    equilibration_chunks = int(np.ceil(equilibration_fs / dt_fs / chunk_steps))
    n_chunks = equilibration_chunks + n_snapshots * chunks_per_snapshot
    snapshots = []
    for index, frame in enumerate(run_md(potential, atoms, n_chunks, config, seed=seed, progress=progress, limits=None)):
        done = index + 1 - equilibration_chunks
        if done > 0 and done % chunks_per_snapshot == 0:
            snapshot = atoms.copy()
            snapshot.positions = frame.positions_a
            snapshot.wrap()
            snapshot.info["temperature_k"] = float(temperature_k)
            snapshots.append(snapshot)
    return snapshots


def _chunk_length(interval_fs: float, dt_fs: float, longest: int = 10) -> int:
    """The longest chunk (≤ ``longest`` steps) that divides the snapshot interval."""
    steps = round(interval_fs / dt_fs)
    if steps < 1 or abs(steps * dt_fs - interval_fs) > 1e-9:
        raise ValueError(f"interval_fs={interval_fs} must be a whole number of dt_fs={dt_fs} steps")
    return max(n for n in range(1, min(longest, steps) + 1) if steps % n == 0)
