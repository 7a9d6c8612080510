"""MD: energy conservation (NVE), the Langevin thermostat's temperature, neighbour-list rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

import dataclasses

from mlpkit.errors import MlpkitError
from mlpkit.md import MDConfig, MDInstability, StabilityLimits, first_failure, run_md, sample_configurations
from mlpkit.md.output import RunFolder
from mlpkit.md.replicas import run_replicas, stability_summary
from mlpkit.md.run import _device_lists as device_lists, simulate, start
from mlpkit.neighbors import cell_grid
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


def test_lists_rebuilt_on_the_device_inside_chunks_give_the_host_trajectory(monkeypatch):
    """216 atoms (three list cutoffs wide) at ~2500 K: the chunk rebuilds its list on the device mid-chunk,
    and the trajectory is the one with lists from the host's k-d tree between chunks."""
    import mlpkit.md.run

    atoms, config = diamond("Si", (3, 3, 3)), MDConfig(chunk_steps=20)

    def run():
        return list(run_md(sw_potential("Si"), atoms, 5, config, seed=2, initial_temperature_k=5000, progress=False))

    on_device = run()
    monkeypatch.setattr(mlpkit.md.run, "cell_grid", lambda *args: None)
    on_host = run()
    ends = [atoms.positions] + [frame.positions_a for frame in on_device]
    assert not any(np.array_equal(on_device[-1].resume.reference_a, end) for end in ends)  # last built mid-chunk
    assert np.linalg.norm(on_device[-1].positions_a - atoms.positions, axis=1).max() > 0.5
    assert np.abs(on_device[-1].positions_a - on_host[-1].positions_a).max() < 1e-9


def test_a_device_list_that_overflows_mid_chunk_is_widened_and_the_chunk_recomputed(monkeypatch):
    """Rows without padding and bins without spare room overflow at the first rebuild that needs more:
    the chunk is recomputed with wider ones, and the trajectory is still the host-list one."""
    import mlpkit.md.run

    atoms, config = diamond("Si", (3, 3, 3)), MDConfig(chunk_steps=20)

    def run():
        return list(run_md(sw_potential("Si"), atoms, 5, config, seed=2, initial_temperature_k=5000, progress=False))

    builds = []
    monkeypatch.setattr(mlpkit.md.run, "padded_width", lambda count: count)
    monkeypatch.setattr(mlpkit.md.run, "cell_grid", lambda *args: dataclasses.replace(cell_grid(*args), per_bin=1))
    monkeypatch.setattr(mlpkit.md.run, "_device_lists", lambda *args: builds.append(args[3:]) or device_lists(*args))
    tight = run()
    monkeypatch.setattr(mlpkit.md.run, "cell_grid", lambda *args: None)
    on_host = run()
    (start_grid, start_width), *later = builds[1:]  # the second build at the start holds the start exactly
    assert max(grid.per_bin for grid, _ in later) > start_grid.per_bin and max(width for _, width in later) > start_width
    assert np.abs(tight[-1].positions_a - on_host[-1].positions_a).max() < 1e-9


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


def test_nose_hoover_chain_holds_the_temperature_and_conserves_its_extended_energy():
    """A deterministic thermostat: ⟨T⟩ at the target, and E_pot + E_kin + chain energy conserved (dt² error)."""
    target_k = 600.0
    config = MDConfig(temperature_k=target_k, thermostat="nose-hoover", thermostat_time_fs=50.0)
    frames = list(run_md(sw_potential("Si"), diamond("Si"), 150, config, seed=4, progress=False))
    temperature = concatenated(frames, "temperature_k")[1000:]
    assert temperature.mean() == pytest.approx(target_k, rel=0.08)
    conserved = concatenated(frames, "conserved_energy_ev")
    physical = concatenated(frames, "potential_energy_ev") + concatenated(frames, "kinetic_energy_ev")
    assert np.ptp(conserved) / 64 < 1e-3  # eV/atom over 3000 steps
    assert np.ptp(physical) > 20 * np.ptp(conserved)  # the thermostat does exchange energy


