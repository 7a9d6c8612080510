"""The stability monitor: the first step at which an MD run stops being physical, and why.

Each chunk of MD returns per-step traces; :func:`first_failure` scans them on the host, so a failed
run is cut at the last good chunk and no frame after a failure is ever written.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlpkit.errors import MlpkitError


@dataclasses.dataclass(frozen=True)
class StabilityLimits:
    """When a run counts as failed.

    max_temperature_ratio: T above this × the target (NVT) or the starting temperature (NVE);
        at least ``floor_temperature_k`` is allowed, so a run started at 0 K is not failed at 1 K.
    min_distance_a: two atoms closer than this (Si–Si and Ge–Ge bonds are ≈ 2.4 Å).
    max_energy_jump_ev_per_atom: |ΔE_pot| per atom within one step.
    max_spread_ev_per_a: ensemble force disagreement (largest per-atom std across members), checked
        at the end of each chunk; None switches it off.
    """

    max_temperature_ratio: float = 3.0
    floor_temperature_k: float = 300.0
    min_distance_a: float = 1.5
    max_energy_jump_ev_per_atom: float = 0.1
    max_spread_ev_per_a: float | None = 2.0

    def __post_init__(self):
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        bad = [f"{name}={value}" for name, value in values.items() if value is not None and not value >= 0]
        if bad or self.max_spread_ev_per_a == 0:
            raise MlpkitError(f"stability limits must be numbers ≥ 0 (a spread > 0, None to switch it off): "
                              f"{', '.join(bad) or 'max_spread_ev_per_a=0'}")


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed run: the first bad step (counted from the start of the run), its time and the reason."""

    step: int
    time_fs: float
    reason: str


def first_failure(
    traces: dict[str, np.ndarray],
    limits: StabilityLimits,
    first_step: int,
    dt_fs: float,
    n_atoms: int,
    reference_k: float,
    previous_energy_ev: float,
    spread_ev_per_a: float = 0.0,
) -> Failure | None:
    """The first step of a chunk that breaks ``limits``, or None.

    ``traces`` holds per-step arrays [S] of one chunk: ``potential_energy_ev``, ``temperature_k`` and
    ``min_distance_a``; ``first_step`` is the run's step number of the chunk's first step;
    ``previous_energy_ev`` the potential energy before it; ``spread_ev_per_a`` the ensemble spread
    at the chunk's end.
    """
    energy = traces["potential_energy_ev"]
    max_k = limits.max_temperature_ratio * max(reference_k, limits.floor_temperature_k)
    jumps = np.abs(np.diff(energy, prepend=previous_energy_ev)) / n_atoms
    checks = [
        (~np.isfinite(energy) | ~np.isfinite(traces["temperature_k"]), lambda i: "the energy became non-finite"),
        (traces["temperature_k"] > max_k,
         lambda i: f"T = {traces['temperature_k'][i]:.0f} K exceeds {max_k:.0f} K"),
        (traces["min_distance_a"] < limits.min_distance_a,
         lambda i: f"two atoms came within {traces['min_distance_a'][i]:.2f} Å (floor {limits.min_distance_a} Å)"),
        (jumps > limits.max_energy_jump_ev_per_atom,
         lambda i: f"E_pot jumped by {jumps[i]:.3f} eV/atom in one step (limit {limits.max_energy_jump_ev_per_atom})"),
    ]
    failed = [(int(np.argmax(bad)), reason) for bad, reason in checks if bad.any()]
    if failed:
        index, reason = min(failed, key=lambda item: item[0])
        step = first_step + index
        return Failure(step=step, time_fs=step * dt_fs, reason=reason(index))
    if limits.max_spread_ev_per_a is not None and spread_ev_per_a > limits.max_spread_ev_per_a:
        step = first_step + len(energy) - 1
        reason = f"ensemble force spread {spread_ev_per_a:.2f} eV/Å exceeds {limits.max_spread_ev_per_a} eV/Å"
        return Failure(step=step, time_fs=step * dt_fs, reason=reason)
    return None
