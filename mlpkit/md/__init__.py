"""Molecular dynamics: integrators over explicit arrays and a chunked, neighbour-list-aware driver."""

from mlpkit.md.integrators import MDState, langevin_baoab, velocity_verlet
from mlpkit.md.run import MDConfig, MDError, MDFrame, run_md
from mlpkit.md.sampling import sample_configurations

__all__ = [
    "MDState",
    "langevin_baoab",
    "velocity_verlet",
    "MDConfig",
    "MDError",
    "MDFrame",
    "run_md",
    "sample_configurations",
]
