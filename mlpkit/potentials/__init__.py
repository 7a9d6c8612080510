"""Potentials: pure energy functions of explicit arrays, and the one transform to forces and stress."""

from mlpkit.potentials.base import Potential, compiled_evaluator, energy_forces_stress
from mlpkit.potentials.sw import SW_PARAMETERS, SWParameters, sw_energy, sw_energy_terms, sw_potential

__all__ = [
    "Potential",
    "compiled_evaluator",
    "energy_forces_stress",
    "SW_PARAMETERS",
    "SWParameters",
    "sw_energy",
    "sw_energy_terms",
    "sw_potential",
]
