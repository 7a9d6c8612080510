"""An MD run written to a folder: ``thermo.csv``, ``trajectory.extxyz`` and a resume state.

After every chunk the thermo row and the frame are appended and flushed, then ``state.npz`` (an mlpkit
archive, :func:`~mlpkit.fileio.archive_bytes`) is replaced atomically; it records the state and how many
bytes of each file belong to it. A run killed at any moment therefore resumes from its last chunk:
:meth:`RunFolder.resume_point` cuts both files back to the recorded lengths and hands back the resume point, and the
continued run is bit-identical.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.errors import MlpkitError
from mlpkit.fileio import archive_bytes, read_archive, write_bytes_atomic
from mlpkit.md.integrators import MDState
from mlpkit.md.run import MDFrame, ResumePoint
from mlpkit.cell import voigt_from_tensor

THERMO_COLUMNS = (
    "step", "time_fs", "temperature_k", "potential_energy_ev", "kinetic_energy_ev", "total_energy_ev",
    "conserved_energy_ev", "pressure_gpa", "max_force_ev_per_a", "min_distance_a", "ensemble_spread_ev_per_a",
)
FORMAT_VERSION = 1  # of state.npz
STATE_FIELDS = ("positions_a", "momenta", "forces_ev_per_a", "energy_ev", "stress_ev_per_a3", "key", "chain")


def thermo_row(frame: MDFrame, dt_fs: float) -> dict[str, float]:
    """The thermo log's values at the end of a chunk (eV, K, GPa, Å)."""
    potential, kinetic = frame.potential_energy_ev[-1], frame.kinetic_energy_ev[-1]
    return {
        "step": frame.step,
        "time_fs": frame.step * dt_fs,
        "temperature_k": frame.temperature_k[-1],
        "potential_energy_ev": potential,
        "kinetic_energy_ev": kinetic,
        "total_energy_ev": potential + kinetic,
        "conserved_energy_ev": frame.conserved_energy_ev[-1],
        "pressure_gpa": frame.pressure_gpa,
        "max_force_ev_per_a": float(np.linalg.norm(frame.forces_ev_per_a, axis=1).max()),
        "min_distance_a": float(frame.min_distance_a.min()),
        "ensemble_spread_ev_per_a": frame.ensemble_spread_ev_per_a,
    }


def frame_atoms(atoms: Atoms, frame: MDFrame, with_forces: bool) -> Atoms:
    """``atoms`` at ``frame``: positions, momenta, and the potential energy (forces if asked, the potential's
    stress in a periodic cell) as results."""
    snapshot = atoms.copy()
    snapshot.positions = frame.positions_a
    snapshot.set_momenta(frame.momenta)
    snapshot.info["step"] = frame.step
    results = {"energy": float(frame.potential_energy_ev[-1])}
    if with_forces:
        results["forces"] = frame.forces_ev_per_a
    if atoms.pbc.all():
        results["stress"] = voigt_from_tensor(frame.stress_ev_per_a3)
    snapshot.calc = SinglePointCalculator(snapshot, **results)
    return snapshot


class RunFolder:
    """Appends chunks to ``folder``'s thermo log and trajectory and keeps its resume state current."""

    def __init__(self, folder, atoms: Atoms, settings: dict, dt_fs: float, with_forces: bool = False):
        self.folder = Path(folder)
        self.atoms = atoms
        self.settings = settings
        self.dt_fs = dt_fs
        self.with_forces = with_forces

    @property
    def thermo_path(self) -> Path:
        return self.folder / "thermo.csv"

    @property
    def trajectory_path(self) -> Path:
        return self.folder / "trajectory.extxyz"

    @property
    def state_path(self) -> Path:
        return self.folder / "state.npz"

    def start(self) -> None:
        """Begin a fresh run: an empty trajectory and a thermo log with its header."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trajectory_path.write_bytes(b"")
        self.thermo_path.write_text(",".join(THERMO_COLUMNS) + "\n")

    def append(self, frame: MDFrame) -> None:
        """Write one chunk: thermo row and frame, flushed to disk, then the resume state."""
        row = thermo_row(frame, self.dt_fs)
        text = io.StringIO()
        ase.io.write(text, frame_atoms(self.atoms, frame, self.with_forces), format="extxyz")
        for path, payload in ((self.thermo_path, ",".join(f"{row[c]:.10g}" for c in THERMO_COLUMNS) + "\n"),
                              (self.trajectory_path, text.getvalue())):
            with open(path, "a") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
        self._save_state(frame.resume)

    def _save_state(self, point: ResumePoint) -> None:
        arrays = {f"state/{name}": getattr(point.state, name) for name in STATE_FIELDS}
        arrays["reference_a"] = point.reference_a
        meta = {
            "settings": self.settings, "step": point.step, "skin_a": point.skin_a, "capacity": point.capacity,
            "bytes": {"thermo": self.thermo_path.stat().st_size, "trajectory": self.trajectory_path.stat().st_size},
        }
        write_bytes_atomic(self.state_path, archive_bytes(meta, arrays, FORMAT_VERSION))

    def resume_point(self) -> ResumePoint | None:
        """The last finished chunk of an earlier run with the same settings (files cut back to it), or None."""
        if not self.state_path.exists():
            return None
        try:
            meta, stored = read_archive(self.state_path, "MD resume state", FORMAT_VERSION)
            state = MDState(**{name: stored[f"state/{name}"] for name in STATE_FIELDS})
            reference = stored["reference_a"]
        except MlpkitError as error:
            raise MlpkitError(f"{error}; delete it to start afresh") from None
        except KeyError as error:
            raise MlpkitError(f"{self.state_path}: MD resume state without {error}; delete it to start afresh") from None
        if meta["settings"] != self.settings:
            changed = sorted(k for k in set(meta["settings"]) | set(self.settings)
                             if meta["settings"].get(k) != self.settings.get(k))
            raise MlpkitError(f"{self.folder} holds a run with other settings ({', '.join(changed)}); "
                              "choose another --out or delete the folder")
        for path, size in ((self.thermo_path, meta["bytes"]["thermo"]), (self.trajectory_path, meta["bytes"]["trajectory"])):
            if not path.exists() or path.stat().st_size < size:
                raise MlpkitError(f"{path} is shorter than its resume state records; delete {self.folder} to start afresh")
            with open(path, "r+b") as stream:  # drop whatever a killed run wrote after its last state
                stream.truncate(size)
        return ResumePoint(meta["step"], state, reference, meta["skin_a"], meta["capacity"])
