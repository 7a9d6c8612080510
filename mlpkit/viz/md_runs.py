"""MD work for the panels: several potentials side by side, live plots and view, unstable runs caught.

A learned potential can be wrong far from its training data: atoms fall into holes of its energy
surface and collapse onto each other, or energy pours in and the run heats up. MD's stability monitor
(:class:`~mlpkit.md.StabilityLimits`) names such a state; ``compare_md`` records it for the run that
reached it and carries on with the others.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlpkit.calculator import SWCalculator
from mlpkit.md import MDConfig, MDError, StabilityLimits, run_md
from mlpkit.potentials import Potential
from mlpkit.viz.figures import record_md_frame
from mlpkit.viz.jobs import Job


def force_error_per_atom(atoms: Atoms, positions_a, forces_ev_per_a, element: str) -> np.ndarray:
    """|F_model − F_SW| per atom (eV/Å) at ``positions_a``: where the model disagrees with the truth."""
    snapshot = atoms.copy()
    snapshot.positions = positions_a
    snapshot.calc = SWCalculator(element)
    return np.linalg.norm(np.asarray(forces_ev_per_a) - snapshot.get_forces(), axis=1)


def compare_md(potentials: dict[str, Potential], atoms: Atoms, config: MDConfig, n_chunks: int, figure, job: Job,
               view=None, watch: str | None = None, element: str | None = None, seed: int = 0, keep_frames: bool = False,
               start_k: float | None = None, limits: StabilityLimits = StabilityLimits()) -> dict[str, dict]:
    """Run every potential from the same start, a chunk each in turn, plotting T and energies as they come.

    ``view`` (a :class:`~mlpkit.viz.structure.StructureView`) follows the run named ``watch``, its atoms
    coloured by their force error against SW ``element`` when given. ``start_k``: the temperature of the
    starting velocities (default: the thermostat's); ``limits`` those of the stability monitor. Returns per run: ``chunks`` done,
    ``instability`` (None if it stayed physical), its ``last`` frame and, with ``keep_frames``, all its ``frames``.
    """
    runs = {name: run_md(potential, atoms, n_chunks, config, seed=seed, initial_temperature_k=start_k, progress=False,
                   limits=limits)
            for name, potential in potentials.items()}
    outcome = {name: {"chunks": 0, "instability": None, "last": None, "frames": []} for name in potentials}
    while runs and not job.stop_requested:
        for name, frames in list(runs.items()):
            if job.stop_requested:
                break
            try:
                frame = next(frames)
            except StopIteration:
                del runs[name]
                continue
            except MDError as error:  # the monitor stopped the run: every frame before was good
                outcome[name]["instability"] = str(error)
                job.report(f"{name}: caught — {error}")
                del runs[name]
                continue
            record_md_frame(figure, name, frame, len(atoms), config.dt_fs)
            outcome[name].update(chunks=outcome[name]["chunks"] + 1, last=frame)
            if keep_frames:
                outcome[name]["frames"].append(frame)
            if view is not None and name == watch:
                errors = force_error_per_atom(atoms, frame.positions_a, frame.forces_ev_per_a, element) if element else None
                view.update(frame.positions_a, errors, note=f"{name}, {frame.step * config.dt_fs / 1000:.2f} ps")
            job.report(f"{name}: {frame.step} steps, T = {frame.temperature_k[-1]:.0f} K")
    return outcome
