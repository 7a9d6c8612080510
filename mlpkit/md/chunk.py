"""One chunk of MD: ``config.chunk_steps`` steps of R replicas as one compiled ``lax.scan``, the neighbour
lists it runs with, and how it went. ``config`` is the run's :class:`mlpkit.md.run.MDConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase import units

from mlpkit.md.integrators import (
    MDState, kinetic_energy_ev, langevin_baoab, nose_hoover_chain, nose_hoover_energy_ev, velocity_verlet,
)
from mlpkit.members import over_members
from mlpkit.neighbors import CellGrid, Neighbors, device_neighbors, edge_vectors, safe_norm
from mlpkit.potentials import Potential, energy_forces_stress


@dataclasses.dataclass(frozen=True)
class ListState:
    """The replicas' neighbour lists (``neighbors``, on the device) of the cutoff plus ``skin_a``, built at
    ``reference_a`` [R, N, 3] Å with rows ``capacity`` wide; ``grid`` is the device cell list that built
    them, None where the host's k-d tree did. ``per_bin`` is the least room per bin any later build gets,
    raised when a rebuild inside a chunk overfilled a bin."""

    skin_a: float
    capacity: int
    per_bin: int
    reference_a: np.ndarray
    grid: CellGrid | None
    neighbors: Neighbors


def _step_fn(config, force_fn, masses_amu, temperature_k, degrees_of_freedom: int):
    if config.temperature_k is None:
        return velocity_verlet(force_fn, masses_amu, config.dt_fs)
    if config.thermostat == "langevin":
        return langevin_baoab(force_fn, masses_amu, config.dt_fs, temperature_k, config.friction_per_fs)
    return nose_hoover_chain(force_fn, masses_amu, config.dt_fs, temperature_k, config.thermostat_time_fs, degrees_of_freedom)


def _min_distance_a(positions_a, cell_a, neighbors: Neighbors):
    distances = safe_norm(edge_vectors(positions_a, cell_a, neighbors), neighbors.mask, fill=jnp.inf)
    return jnp.min(distances)


@functools.lru_cache(maxsize=16)  # bounded: each entry holds a compiled program and its potential's parameters
def _compiled_chunk(potential: Potential, config, degrees_of_freedom: int, grid: CellGrid | None):
    """One compiled chunk of ``config.chunk_steps`` steps for R replicas (the temperature is an argument).

    With a ``grid``, the chunk rebuilds its neighbour list on the device (:func:`device_neighbors`)
    before any step that could take an atom past half the skin, and returns the list in use at its end
    with the largest row and bin counts met; without one the list is fixed for the chunk.
    """
    evaluate = energy_forces_stress(potential.energy_fn)

    def chunk(state: MDState, masses_amu, cell_a, species, neighbors: Neighbors, reference_a, temperature_k, skin_a):
        def body(carry, _):
            state, neighbors, reference_a, needed = carry
            if grid is not None:  # the next step moves no atom further than twice its present speed allows
                speed = jnp.max(jnp.linalg.norm(state.momenta, axis=-1) / masses_amu)  # Å per ASE time unit
                reach_a = jnp.max(jnp.linalg.norm(state.positions_a - reference_a, axis=-1)) + 2 * config.dt_fs * units.fs * speed
                neighbors, reference_a, needed = jax.lax.cond(
                    reach_a > 0.5 * skin_a, _rebuilt(cell_a, potential.cutoff_a + skin_a, grid),
                    lambda positions_a, *kept: kept, state.positions_a, neighbors, reference_a, needed)
            step = _step_fn(config, lambda positions_a: evaluate(positions_a, cell_a, species, neighbors),
                            masses_amu, temperature_k, degrees_of_freedom)
            state = step(state)
            kinetic = kinetic_energy_ev(state.momenta, masses_amu)
            conserved = state.energy_ev + kinetic
            if config.temperature_k is not None and config.thermostat == "nose-hoover":
                conserved = nose_hoover_energy_ev(state, masses_amu, temperature_k, config.thermostat_time_fs, degrees_of_freedom)
            traces = {
                "potential_energy_ev": state.energy_ev,
                "kinetic_energy_ev": kinetic,
                "conserved_energy_ev": conserved,
                "min_distance_a": _min_distance_a(state.positions_a, cell_a, neighbors),
                "moved_a": jnp.max(jnp.linalg.norm(state.positions_a - reference_a, axis=-1)),
            }
            return (state, neighbors, reference_a, needed), traces

        needed = jnp.zeros(2, jnp.int32)
        (state, neighbors, reference_a, needed), traces = jax.lax.scan(
            body, (state, neighbors, reference_a, needed), None, length=config.chunk_steps)
        spread = jnp.zeros((), state.positions_a.dtype)
        if potential.member_forces_fn is not None:
            members = potential.member_forces_fn(state.positions_a, cell_a, species, neighbors)  # [K, N, 3]
            spread = jnp.max(jnp.linalg.norm(jnp.std(members, axis=0), axis=-1))
        return state, traces, spread, neighbors, reference_a, needed

    return jax.jit(over_members(chunk, (0, None, None, None, 0, 0, 0, None)))


def _rebuilt(cell_a, list_cutoff_a, grid: CellGrid):
    """The branch of the chunk's ``lax.cond`` that rebuilds the list at the present positions."""

    def rebuild(positions_a, neighbors: Neighbors, reference_a, needed):
        fresh, counts = device_neighbors(positions_a, cell_a, list_cutoff_a, grid, neighbors.capacity)
        return fresh, positions_a, jnp.maximum(needed, counts)

    return rebuild


