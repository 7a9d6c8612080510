"""Many replicas (temperatures × seeds) of one structure run as one vmapped program, and the
stability table they give: the fraction of runs that stay physical for ``duration_fs`` and the mean
time to failure."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from ase import Atoms

from mlpkit.md.run import MDConfig, simulate, start
from mlpkit.md.stability import StabilityLimits
from mlpkit.potentials import Potential


def run_replicas(
    potential: Potential,
    atoms: Atoms,
    temperatures_k,
    seeds,
    duration_fs: float,
    config: MDConfig = MDConfig(temperature_k=300.0),
    limits: StabilityLimits = StabilityLimits(),
    progress: bool = True,
) -> list[dict]:
    """One row per (temperature, seed): ``temperature_k``, ``seed``, ``stable``, ``time_to_failure_fs``
    (``duration_fs`` when stable) and ``reason`` ("" when stable).

    Under NVT (``config.temperature_k`` set; its value is replaced by each replica's) each replica is
    thermostatted at its temperature; under NVE it starts from a Maxwell–Boltzmann draw at it.
    """
    pairs = [(float(t), int(s)) for t in temperatures_k for s in seeds]
    points = [start(potential, atoms, _at(config, t), s, t) for t, s in pairs]
    n_chunks = math.ceil(duration_fs / (config.dt_fs * config.chunk_steps))
    failures = [None] * len(pairs)
    for _, failures in simulate(potential, atoms, n_chunks, config, np.array([t for t, _ in pairs]), points, limits, progress):
        pass
    # the last chunk may reach past duration_fs: a failure there came after the time asked about
    failures = [f if f is not None and f.time_fs <= duration_fs else None for f in failures]
    return [
        {"temperature_k": t, "seed": s, "stable": failure is None,
         "time_to_failure_fs": duration_fs if failure is None else failure.time_fs,
         "reason": "" if failure is None else failure.reason}
        for (t, s), failure in zip(pairs, failures)
    ]


def _at(config: MDConfig, temperature_k: float) -> MDConfig:
    return config if config.temperature_k is None else dataclasses.replace(config, temperature_k=temperature_k)


def stability_summary(rows: list[dict]) -> list[dict]:
    """Per temperature: ``runs``, ``fraction_stable`` and ``mean_time_to_failure_fs`` (stable runs count
    their full duration, so the mean is a lower bound when some survive)."""
    summary = []
    for temperature in sorted({row["temperature_k"] for row in rows}):
        group = [row for row in rows if row["temperature_k"] == temperature]
        summary.append({
            "temperature_k": temperature,
            "runs": len(group),
            "fraction_stable": float(np.mean([row["stable"] for row in group])),
            "mean_time_to_failure_fs": float(np.mean([row["time_to_failure_fs"] for row in group])),
        })
    return summary
