"""Chunked MD driver: jit-compiled ``lax.scan`` chunks (:mod:`mlpkit.md.chunk`); neighbour lists rebuilt between
chunks, or inside them on the device in large periodic cells.

One driver runs R replicas of a structure (seeds × temperatures) as one ``vmap``-ed program; a single
run is the case R = 1 (squeezed, not vmapped: XLA on CPU runs size-1 batches of gathers slowly).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import jax
import numpy as np
from ase import Atoms, units
from tqdm.auto import tqdm

from mlpkit.cell import cell_volume_a3
from mlpkit.errors import MlpkitError
from mlpkit.md.chunk import ChunkOutput, ListState, Outcome, chunk_outcome, chunk_runner, outran_half_skin
from mlpkit.md.integrators import MDState, kinetic_energy_ev, temperature_k
from mlpkit.md.stability import Failure, StabilityLimits, first_failure
from mlpkit.neighbors import ROW_PADDING, CellGrid, Neighbors, build_neighbors, cell_grid, device_neighbors, padded_width
from mlpkit.potentials import Potential, compiled_evaluator

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
    volume_a3 = cell_volume_a3(cell_a)
    trace = np.trace(state.stress_ev_per_a3, axis1=-2, axis2=-1)
    return (2 * kinetic_ev / 3 / volume_a3 - trace / 3) / units.GPa


def _list_builder(cutoff_a: float, cell_a, pbc, float64: bool):
    """``build(reference_a, skin_a, capacity, per_bin) -> ListState``: lists of ``cutoff_a + skin_a`` at
    ``reference_a`` [R, N, 3], from a device cell list where the cell allows one, else from the k-d tree;
    ``capacity`` and ``per_bin`` are floors, raised to whatever the positions need."""

    def build(reference_a, skin_a: float, capacity: int, per_bin: int) -> ListState:
        list_cutoff_a = cutoff_a + skin_a
        grid = cell_grid(cell_a, pbc, list_cutoff_a, reference_a)
        if grid is None:
            neighbors, capacity = _host_lists(reference_a, cell_a, pbc, list_cutoff_a, capacity)
            return ListState(skin_a, capacity, per_bin, reference_a, None, neighbors)
        grid = dataclasses.replace(grid, per_bin=max(grid.per_bin, per_bin))
        with jax.enable_x64(float64):
            grid, neighbors, capacity = _fitted_device_lists(reference_a, cell_a, list_cutoff_a, grid, max(capacity, ROW_PADDING))
        return ListState(skin_a, capacity, per_bin, reference_a, grid, neighbors)

    return build


def _host_lists(reference_a, cell_a, pbc, list_cutoff_a: float, capacity: int) -> tuple[Neighbors, int]:
    """k-d tree lists at each replica's ``reference_a``, copied to the device once per build (not with every
    chunk), in one row width: the widest any replica needs, at least ``capacity``."""
    built = [build_neighbors(r, cell_a, pbc, list_cutoff_a, capacity=capacity) for r in reference_a]
    width = max(neighbors.capacity for neighbors in built)
    even = [neighbors if neighbors.capacity == width else build_neighbors(r, cell_a, pbc, list_cutoff_a, capacity=width)
            for r, neighbors in zip(reference_a, built)]
    return jax.device_put(_stack(even)), width


def _fitted_device_lists(reference_a, cell_a, list_cutoff_a: float, grid: CellGrid, width: int) -> tuple[CellGrid, Neighbors, int]:
    """Device lists at ``reference_a`` [R, N, 3], built again with wider rows and deeper bins until they fit."""
    while True:
        neighbors, needed = _device_lists(reference_a, cell_a, list_cutoff_a, grid, width)
        rows, fullest = np.asarray(needed).max(axis=0)
        if rows <= width and fullest <= grid.per_bin:
            return grid, neighbors, width
        width, grid = max(width, padded_width(int(rows))), dataclasses.replace(grid, per_bin=max(grid.per_bin, int(fullest)))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _device_lists(reference_a, cell_a, cutoff_a, grid: CellGrid, capacity: int):
    """:func:`device_neighbors` for each replica's ``reference_a`` [R, N, 3]."""
    return jax.vmap(lambda positions_a: device_neighbors(positions_a, cell_a, cutoff_a, grid, capacity))(reference_a)