@dataclasses.dataclass(frozen=True)
class ChunkOutput:
    """A chunk's results on the host ([R, …] arrays; traces [R, S]), and the device lists it ended with."""

    state: MDState
    traces: dict
    spread_ev_per_a: np.ndarray  # [R]
    end_neighbors: Neighbors
    end_reference_a: np.ndarray  # [R, N, 3]
    needed: np.ndarray  # [R, 2] the largest row and bin counts its rebuilds met
    rebuilt_inside: bool  # whether the chunk rebuilt its lists on the device as needed


class Outcome(enum.Enum):
    """How a chunk went: its results stand, or a rebuild inside it overflowed its list, or an atom of a
    running replica outran half the skin (so a stale list may have missed pairs)."""

    DONE = "done"
    OVERFLOWED = "overflowed"
    OUTRAN = "outran"


def chunk_runner(potential: Potential, config, masses_amu, cell_a, species, temperatures_k, n_dof: int, single: bool):
    """``run(state, lists) -> ChunkOutput``: one chunk of the R replicas. A ``single`` run (R = 1) with a
    device cell list rebuilds inside the chunk; vmapped replicas would rebuild at every step."""
    dynamics = dataclasses.replace(config, temperature_k=None if config.temperature_k is None else 1.0)

    def run(state: MDState, lists: ListState) -> ChunkOutput:
        grid = lists.grid if single else None
        chunk = _compiled_chunk(potential, dynamics, n_dof, grid)
        with jax.enable_x64(config.float64):  # switched on only around the computation, never across a yield
            end_state, traces, spread, end_neighbors, end_reference, needed = chunk(
                state, masses_amu, cell_a, species, lists.neighbors, lists.reference_a, temperatures_k, lists.skin_a)
            end_state, traces, spread, end_reference, needed = jax.device_get((end_state, traces, spread, end_reference, needed))
        return ChunkOutput(end_state, traces, spread, end_neighbors, end_reference, needed, grid is not None)

    return run


def outran_half_skin(output: ChunkOutput, lists: ListState, active) -> np.ndarray:
    """Per replica [R]: running, and an atom moved past half the skin from the list's reference."""
    return active & (output.traces["moved_a"].max(axis=1) > 0.5 * lists.skin_a)


def chunk_outcome(output: ChunkOutput, lists: ListState, active) -> Outcome:
    """How the chunk that ran with ``lists`` went for the ``active`` replicas [R]; an overflow comes first."""
    rows, fullest = output.needed.max(axis=0)
    if output.rebuilt_inside and (rows > lists.capacity or fullest > lists.grid.per_bin):
        return Outcome.OVERFLOWED
    return Outcome.OUTRAN if outran_half_skin(output, lists, active).any() else Outcome.DONE
