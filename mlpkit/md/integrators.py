"""Integrators as factories of pure step functions (ASE units: Å, eV, amu; time in ASE units).

``force_fn(positions_a) -> (energy_ev, forces_ev_per_a, stress_ev_per_a3)``; every step maps an
MDState to the next.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from ase import units


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["positions_a", "momenta", "forces_ev_per_a", "energy_ev", "stress_ev_per_a3", "key", "chain"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class MDState:
    """positions [N, 3] Å; momenta [N, 3] amu·Å per ASE time unit; forces [N, 3] eV/Å; potential energy
    eV; configurational stress [3, 3] eV/Å³ (ASE sign: tensile positive); ``chain`` [2, M]: the
    Nosé–Hoover chain's positions (row 0, dimensionless) and velocities (row 1, per ASE time unit),
    [2, 0] for the other integrators."""

    positions_a: jax.Array
    momenta: jax.Array
    forces_ev_per_a: jax.Array
    energy_ev: jax.Array
    stress_ev_per_a3: jax.Array
    key: jax.Array
    chain: jax.Array


def _kick(state: MDState, dt: float) -> MDState:
    return dataclasses.replace(state, momenta=state.momenta + dt * state.forces_ev_per_a)


def _drift(state: MDState, masses_amu, dt: float) -> MDState:
    return dataclasses.replace(state, positions_a=state.positions_a + dt * state.momenta / masses_amu[:, None])


def _recompute_forces(state: MDState, force_fn) -> MDState:
    energy, forces, stress = force_fn(state.positions_a)
    return dataclasses.replace(state, energy_ev=energy, forces_ev_per_a=forces, stress_ev_per_a3=stress)


def velocity_verlet(force_fn, masses_amu, dt_fs: float):
    """NVE: half kick, drift, new forces, half kick."""
    dt = dt_fs * units.fs

    def step(state: MDState) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), masses_amu, dt)
        return _kick(_recompute_forces(state, force_fn), 0.5 * dt)

    return step


def langevin_baoab(force_fn, masses_amu, dt_fs: float, temperature_k, friction_per_fs: float):
    """NVT Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews 2013).

    The O step damps the momenta by exp(−γ dt) and adds noise that keeps ⟨p²/m⟩ = k_B T.
    ``temperature_k`` may be a traced scalar (one compiled program serves every temperature).
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


def nose_hoover_chain(force_fn, masses_amu, dt_fs: float, temperature_k, time_constant_fs: float, degrees_of_freedom: int):
    """NVT with a Nosé–Hoover chain (Martyna, Klein & Tuckerman 1992): velocity Verlet between two
    half-step chain updates. Deterministic; the chain of length M = ``state.chain.shape[1]`` relaxes
    the temperature on ``time_constant_fs`` and conserves :func:`nose_hoover_energy_ev`.
    """
    dt = dt_fs * units.fs
    kt_ev = units.kB * temperature_k
    masses = chain_masses(kt_ev, time_constant_fs, degrees_of_freedom)  # eV·(ASE time)²
    verlet = velocity_verlet(force_fn, masses_amu, dt_fs)

    def forcing(kinetic_x2, velocities, j):
        """G_j: the generalised force on chain link j (per ASE time unit²)."""
        if j == 0:
            return (kinetic_x2 - degrees_of_freedom * kt_ev) / masses[0]
        return (masses[j - 1] * velocities[j - 1] ** 2 - kt_ev) / masses[j]

    def half_step(state: MDState) -> MDState:
        quarter, half = 0.25 * dt, 0.5 * dt
        positions, velocities = state.chain[0], state.chain[1]
        kinetic_x2 = 2 * kinetic_energy_ev(state.momenta, masses_amu)
        m = velocities.shape[0]

        def link(velocities, j):  # v_j ← (v_j e^{−v_{j+1} dt/8} + G_j dt/4) e^{−v_{j+1} dt/8}
            damping = jnp.exp(-0.5 * quarter * velocities[j + 1]) if j + 1 < m else 1.0
            value = (velocities[j] * damping + quarter * forcing(kinetic_x2, velocities, j)) * damping
            return velocities.at[j].set(value)

        for j in reversed(range(m)):
            velocities = link(velocities, j)
        scale = jnp.exp(-half * velocities[0])
        kinetic_x2 = kinetic_x2 * scale**2
        positions = positions + half * velocities
        for j in range(m):
            velocities = link(velocities, j)
        return dataclasses.replace(state, momenta=state.momenta * scale, chain=jnp.stack([positions, velocities]))

    def step(state: MDState) -> MDState:
        return half_step(verlet(half_step(state)))

    return step


def chain_masses(kt_ev, time_constant_fs: float, degrees_of_freedom: int):
    """Chain masses Q_1 = N_f k_B T τ², Q_j = k_B T τ² (j > 1), for a chain of length ≤ 8."""
    tau = time_constant_fs * units.fs
    return kt_ev * tau**2 * jnp.array([degrees_of_freedom] + [1] * 7, dtype=jnp.result_type(float))


def nose_hoover_energy_ev(state: MDState, masses_amu, temperature_k, time_constant_fs: float, degrees_of_freedom: int):
    """The quantity a Nosé–Hoover chain conserves: E_pot + E_kin + Σ Q_j v_j²/2 + N_f k_B T ξ_1 + k_B T Σ_{j>1} ξ_j."""
    kt_ev = units.kB * temperature_k
    positions, velocities = state.chain[0], state.chain[1]
    masses = chain_masses(kt_ev, time_constant_fs, degrees_of_freedom)[: velocities.shape[0]]
    coupling = kt_ev * (degrees_of_freedom * positions[0] + jnp.sum(positions[1:]))
    return state.energy_ev + kinetic_energy_ev(state.momenta, masses_amu) + 0.5 * jnp.sum(masses * velocities**2) + coupling


def kinetic_energy_ev(momenta, masses_amu):
    return 0.5 * jnp.sum(momenta**2 / masses_amu[:, None])


def temperature_k(kinetic_energy_ev, degrees_of_freedom: int):
    """Instantaneous temperature 2 E_kin / (n_dof k_B)."""
    return 2 * kinetic_energy_ev / (degrees_of_freedom * units.kB)
