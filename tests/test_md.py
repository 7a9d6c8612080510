"""MD: energy conservation (NVE), the Langevin thermostat's temperature, neighbour-list rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

from mlpkit.md import MDConfig, run_md, sample_configurations
from mlpkit.potentials import sw_potential
from mlpkit.structures import diamond


def concatenated(frames, field):
    return np.concatenate([getattr(frame, field) for frame in frames])


def test_nve_conserves_energy_with_second_order_error_through_list_rebuilds():
    """Superheated crystal (~2150 K): atoms move past half the 1 Å skin, so the list is rebuilt.

    Velocity Verlet's energy fluctuation scales as dt²: halving dt must cut it about fourfold.
    """
    atoms = diamond("Si")
    fluctuation = {}
    for dt_fs in (1.0, 0.5):
        frames = list(run_md(sw_potential("Si"), atoms, 100, MDConfig(dt_fs=dt_fs), seed=0, initial_temperature_k=5000, progress=False))
        total = concatenated(frames, "potential_energy_ev") + concatenated(frames, "kinetic_energy_ev")
        fluctuation[dt_fs] = np.ptp(total) / len(atoms)
        assert np.linalg.norm(frames[-1].positions_a - atoms.positions, axis=1).max() > 0.5
        assert concatenated(frames, "temperature_k").mean() == pytest.approx(2150, rel=0.1)  # equipartition: ~T0/2
    assert fluctuation[1.0] < 1e-3  # eV/atom over 2000 steps
    assert 0.15 < fluctuation[0.5] / fluctuation[1.0] < 0.4


def test_langevin_reaches_the_target_temperature():
    target_k = 900.0
    frames = list(run_md(sw_potential("Ge"), diamond("Ge"), 250, MDConfig(temperature_k=target_k), seed=1, progress=False))
    temperature = concatenated(frames, "temperature_k")[1000:]  # after 10 relaxation times 1/γ
    # canonical ensemble, 3N degrees of freedom: σ_T = T·sqrt(2/3N) ≈ 0.10 T; ~40 blocks of 100 fs → ±2 %
    assert temperature.mean() == pytest.approx(target_k, rel=0.05)
    assert temperature.std() == pytest.approx(target_k * np.sqrt(2 / (3 * 64)), rel=0.25)


def test_a_thin_skin_is_rebuilt_and_widened_without_changing_the_trajectory():
    """A 0.2 Å skin is outrun within a 20-step chunk at 1200 K: chunks are recomputed, the result is not."""
    runs = {
        skin: list(run_md(sw_potential("Si"), diamond("Si"), 10, MDConfig(skin_a=skin, chunk_steps=20), seed=3,
                          initial_temperature_k=2400, progress=False))
        for skin in (0.2, 1.0)
    }
    assert np.abs(runs[0.2][-1].positions_a - runs[1.0][-1].positions_a).max() < 1e-9
    assert np.abs(runs[0.2][-1].positions_a - diamond("Si").positions).max() > 0.2


def test_a_blown_up_run_stops_with_a_clear_error():
    from mlpkit.md import MDError

    with pytest.raises(MDError, match="blown up"):
        list(run_md(sw_potential("Si"), diamond("Si"), 50, MDConfig(dt_fs=15.0), seed=0, initial_temperature_k=3000, progress=False))


def test_same_seed_gives_the_same_trajectory():
    runs = [list(run_md(sw_potential("Si"), diamond("Si"), 3, MDConfig(temperature_k=500), seed=7, progress=False)) for _ in range(2)]
    assert np.array_equal(runs[0][-1].positions_a, runs[1][-1].positions_a)
    other = list(run_md(sw_potential("Si"), diamond("Si"), 3, MDConfig(temperature_k=500), seed=8, progress=False))
    assert not np.array_equal(runs[0][-1].positions_a, other[-1].positions_a)


def test_sampling_returns_wrapped_decorrelated_snapshots_of_a_hot_liquid():
    snapshots = sample_configurations(
        sw_potential("Si"), diamond("Si"), 3374.0, 3, seed=2, interval_fs=200, equilibration_fs=1000, progress=False
    )
    assert len(snapshots) == 3
    for snapshot in snapshots:
        fractional = snapshot.get_scaled_positions(wrap=False)
        assert fractional.min() >= 0 and fractional.max() < 1
        assert snapshot.info["temperature_k"] == 3374.0
    step_a = np.linalg.norm(snapshots[1].positions - snapshots[0].positions, axis=1)
    assert np.median(step_a) > 0.5  # a liquid: atoms move far between snapshots


def test_interval_must_be_whole_steps():
    with pytest.raises(ValueError, match="whole number"):
        sample_configurations(sw_potential("Si"), diamond("Si"), 300.0, 1, seed=0, interval_fs=2.5, dt_fs=1.0)