def test_the_monitor_stops_a_collapsing_potential_before_any_bad_frame():
    """A pair attraction without repulsion pulls atoms together: the run stops at the distance floor."""
    import jax.numpy as jnp

    from mlpkit.neighbors import edge_vectors, safe_norm
    from mlpkit.potentials import Potential

    def collapse(positions_a, cell_a, species, neighbors):
        distances = safe_norm(edge_vectors(positions_a, cell_a, neighbors), neighbors.mask)
        return -jnp.sum(jnp.where(neighbors.mask, 3.0 / distances, 0.0))

    broken = Potential("collapse", collapse, cutoff_a=3.0)
    frames = []
    with pytest.raises(MDInstability) as stopped:
        for frame in run_md(broken, diamond("Si"), 200, MDConfig(temperature_k=300.0, chunk_steps=10), seed=0, progress=False):
            frames.append(frame)
    failure = stopped.value.failure
    assert ("within" in failure.reason or "jumped" in failure.reason) and failure.step > (frames[-1].step if frames else 0)
    for frame in frames:
        assert np.isfinite(frame.positions_a).all() and frame.min_distance_a.min() >= StabilityLimits().min_distance_a


def test_first_failure_reports_the_earliest_broken_limit():
    traces = {
        "potential_energy_ev": np.array([-270.0, -270.1, -250.0, np.nan]),
        "temperature_k": np.array([300.0, 2000.0, 300.0, 300.0]),
        "min_distance_a": np.array([2.3, 2.3, 2.3, 1.0]),
    }
    failure = first_failure(traces, StabilityLimits(), first_step=41, dt_fs=0.5, n_atoms=64, reference_k=500.0,
                            previous_energy_ev=-270.0)
    assert (failure.step, failure.time_fs) == (42, 21.0) and "exceeds 1500 K" in failure.reason
    calm = {key: value[:1] for key, value in traces.items()}
    assert first_failure(calm, StabilityLimits(), 1, 1.0, 64, 500.0, -270.0) is None
    assert "spread" in first_failure(calm, StabilityLimits(max_spread_ev_per_a=0.5), 1, 1.0, 64, 500.0, -270.0, 0.8).reason


def test_replicas_equal_single_runs_and_give_a_stability_table():
    config = MDConfig(temperature_k=300.0, chunk_steps=10)
    rows = run_replicas(sw_potential("Si"), diamond("Si"), [300.0, 900.0], [0, 1], duration_fs=100, config=config, progress=False)
    assert [(row["temperature_k"], row["seed"]) for row in rows] == [(300.0, 0), (300.0, 1), (900.0, 0), (900.0, 1)]
    assert all(row["stable"] and row["time_to_failure_fs"] == 100 for row in rows)
    summary = stability_summary(rows)
    assert [s["fraction_stable"] for s in summary] == [1.0, 1.0] and summary[1]["runs"] == 2
    # the vmapped replica (900 K, seed 1) follows the same trajectory as that run alone
    hot = dataclasses.replace(config, temperature_k=900.0)
    points = [start(sw_potential("Si"), diamond("Si"), dataclasses.replace(config, temperature_k=t), s, t) for t, s in ((300.0, 0), (900.0, 1))]
    *_, (together, _) = simulate(sw_potential("Si"), diamond("Si"), 5, config, np.array([300.0, 900.0]), points, StabilityLimits(), progress=False)
    *_, alone = run_md(sw_potential("Si"), diamond("Si"), 5, hot, seed=1, progress=False)
    assert np.abs(together[1].positions_a - alone.positions_a).max() < 1e-10


def test_an_ensemble_reports_its_force_spread():
    from conftest import random_checkpoint

    single, pair = random_checkpoint("painn"), random_checkpoint("painn", members=2)
    config = MDConfig(temperature_k=300.0, chunk_steps=5)
    (frame_single,) = run_md(single.potential(), diamond("Si", (1, 1, 1)), 1, config, progress=False, limits=None)
    (frame_pair,) = run_md(pair.potential(), diamond("Si", (1, 1, 1)), 1, config, progress=False, limits=None)
    assert frame_single.ensemble_spread_ev_per_a == 0.0 and frame_pair.ensemble_spread_ev_per_a > 1e-3