def _rebuilt_lists(build, lists: ListState, positions_a, skin_a: float) -> ListState:
    """``lists`` built afresh at ``positions_a`` [R, N, 3] with ``skin_a``, keeping their room."""
    return build(np.asarray(positions_a), skin_a, lists.capacity, lists.per_bin)


def _widened_lists(build, lists: ListState, needed) -> ListState:
    """``lists`` built again at their reference with room for the ``needed`` [R, 2] row and bin counts that
    overflowed a rebuild inside a chunk; two atoms spare per bin."""
    rows, fullest = needed.max(axis=0)
    capacity, per_bin = max(lists.capacity, padded_width(int(rows))), max(lists.per_bin, int(fullest) + 2)
    return build(lists.reference_a, lists.skin_a, capacity, per_bin)


def _settled_chunk(run, build, state: MDState, lists: ListState, active, cutoff_a: float):
    """The chunk from ``state``, run again with adjusted lists until its results stand: wider ones after an
    overflow; after an outrun ones built at ``state``, with a skin 1.5 times wider if even those were outrun.

    Returns the chunk's output, the lists it ran with, and the replicas [R] that outran a fresh list whose
    skin cannot widen without passing the cutoff (atoms cross a bond length within one chunk); the other
    replicas' results stand.
    """
    fresh = np.array_equal(lists.reference_a, state.positions_a)  # lists built from this chunk's start
    while True:
        output = run(state, lists)
        outcome = chunk_outcome(output, lists, active)
        if outcome is Outcome.DONE:
            return output, lists, np.zeros_like(active)
        if outcome is Outcome.OVERFLOWED:
            lists = _widened_lists(build, lists, output.needed)
        elif fresh and lists.skin_a * 1.5 > cutoff_a:  # atoms cross a bond length within one chunk
            # (skin·1.5)/1.5 can be a last bit off the skin: kept, so that earlier runs' numbers hold
            unwidened = dataclasses.replace(lists, skin_a=lists.skin_a * 1.5 / 1.5)
            return output, unwidened, outran_half_skin(output, lists, active)
        else:
            skin_a = lists.skin_a * 1.5 if fresh else lists.skin_a  # widened where even lists from the start were outrun
            lists, fresh = _rebuilt_lists(build, lists, state.positions_a, skin_a), True


def _next_lists(build, lists: ListState, output: ChunkOutput, kept, state: MDState) -> ListState:
    """The lists for the next chunk: those the chunk ended with if it rebuilt them itself and every replica
    was ``kept`` [R]; else built at ``state`` once a kept replica moved past a quarter of the skin (rebuilt
    early rather than the next chunk recomputed); else ``lists``."""
    if output.rebuilt_inside and kept.all():
        return dataclasses.replace(lists, reference_a=output.end_reference_a, neighbors=output.end_neighbors)
    if (kept & (output.traces["moved_a"].max(axis=1) > 0.25 * lists.skin_a)).any():
        return _rebuilt_lists(build, lists, state.positions_a, lists.skin_a)
    return lists


