"""Chunked MD driver: jit-compiled ``lax.scan`` chunks; neighbour lists rebuilt between chunks, or inside them
on the device in large periodic cells.

One driver runs R replicas of a structure (seeds × temperatures) as one ``vmap``-ed program; a single
run is the case R = 1 (squeezed, not vmapped: XLA on CPU runs size-1 batches of gathers slowly).
"""

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
from mlpkit.md.integrators import (
    MDState, kinetic_energy_ev, langevin_baoab, nose_hoover_chain, nose_hoover_energy_ev, temperature_k, velocity_verlet,
)
from mlpkit.md.stability import Failure, StabilityLimits, first_failure
from mlpkit.members import over_members
from mlpkit.neighbors import (
    ROW_PADDING, CellGrid, Neighbors, build_neighbors, cell_grid, device_neighbors, edge_vectors, padded_width, safe_norm,
)
from mlpkit.potentials import Potential, compiled_evaluator, energy_forces_stress

THERMOSTATS = ("langevin", "nose-hoover")
# only non-finite energies and runaway atoms stop a run without a monitor
NO_LIMITS = StabilityLimits(np.inf, 0.0, 0.0, np.inf, None)


class MDError(MlpkitError, RuntimeError):
    """An MD run that cannot continue correctly."""


class MDInstability(MDError):
    """The stability monitor stopped a run; ``failure`` says at which step and why."""

    def __init__(self, failure: Failure):
        super().__init__(f"the run has blown up at step {failure.step} ({failure.time_fs:.0f} fs): {failure.reason}")
        self.failure = failure


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """MD settings. ``temperature_k=None`` runs NVE (velocity Verlet); a temperature runs NVT with the
    ``thermostat``: ``"langevin"`` (BAOAB, friction ``friction_per_fs``) or ``"nose-hoover"`` (a chain of
    ``chain_length`` with time constant ``thermostat_time_fs``)."""

    dt_fs: float = 1.0
    temperature_k: float | None = None
    thermostat: str = "langevin"
    friction_per_fs: float = 0.01
    thermostat_time_fs: float = 100.0
    chain_length: int = 3
    skin_a: float = 1.0
    chunk_steps: int = 20
    float64: bool = True

    def __post_init__(self):
        if self.thermostat not in THERMOSTATS:
            raise MlpkitError(f"unknown thermostat {self.thermostat!r}; choose one of {list(THERMOSTATS)}")
        if not (0 < self.dt_fs < np.inf and self.chunk_steps >= 1 and 0 < self.skin_a < np.inf and 1 <= self.chain_length <= 8):
            raise MlpkitError(f"MD settings out of range: dt_fs={self.dt_fs}, chunk_steps={self.chunk_steps}, "
                              f"skin_a={self.skin_a}, chain_length={self.chain_length} (1 … 8)")
        if self.temperature_k is not None and not 0 < self.temperature_k < np.inf:
            raise MlpkitError(f"temperature_k must be a positive finite number of kelvin, got {self.temperature_k}")

    def degrees_of_freedom(self, n_atoms: int) -> int:
        """3N, less the 3 of the centre of mass where the dynamics conserve the total momentum."""
        return 3 * n_atoms - (0 if self.temperature_k is not None and self.thermostat == "langevin" else 3)


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Everything a run needs to continue bit for bit: the state and the neighbour list's origin."""

    step: int
    state: MDState  # host arrays
    reference_a: np.ndarray  # positions the neighbour list was built from
    skin_a: float
    capacity: int


@dataclasses.dataclass(frozen=True)
class MDFrame:
    """The state after a chunk, with per-step traces of that chunk ([S] arrays) and end-of-chunk observables."""

    step: int
    positions_a: np.ndarray
    momenta: np.ndarray
    forces_ev_per_a: np.ndarray
    stress_ev_per_a3: np.ndarray  # [3, 3] the potential's (configurational) stress, ASE sign: tensile positive
    potential_energy_ev: np.ndarray
    kinetic_energy_ev: np.ndarray
    temperature_k: np.ndarray
    conserved_energy_ev: np.ndarray  # E_pot + E_kin, plus the chain's energy under Nosé–Hoover
    min_distance_a: np.ndarray
    pressure_gpa: float
    ensemble_spread_ev_per_a: float  # largest per-atom std of the members' forces; 0 for one model
    resume: ResumePoint


def maxwell_boltzmann_momenta(masses_amu, temperature_k: float, rng: np.random.Generator) -> np.ndarray:
    """Momenta drawn at ``temperature_k`` with the centre-of-mass motion removed, [N, 3]."""
    momenta = rng.normal(size=(len(masses_amu), 3)) * np.sqrt(masses_amu * units.kB * temperature_k)[:, None]
    velocity_com = momenta.sum(axis=0) / masses_amu.sum()
    return momenta - masses_amu[:, None] * velocity_com


