"""Integrators as factories of pure step functions (ASE units: Å, eV, amu; time in ASE units).

``force_fn(positions_a) -> (energy_ev, forces_ev_per_a)``; every step maps an MDState to the next.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from ase import units


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["positions_a", "momenta", "forces_ev_per_a", "energy_ev", "key"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class MDState:
    """positions [N, 3] Å; momenta [N, 3] amu·Å per ASE time unit; forces [N, 3] eV/Å; energy eV."""

    positions_a: jax.Array
    momenta: jax.Array
    forces_ev_per_a: jax.Array
    energy_ev: jax.Array
    key: jax.Array


def _kick(state: MDState, dt: float) -> MDState:
    return dataclasses.replace(state, momenta=state.momenta + dt * state.forces_ev_per_a)


def _drift(state: MDState, masses_amu, dt: float) -> MDState:
    return dataclasses.replace(state, positions_a=state.positions_a + dt * state.momenta / masses_amu[:, None])


def _recompute_forces(state: MDState, force_fn) -> MDState:
    energy, forces = force_fn(state.positions_a)
    return dataclasses.replace(state, energy_ev=energy, forces_ev_per_a=forces)


def velocity_verlet(force_fn, masses_amu, dt_fs: float):
    """NVE: half kick, drift, new forces, half kick."""
    dt = dt_fs * units.fs

    def step(state: MDState) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), masses_amu, dt)
        return _kick(_recompute_forces(state, force_fn), 0.5 * dt)

    return step


def langevin_baoab(force_fn, masses_amu, dt_fs: float, temperature_k: float, friction_per_fs: float):
    """NVT Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews 2013).

    The O step damps the momenta by exp(−γ dt) and adds noise that keeps ⟨p²/m⟩ = k_B T.
    """
    dt = dt_fs * units.fs
    damping = jnp.exp(-friction_per_fs * dt_fs)
    noise_scale = jnp.sqrt((1 - damping**2) * units.kB * temperature_k * masses_amu)[:, None]  # [N, 1]

    def thermostat(state: MDState) -> MDState:
        key, noise_key = jax.random.split(state.key)
        noise = jax.random.normal(noise_key, state.momenta.shape, state.momenta.dtype)
        return dataclasses.replace(state, momenta=damping * state.momenta + noise_scale * noise, key=key)

    def step(state: MDState) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), masses_amu, 0.5 * dt)
        state = _drift(thermostat(state), masses_amu, 0.5 * dt)
        return _kick(_recompute_forces(state, force_fn), 0.5 * dt)

    return step


def kinetic_energy_ev(momenta, masses_amu):
    return 0.5 * jnp.sum(momenta**2 / masses_amu[:, None])


def temperature_k(kinetic_energy_ev, degrees_of_freedom: int):
    """Instantaneous temperature 2 E_kin / (n_dof k_B)."""
    return 2 * kinetic_energy_ev / (degrees_of_freedom * units.kB)