@pytest.mark.parametrize("repeats", [(2, 2, 2), (3, 3, 3)], ids=["host-lists", "device-lists"])
def test_a_resumed_run_continues_bit_for_bit(tmp_path, repeats):
    """Stop after 3 of 6 chunks, leave a half-written chunk behind, resume: the same files as one run,
    with lists from the host and with lists rebuilt on the device inside the chunks."""
    config, atoms = MDConfig(temperature_k=1500.0, chunk_steps=10, skin_a=0.3), diamond("Si", repeats)

    def run(folder, n_chunks, resume=None):
        output = RunFolder(folder, atoms, {"test": 1}, config.dt_fs)
        if resume is None:
            output.start()
        for frame in run_md(sw_potential("Si"), atoms, n_chunks, config, seed=5, progress=False, resume=resume):
            output.append(frame)
        return output

    whole = run(tmp_path / "whole", 6)
    part = run(tmp_path / "part", 3)
    with open(part.thermo_path, "a") as stream:
        stream.write("60,60,12")  # a chunk killed mid-write
    point = part.resume_point()
    assert point.step == 30
    run(tmp_path / "part", 3, resume=point)
    assert part.thermo_path.read_bytes() == whole.thermo_path.read_bytes()
    assert part.trajectory_path.read_bytes() == whole.trajectory_path.read_bytes()
    with pytest.raises(MlpkitError, match="other settings"):
        RunFolder(tmp_path / "part", atoms, {"test": 2}, config.dt_fs).resume_point()


def test_md_cli_survives_a_kill_and_matches_an_uninterrupted_run(tmp_path):
    """``mlpkit md`` killed with SIGKILL after its first chunks, then rerun, writes what one run writes."""
    import ase.io
    import json
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "mlpkit.cli", "md", "--potential", "sw:Si", "--temperature", "800",
               "--steps", "1000", "--chunk", "10", "--no-progress"]
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "state.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()  # it really died mid-run
    subprocess.run(command + ["--out", str(killed)], check=True, capture_output=True)
    assert (killed / "thermo.csv").read_bytes() == (tmp_path / "whole" / "thermo.csv").read_bytes()
    frames = ase.io.read(killed / "trajectory.extxyz", ":")
    assert len(frames) == 100 and frames[-1].info["step"] == 1000
    assert json.loads((killed / "summary.json").read_text())["stable"]


def test_temperature_transferability_reports_errors_and_stability_per_temperature():
    """Errors per temperature equal those computed from the ASE calculator; each temperature gets a stability row."""
    from conftest import random_checkpoint

    from mlpkit.calculator import MLPCalculator
    from mlpkit.analysis.transferability import temperature_transferability
    from mlpkit.reference import sw_snapshots

    reference = sw_snapshots("Si", [300.0, 2600.0], 2, interval_fs=50, equilibration_fs=100, progress=False)
    assert list(reference.temperature_k) == [300.0, 300.0, 2600.0, 2600.0]
    checkpoint = random_checkpoint("painn")
    rows = temperature_transferability(checkpoint, reference, seeds=(0,), duration_fs=40,
                                       config=MDConfig(temperature_k=300.0, chunk_steps=10), progress=False)
    assert [(row["temperature_k"], row["frames"], row["runs"]) for row in rows] == [(300.0, 2, 1), (2600.0, 2, 1)]
    calculator = MLPCalculator(checkpoint)
    hot = [reference.atoms(index) for index in (2, 3)]
    errors = [np.abs(calculator.get_forces(atoms.copy()) - atoms.get_forces()).mean() for atoms in hot]
    assert rows[1]["force_mae_ev_per_a"] == pytest.approx(np.mean(errors), rel=1e-4)


def test_the_md_trajectory_carries_the_potential_stress_of_each_frame(tmp_path):
    import ase.io

    from mlpkit import SWCalculator
    from mlpkit.cli import main

    assert main(["md", "--potential", "sw:Si", "--temperature", "900", "--steps", "40", "--chunk", "20",
                 "--no-progress", "--out", str(tmp_path)]) == 0
    frames = ase.io.read(tmp_path / "trajectory.extxyz", ":")
    assert len(frames) == 2
    for frame in frames:
        stored = frame.get_stress()
        fresh = frame.copy()
        fresh.calc = SWCalculator("Si")
        assert np.abs(stored).max() > 1e-4  # a hot crystal is stressed
        np.testing.assert_allclose(stored, fresh.get_stress(), atol=1e-6)