def _step_fn(config: MDConfig, force_fn, masses_amu, temperature_k, degrees_of_freedom: int):
    if config.temperature_k is None:
        return velocity_verlet(force_fn, masses_amu, config.dt_fs)
    if config.thermostat == "langevin":
        return langevin_baoab(force_fn, masses_amu, config.dt_fs, temperature_k, config.friction_per_fs)
    return nose_hoover_chain(force_fn, masses_amu, config.dt_fs, temperature_k, config.thermostat_time_fs, degrees_of_freedom)


def _min_distance_a(positions_a, cell_a, neighbors: Neighbors):
    distances = safe_norm(edge_vectors(positions_a, cell_a, neighbors), neighbors.mask, fill=jnp.inf)
    return jnp.min(distances)


@functools.lru_cache(maxsize=16)  # bounded: each entry holds a compiled program and its potential's parameters
def _chunk_fn(potential: Potential, config: MDConfig, degrees_of_freedom: int, grid: CellGrid | None):
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


def initial_state(potential: Potential, atoms: Atoms, config: MDConfig, seed: int, start_k: float) -> MDState:
    """The state at step 0: ``atoms``' momenta if it has any, else Maxwell–Boltzmann at ``start_k``."""
    dtype = np.float64 if config.float64 else np.float32
    masses = np.asarray(atoms.get_masses(), dtype)
    momenta = atoms.get_momenta()
    if not momenta.any():
        momenta = maxwell_boltzmann_momenta(masses, start_k, np.random.default_rng(seed))
    positions, cell = np.asarray(atoms.positions, dtype), np.asarray(atoms.cell.array, dtype)
    neighbors = build_neighbors(positions, cell, atoms.pbc, potential.cutoff_a)
    with jax.enable_x64(config.float64):
        energy, forces, stress = jax.device_get(compiled_evaluator(potential)(positions, cell, atoms.numbers, neighbors))
        key = np.asarray(jax.random.key_data(jax.random.key(seed)))
    chain_length = config.chain_length if config.temperature_k is not None and config.thermostat == "nose-hoover" else 0
    return MDState(positions_a=positions, momenta=np.asarray(momenta, dtype), forces_ev_per_a=forces, energy_ev=energy,
                   stress_ev_per_a3=stress, key=key, chain=np.zeros((2, chain_length), dtype))


def _stack(items):
    return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *items)


