"""Molecular dynamics: integrators over explicit arrays, a chunked neighbour-list-aware driver, the
stability monitor, replicas, the stability map of a study, and trajectory output that a run can resume from."""

from mlpkit.md.integrators import MDState, langevin_baoab, nose_hoover_chain, velocity_verlet
from mlpkit.md.output import RunFolder
from mlpkit.md.replicas import run_replicas, stability_summary
from mlpkit.md.run import MDConfig, MDError, MDFrame, MDInstability, ResumePoint, THERMOSTATS, run_md
from mlpkit.md.sampling import sample_configurations
from mlpkit.md.stability import Failure, StabilityLimits, first_failure
from mlpkit.md.stability_grid import STABILITY_COLUMNS, MapSettings, stability_map

__all__ = [
    "MDState",
    "langevin_baoab",
    "nose_hoover_chain",
    "velocity_verlet",
    "MDConfig",
    "MDError",
    "MDFrame",
    "MDInstability",
    "ResumePoint",
    "RunFolder",
    "THERMOSTATS",
    "run_md",
    "run_replicas",
    "stability_summary",
    "sample_configurations",
    "Failure",
    "StabilityLimits",
    "first_failure",
    "STABILITY_COLUMNS",
    "MapSettings",
    "stability_map",
]