def _stability_judge(limits: StabilityLimits, config: MDConfig, n_atoms: int, n_dof: int, temperatures_k):
    """``judge(failures, active, outran, output, start_state, step) -> failures``: the replicas' failures
    [R] after a chunk from ``step``; those that ``outran`` any skin fail, the other ``active`` ones face
    the monitor."""

    def judge(failures, active, outran, output: ChunkOutput, start_state: MDState, step: int) -> list[Failure | None]:
        failures = list(failures)
        for r in np.flatnonzero(outran):
            moved = output.traces["moved_a"][r].max()
            steps = f"step {step + 1}" if config.chunk_steps == 1 else f"steps {step + 1}–{step + config.chunk_steps}"
            failures[r] = Failure(step + 1, (step + 1) * config.dt_fs, f"an atom moved {moved:.2f} Å in {steps}")
        for r in np.flatnonzero(active & ~outran):
            replica = {key: value[r] for key, value in output.traces.items()}
            replica["temperature_k"] = np.asarray(temperature_k(replica["kinetic_energy_ev"], n_dof))
            failures[r] = first_failure(replica, limits, step + 1, config.dt_fs, n_atoms, float(temperatures_k[r]),
                                        float(start_state.energy_ev[r]), float(output.spread_ev_per_a[r]))
        return failures

    return judge


def _frames(step: int, state: MDState, output: ChunkOutput, lists: ListState, kept, n_dof: int, cell_a, pbc) -> list[MDFrame | None]:
    """The frame of each ``kept`` replica after a chunk, None for the others."""
    pressure = _pressure_gpa(state, output.traces["kinetic_energy_ev"][:, -1], cell_a, pbc)
    return [_frame(step, r, state, output, lists, n_dof, float(pressure[r])) if kept[r] else None for r in range(len(kept))]


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
    n_dof, temperatures = config.degrees_of_freedom(len(atoms)), np.asarray(temperatures_k, dtype)
    build = _list_builder(potential.cutoff_a, cell, atoms.pbc, config.float64)
    run = chunk_runner(potential, config, masses, cell, species, temperatures, n_dof, single=len(resume) == 1)
    judge = _stability_judge(limits, config, len(atoms), n_dof, temperatures)
    state = _stack([point.state for point in resume])
    reference = np.stack([point.reference_a for point in resume]).astype(dtype)
    lists = build(reference, max(point.skin_a for point in resume), max(point.capacity for point in resume), 0)
    step, failures = resume[0].step, [None] * len(resume)
    bar = tqdm(total=n_chunks * config.chunk_steps, unit="step", disable=not progress, desc="MD")
    for _ in range(n_chunks):
        active = np.array([failure is None for failure in failures])
        if not active.any():
            break
        output, lists, outran = _settled_chunk(run, build, state, lists, active, potential.cutoff_a)
        failures = judge(failures, active, outran, output, state, step)
        kept = active & np.array([failure is None for failure in failures])
        state, step = _select(kept, output.state, state), step + config.chunk_steps
        bar.update(config.chunk_steps)
        lists = _next_lists(build, lists, output, kept, state)
        yield _frames(step, state, output, lists, kept, n_dof, cell, atoms.pbc), list(failures)
    bar.close()


def _frame(step: int, r: int, state: MDState, output: ChunkOutput, lists: ListState, n_dof: int, pressure_gpa: float) -> MDFrame:
    """Replica ``r``'s frame, with its resume point."""
    as64 = functools.partial(np.asarray, dtype=np.float64)
    replica = jax.tree_util.tree_map(lambda leaf: leaf[r], state)
    traces = {key: value[r] for key, value in output.traces.items()}
    return MDFrame(
        step=step,
        positions_a=as64(replica.positions_a),
        momenta=as64(replica.momenta),
        forces_ev_per_a=as64(replica.forces_ev_per_a),
        stress_ev_per_a3=as64(replica.stress_ev_per_a3),
        potential_energy_ev=as64(traces["potential_energy_ev"]),
        kinetic_energy_ev=as64(traces["kinetic_energy_ev"]),
        temperature_k=as64(temperature_k(traces["kinetic_energy_ev"], n_dof)),
        conserved_energy_ev=as64(traces["conserved_energy_ev"]),
        min_distance_a=as64(traces["min_distance_a"]),
        pressure_gpa=pressure_gpa,
        ensemble_spread_ev_per_a=float(output.spread_ev_per_a[r]),
        resume=ResumePoint(step, replica, lists.reference_a[r], lists.skin_a, lists.capacity),
    )


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