def _select(mask, new, old):
    """Per replica: ``new`` where ``mask``, else ``old`` (leading axis R)."""
    return jax.tree_util.tree_map(lambda a, b: np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _pressure_gpa(state: MDState, kinetic_ev, cell_a, pbc) -> np.ndarray:
    """P = (2 E_kin / 3 − V tr σ / 3) / V; ASE's σ is tensile positive. [R]; NaN without a periodic cell."""
    if not np.all(pbc):
        return np.full(np.shape(kinetic_ev), np.nan)
    volume_a3 = abs(np.linalg.det(cell_a))
    trace = np.trace(state.stress_ev_per_a3, axis1=-2, axis2=-1)
    return (2 * kinetic_ev / 3 / volume_a3 - trace / 3) / units.GPa


def simulate(
    potential: Potential,
    atoms: Atoms,
    n_chunks: int,
    config: MDConfig,
    temperatures_k: np.ndarray,
    resume: list[ResumePoint],
    limits: StabilityLimits,
    progress: bool = True,
) -> Iterator[tuple[list[MDFrame | None], list[Failure | None]]]:
    """Advance R replicas by ``n_chunks`` chunks from their resume points; yield after each chunk the
    frames of the replicas still running (None for a replica that has failed) and the failures so far.

    A chunk in which an atom outran half the skin is recomputed with a fresh list (and, if even that is
    outrun, a wider skin), so results never depend on a stale list. A failed replica stops where the
    monitor caught it: its last good state is kept and nothing after it is reported.

    Lists come from the k-d tree on the host between chunks, except in cells at least three list cutoffs
    wide and periodic in every direction: there a cell list on the device builds them, and a single run
    (R = 1) rebuilds inside the chunk whenever it must, so long runs never wait on the host.
    """
    potential.check_species(atoms.numbers)
    dtype = np.float64 if config.float64 else np.float32
    masses, cell, species = np.asarray(atoms.get_masses(), dtype), np.asarray(atoms.cell.array, dtype), np.asarray(atoms.numbers)
    n_dof = config.degrees_of_freedom(len(atoms))
    dynamics = dataclasses.replace(config, temperature_k=None if config.temperature_k is None else 1.0)
    temperatures = np.asarray(temperatures_k, dtype)
    state = _stack([point.state for point in resume])
    reference = np.stack([point.reference_a for point in resume]).astype(dtype)
    skin_a = max(point.skin_a for point in resume)
    capacity = max(point.capacity for point in resume)
    per_bin = 0  # raised when a chunk's rebuild overfills a bin
    step = resume[0].step
    failures: list[Failure | None] = [None] * len(resume)

    def lists(reference_a) -> tuple[CellGrid | None, Neighbors]:
        """Lists at the replicas' ``reference_a`` [R, N, 3] on the device (copied once per build, not with
        every chunk), and the cell list that built them (None: the k-d tree did). Widens ``capacity``."""
        nonlocal capacity
        cutoff_a = potential.cutoff_a + skin_a
        grid = cell_grid(cell, atoms.pbc, cutoff_a, reference_a)
        if grid is None:
            built = [build_neighbors(r, cell, atoms.pbc, cutoff_a, capacity=capacity) for r in reference_a]
            capacity = max(n.capacity for n in built)
            return None, jax.device_put(_stack([build_neighbors(r, cell, atoms.pbc, cutoff_a, capacity=capacity)
                                                if n.capacity != capacity else n for r, n in zip(reference_a, built)]))
        grid, width = dataclasses.replace(grid, per_bin=max(grid.per_bin, per_bin)), max(capacity, ROW_PADDING)
        while True:
            with jax.enable_x64(config.float64):
                neighbors, needed = _device_lists(reference_a, cell, cutoff_a, grid, width)
            rows, fullest = np.asarray(needed).max(axis=0)
            if rows <= width and fullest <= grid.per_bin:
                capacity = width
                return grid, neighbors
            width, grid = max(width, padded_width(int(rows))), dataclasses.replace(grid, per_bin=max(grid.per_bin, int(fullest)))

    grid, neighbors = lists(reference)
    bar = tqdm(total=n_chunks * config.chunk_steps, unit="step", disable=not progress, desc="MD")
    for _ in range(n_chunks):
        active = np.array([failure is None for failure in failures])
        if not active.any():
            break
        fresh = np.array_equal(reference, state.positions_a)  # lists built from this chunk's start
        while True:
            chunk_grid = grid if len(resume) == 1 else None  # vmapped replicas would rebuild at every step
            chunk = _chunk_fn(potential, dynamics, n_dof, chunk_grid)
            with jax.enable_x64(config.float64):  # switched on only around the computation, never across a yield
                new_state, traces, spread, end_neighbors, end_reference, needed = chunk(
                    state, masses, cell, species, neighbors, reference, temperatures, skin_a)
                new_state, traces, spread, end_reference, needed = jax.device_get(
                    (new_state, traces, spread, end_reference, needed))
            rows, fullest = needed.max(axis=0)
            if chunk_grid and (rows > capacity or fullest > chunk_grid.per_bin):  # a rebuild in the chunk overflowed
                capacity, per_bin = max(capacity, padded_width(int(rows))), max(per_bin, int(fullest) + 2)
                grid, neighbors = lists(reference)
                continue
            outrun = active & (traces["moved_a"].max(axis=1) > 0.5 * skin_a)
            if not outrun.any():
                break
            if fresh:  # even a fresh list was outrun: widen the skin
                skin_a *= 1.5
                if skin_a > potential.cutoff_a:  # atoms cross a bond length within one chunk
                    for r in np.flatnonzero(outrun):
                        moved = traces["moved_a"][r].max()
                        failures[r] = Failure(step + 1, (step + 1) * config.dt_fs,
                                              f"an atom moved {moved:.2f} Å within {config.chunk_steps} steps")
                    active &= ~outrun
                    skin_a /= 1.5
                    break
            reference, fresh = np.asarray(state.positions_a), True
            grid, neighbors = lists(reference)
        n_atoms = len(atoms)
        for r in np.flatnonzero(active):
            replica = {key: value[r] for key, value in traces.items()}
            replica["temperature_k"] = np.asarray(temperature_k(replica["kinetic_energy_ev"], n_dof))
            reference_k = temperatures[r]
            failures[r] = first_failure(replica, limits, step + 1, config.dt_fs, n_atoms, float(reference_k),
                                        float(state.energy_ev[r]), float(spread[r]))
        good = active & np.array([failure is None for failure in failures])
        state = _select(good, new_state, state)
        step += config.chunk_steps
        bar.update(config.chunk_steps)
        if chunk_grid and good.all():
            neighbors, reference = end_neighbors, end_reference
        elif (good & (traces["moved_a"].max(axis=1) > 0.25 * skin_a)).any():  # rebuild early rather than recompute
            reference = np.asarray(state.positions_a)
            grid, neighbors = lists(reference)
        kinetic = traces["kinetic_energy_ev"]
        pressure = _pressure_gpa(state, kinetic[:, -1], cell, atoms.pbc)
        frames = [
            _frame(step, jax.tree_util.tree_map(lambda leaf: leaf[r], state), {k: v[r] for k, v in traces.items()},
                   n_dof, float(pressure[r]), float(spread[r]),
                   ResumePoint(step, jax.tree_util.tree_map(lambda leaf: leaf[r], state), reference[r], skin_a, capacity))
            if good[r] else None
            for r in range(len(resume))
        ]
        yield frames, list(failures)
    bar.close()


def _frame(step: int, state: MDState, traces: dict, n_dof: int, pressure_gpa: float, spread: float, resume: ResumePoint) -> MDFrame:
    as64 = functools.partial(np.asarray, dtype=np.float64)
    return MDFrame(
        step=step,
        positions_a=as64(state.positions_a),
        momenta=as64(state.momenta),
        forces_ev_per_a=as64(state.forces_ev_per_a),
        stress_ev_per_a3=as64(state.stress_ev_per_a3),
        potential_energy_ev=as64(traces["potential_energy_ev"]),
        kinetic_energy_ev=as64(traces["kinetic_energy_ev"]),
        temperature_k=as64(temperature_k(traces["kinetic_energy_ev"], n_dof)),
        conserved_energy_ev=as64(traces["conserved_energy_ev"]),
        min_distance_a=as64(traces["min_distance_a"]),
        pressure_gpa=pressure_gpa,
        ensemble_spread_ev_per_a=spread,
        resume=resume,
    )


@functools.partial(jax.jit, static_argnums=(3, 4))
def _device_lists(reference_a, cell_a, cutoff_a, grid: CellGrid, capacity: int):
    """:func:`device_neighbors` for each replica's ``reference_a`` [R, N, 3]."""
    return jax.vmap(lambda positions_a: device_neighbors(positions_a, cell_a, cutoff_a, grid, capacity))(reference_a)


def start(potential: Potential, atoms: Atoms, config: MDConfig, seed: int, start_k: float) -> ResumePoint:
    """The resume point of a fresh run (step 0)."""
    state = initial_state(potential, atoms, config, seed, start_k)
    return ResumePoint(0, state, np.asarray(state.positions_a), config.skin_a, 0)


def checked_start_temperature(start_k: float) -> float:
    """``start_k`` if it can seed Maxwell–Boltzmann momenta (finite, ≥ 0 K); else a clear error, not NaN momenta."""
    if not 0 <= start_k < np.inf:
        raise MlpkitError(f"the starting temperature must be a finite number of kelvin ≥ 0, got {start_k}")
    return start_k


def run_md(
    potential: Potential,
    atoms: Atoms,
    n_chunks: int,
    config: MDConfig = MDConfig(),
    seed: int = 0,
    initial_temperature_k: float | None = None,
    progress: bool = True,
    limits: StabilityLimits | None = StabilityLimits(),
    resume: ResumePoint | None = None,
) -> Iterator[MDFrame]:
    """Run ``n_chunks × config.chunk_steps`` steps from ``atoms`` (or from ``resume``, a frame's
    ``resume`` point), yielding a frame after each chunk.

    Starting momenta come from ``atoms`` if it has any, else from a Maxwell–Boltzmann draw at
    ``initial_temperature_k`` (default: the thermostat temperature, or 0 K for NVE). The stability
    monitor (``limits``; None checks only for non-finite energies) raises :class:`MDInstability` at the
    first chunk with a failed step; every frame yielded before it is good.
    """
    start_k = initial_temperature_k if initial_temperature_k is not None else (config.temperature_k or 0.0)
    if atoms.get_momenta().any():  # the structure brings its own velocities, and so its temperature
        start_k = float(temperature_k(kinetic_energy_ev(atoms.get_momenta(), atoms.get_masses()), config.degrees_of_freedom(len(atoms))))
    point = resume or start(potential, atoms, config, seed, checked_start_temperature(start_k))
    reference_k = config.temperature_k if config.temperature_k is not None else start_k
    for frames, failures in simulate(potential, atoms, n_chunks, config, np.array([reference_k]), [point],
                                     limits or NO_LIMITS, progress):
        if failures[0] is not None:
            raise MDInstability(failures[0])
        yield frames[0]
