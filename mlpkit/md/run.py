"""Chunked MD driver: jit-compiled ``lax.scan`` chunks, neighbour lists rebuilt between chunks."""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms, units
from tqdm.auto import tqdm

from mlpkit.errors import MlpkitError
from mlpkit.md.integrators import MDState, kinetic_energy_ev, langevin_baoab, temperature_k, velocity_verlet
from mlpkit.neighbors import Neighbors, build_neighbors
from mlpkit.potentials import Potential, compiled_evaluator, energy_forces_stress


class MDError(MlpkitError, RuntimeError):
    """An MD run that cannot continue correctly."""


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """MD settings. ``temperature_k=None`` runs NVE; a temperature runs Langevin NVT."""

    dt_fs: float = 1.0
    temperature_k: float | None = None
    friction_per_fs: float = 0.01
    skin_a: float = 1.0
    chunk_steps: int = 20
    float64: bool = True


@dataclasses.dataclass(frozen=True)
class MDFrame:
    """The state after a chunk, with per-step energies of that chunk (eV) and temperatures (K)."""

    step: int
    positions_a: np.ndarray
    momenta: np.ndarray
    forces_ev_per_a: np.ndarray
    potential_energy_ev: np.ndarray
    kinetic_energy_ev: np.ndarray
    temperature_k: np.ndarray


def maxwell_boltzmann_momenta(masses_amu, temperature_k: float, rng: np.random.Generator) -> np.ndarray:
    """Momenta drawn at ``temperature_k`` with the centre-of-mass motion removed, [N, 3]."""
    momenta = rng.normal(size=(len(masses_amu), 3)) * np.sqrt(masses_amu * units.kB * temperature_k)[:, None]
    velocity_com = momenta.sum(axis=0) / masses_amu.sum()
    return momenta - masses_amu[:, None] * velocity_com


@functools.cache
def _chunk_fn(potential: Potential, config: MDConfig):
    """One compiled chunk of ``config.chunk_steps`` steps per (potential, settings)."""
    evaluate = energy_forces_stress(potential.energy_fn)

    def chunk(state: MDState, masses_amu, cell_a, species, neighbors: Neighbors, reference_a):
        def force_fn(positions_a):
            energy, forces, _ = evaluate(positions_a, cell_a, species, neighbors)
            return energy, forces

        if config.temperature_k is None:
            step = velocity_verlet(force_fn, masses_amu, config.dt_fs)
        else:
            step = langevin_baoab(force_fn, masses_amu, config.dt_fs, config.temperature_k, config.friction_per_fs)

        def body(state, _):
            state = step(state)
            moved = jnp.max(jnp.linalg.norm(state.positions_a - reference_a, axis=-1))
            return state, (state.energy_ev, kinetic_energy_ev(state.momenta, masses_amu), moved)

        state, (potential_ev, kinetic_ev, moved_a) = jax.lax.scan(body, state, None, length=config.chunk_steps)
        return state, potential_ev, kinetic_ev, jnp.max(moved_a)

    return jax.jit(chunk)


def run_md(
    potential: Potential,
    atoms: Atoms,
    n_chunks: int,
    config: MDConfig = MDConfig(),
    seed: int = 0,
    initial_temperature_k: float | None = None,
    progress: bool = True,
) -> Iterator[MDFrame]:
    """Run ``n_chunks × config.chunk_steps`` steps from ``atoms``, yielding a frame after each chunk.

    Starting momenta come from ``atoms`` if it has any, else from a Maxwell–Boltzmann draw at
    ``initial_temperature_k`` (default: the thermostat temperature, or 0 K for NVE). The neighbour
    list carries ``config.skin_a`` of extra range; a chunk in which any atom moved more than half
    the skin is recomputed with a fresh list (and, if even that is outrun, a wider skin), so results
    never depend on a stale list.
    """
    potential.check_species(atoms.numbers)
    dtype = np.float64 if config.float64 else np.float32
    masses = np.asarray(atoms.get_masses(), dtype)
    rng = np.random.default_rng(seed)
    momenta = atoms.get_momenta()
    if not momenta.any():
        start_k = initial_temperature_k if initial_temperature_k is not None else (config.temperature_k or 0.0)
        momenta = maxwell_boltzmann_momenta(masses, start_k, rng)
    cell = np.asarray(atoms.cell.array, dtype)
    species = np.asarray(atoms.numbers)
    # NVE conserves the total momentum (3 constraints); the Langevin noise does not
    degrees_of_freedom = 3 * len(atoms) - (3 if config.temperature_k is None else 0)
    skin_a = config.skin_a

    def fresh_list(positions_a, capacity=None):
        return build_neighbors(positions_a, cell, atoms.pbc, potential.cutoff_a + skin_a, capacity=capacity)

    chunk = _chunk_fn(potential, config)
    positions = np.asarray(atoms.positions, dtype)
    neighbors = fresh_list(positions)
    with jax.enable_x64(config.float64):
        energy, forces, _ = compiled_evaluator(potential)(positions, cell, species, neighbors)
        state = MDState(
            positions_a=positions,
            momenta=np.asarray(momenta, dtype),
            forces_ev_per_a=forces,
            energy_ev=energy,
            key=jax.random.key(seed),
        )
    reference = positions
    bar = tqdm(total=n_chunks * config.chunk_steps, unit="step", disable=not progress, desc="MD")
    for index in range(n_chunks):
        # x64 is switched on only around the computation, never across a yield
        with jax.enable_x64(config.float64):
            result = chunk(state, masses, cell, species, neighbors, reference)
            while float(result[3]) > 0.5 * skin_a:
                if reference is state.positions_a:  # even a fresh list was outrun: widen the skin
                    skin_a *= 1.5
                    if skin_a > potential.cutoff_a:  # atoms cross a bond length within one chunk
                        raise MDError(
                            f"an atom moved {float(result[3]):.2f} Å within {config.chunk_steps} steps "
                            f"(chunk {index}): the run has blown up, or dt_fs is too long"
                        )
                reference = state.positions_a
                neighbors = fresh_list(reference, capacity=neighbors.capacity)
                result = chunk(state, masses, cell, species, neighbors, reference)
            state, potential_ev, kinetic_ev, moved_a = jax.device_get(result)
        if not np.isfinite(potential_ev).all():
            raise MDError(f"the energy became non-finite during chunk {index}; the run has blown up")
        bar.update(config.chunk_steps)
        if moved_a > 0.25 * skin_a:  # rebuild early rather than recompute the next chunk
            reference = state.positions_a
            neighbors = fresh_list(reference, capacity=neighbors.capacity)
        yield MDFrame(
            step=(index + 1) * config.chunk_steps,
            positions_a=np.asarray(state.positions_a, np.float64),
            momenta=np.asarray(state.momenta, np.float64),
            forces_ev_per_a=np.asarray(state.forces_ev_per_a, np.float64),
            potential_energy_ev=np.asarray(potential_ev, np.float64),
            kinetic_energy_ev=np.asarray(kinetic_ev, np.float64),
            temperature_k=np.asarray(temperature_k(kinetic_ev, degrees_of_freedom)),
        )
    bar.close()

