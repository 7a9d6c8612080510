"""The one loss and the error metrics, computed on a padded :class:`~mlpkit.training.batches.Batch`.

Loss = w_E ⟨(ΔE / N)²⟩ + w_F ⟨ΔF²⟩ + w_V ⟨(ΔW / N)²⟩ over real frames and atoms, with ΔW = Δσ · V the
virial error (eV), so that all three terms are in eV² per atom or eV²/Å² per force component.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from ase import units
import jax.numpy as jnp
import numpy as np

from mlpkit.cell import cell_volume_a3, voigt_from_tensor
from mlpkit.errors import MlpkitError
from mlpkit.potentials.base import energy_forces_stress
from mlpkit.training.batches import Batch

GPA_PER_EV_PER_A3 = 1 / units.GPa


@dataclasses.dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0
    forces: float = 1.0
    virial: float = 0.1

    def __post_init__(self):
        values = dataclasses.asdict(self)
        if not all(0 <= value < math.inf for value in values.values()) or not any(values.values()):
            raise MlpkitError(f"invalid loss weights {values}: each must be finite and ≥ 0 (a negative weight rewards "
                              "the error it weighs), and one > 0")


def predict_batch(energy_fn, params, batch: Batch):
    """(E [B] eV, F [B, N, 3] eV/Å, σ [B, 6] eV/Å³ Voigt) of one parameter set on every frame of ``batch``."""

    def one(positions_a, cell_a, species, neighbors):
        return energy_forces_stress(lambda *args: energy_fn(params, *args))(positions_a, cell_a, species, neighbors)

    energy, forces, stress = jax.vmap(one)(batch.positions_a, batch.cell_a, batch.species, batch.neighbors)
    return energy, forces, voigt_from_tensor(stress)


def _errors(prediction, batch: Batch):
    energy, forces, stress = prediction
    frames = batch.n_atoms > 0
    n_atoms = jnp.maximum(batch.n_atoms, 1).astype(energy.dtype)
    atom_mask = batch.species > 0
    energy_error = jnp.where(frames, (energy - batch.energy_ev) / n_atoms, 0.0)  # [B] eV/atom
    force_error = jnp.where(atom_mask[..., None], forces - batch.forces_ev_per_a, 0.0)  # [B, N, 3]
    stressed = frames & batch.has_stress
    stress_error = jnp.where(stressed[:, None], stress - batch.stress_ev_per_a3, 0.0)  # [B, 6] eV/Å³
    return energy_error, force_error, stress_error


def batch_loss(prediction, batch: Batch, weights: LossWeights):
    energy_error, force_error, stress_error = _errors(prediction, batch)
    n_frames = jnp.maximum(jnp.sum(batch.n_atoms > 0), 1)
    n_components = jnp.maximum(3 * jnp.sum(batch.n_atoms), 1)
    n_stressed = jnp.maximum(jnp.sum((batch.n_atoms > 0) & batch.has_stress), 1)
    volume_per_atom = cell_volume_a3(batch.cell_a, jnp) / jnp.maximum(batch.n_atoms, 1)  # [B] Å³
    virial_error = stress_error * volume_per_atom[:, None]  # [B, 6] eV per atom
    return (
        weights.energy * jnp.sum(energy_error**2) / n_frames
        + weights.forces * jnp.sum(force_error**2) / n_components
        + weights.virial * jnp.sum(virial_error**2) / (6 * n_stressed)
    )


def error_sums(prediction, batch: Batch) -> dict:
    """Sums of absolute and squared errors and their counts; add over batches, then :func:`metrics_from_sums`."""
    energy_error, force_error, stress_error = _errors(prediction, batch)
    stressed = (batch.n_atoms > 0) & batch.has_stress
    return {
        "energy_abs": jnp.sum(jnp.abs(energy_error)), "energy_sq": jnp.sum(energy_error**2),
        "energy_n": jnp.sum(batch.n_atoms > 0),
        "force_abs": jnp.sum(jnp.abs(force_error)), "force_sq": jnp.sum(force_error**2),
        "force_n": 3 * jnp.sum(batch.n_atoms),
        "stress_abs": jnp.sum(jnp.abs(stress_error)), "stress_sq": jnp.sum(stress_error**2),
        "stress_n": 6 * jnp.sum(stressed),
    }


def metrics_from_sums(sums: dict) -> dict:
    """Energy MAE/RMSE in meV/atom, force MAE/RMSE per component in eV/Å, stress MAE/RMSE in GPa (NaN if none)."""
    def mean(key, count):
        n = float(sums[count])
        return float(sums[key]) / n if n else float("nan")

    return {
        "energy_mae_mev_per_atom": 1000 * mean("energy_abs", "energy_n"),
        "energy_rmse_mev_per_atom": 1000 * np.sqrt(mean("energy_sq", "energy_n")),
        "force_mae_ev_per_a": mean("force_abs", "force_n"),
        "force_rmse_ev_per_a": np.sqrt(mean("force_sq", "force_n")),
        "stress_mae_gpa": GPA_PER_EV_PER_A3 * mean("stress_abs", "stress_n"),
        "stress_rmse_gpa": GPA_PER_EV_PER_A3 * np.sqrt(mean("stress_sq", "stress_n")),
    }


def weighted_validation_loss(metrics: dict, weights: LossWeights) -> float:
    """The energy and force terms of the loss from validation ``metrics`` (:func:`metrics_from_sums`): what
    a late stage with ``weights`` minimises, so that it can choose its best state by its own objective."""
    energy_rmse_ev = metrics["energy_rmse_mev_per_atom"] / 1000
    return weights.energy * energy_rmse_ev**2 + weights.forces * metrics["force_rmse_ev_per_a"] ** 2
