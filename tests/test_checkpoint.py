"""Checkpoints: a round trip predicts bit-identically; corrupt, truncated, too-new or mismatched files are
refused with a clear message; the ASE calculator exposes the ensemble spread; ``mlpkit train`` works end to end."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import ase.io
import numpy as np
import pytest

import mlpkit
from mlpkit import checkpoint as checkpoint_module
from mlpkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mlpkit.cli import main
from mlpkit.models import ModelConfig
from conftest import distorted, random_checkpoint


def predictions(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(), calc.results


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = random_checkpoint("painn", members=2)
    model = dataclasses.replace(model, metadata={"note": "two members"})
    path = save_checkpoint(model, tmp_path_factory.mktemp("model") / "model.npz")
    return model, path


def test_round_trip_predicts_bit_identically(saved):
    model, path = saved
    atoms = distorted(seed=11)
    before = predictions(mlpkit.MLPCalculator(model), atoms)
    after = predictions(mlpkit.load_calculator(path), atoms)
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1]) and np.array_equal(before[2], after[2])
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.table == model.table and loaded.normalisation == model.normalisation
    assert loaded.metadata == {"note": "two members"} and loaded.ensemble_size == 2


def test_calculator_reports_the_ensemble_spread(saved):
    model, path = saved
    energy, forces, _, results = predictions(mlpkit.load_calculator(path), distorted(seed=12))
    assert energy == pytest.approx(np.mean(results["member_energies"]), rel=1e-12)
    assert results["energy_std"] == pytest.approx(np.std(results["member_energies"]), rel=1e-12)
    assert results["energy_std"] > 0 and (results["forces_std"] > 0).any()
    alone = predictions(mlpkit.MLPCalculator(model.member(0)), distorted(seed=12))[3]
    assert alone["energy_std"] == 0.0 and not alone["forces_std"].any()
    assert alone["energy"] == pytest.approx(results["member_energies"][0], rel=1e-6)


@pytest.mark.parametrize("members", [1, 3])
def test_per_atom_energies_sum_to_the_energy_and_round_trip_through_extxyz(members, tmp_path):
    # ASE's "energies" are per-atom: extxyz writes them as a column beside the forces
    atoms = distorted(seed=13)
    atoms.calc = mlpkit.MLPCalculator(random_checkpoint("painn", members=members), float64=True)
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    per_atom = atoms.get_potential_energies()
    assert per_atom.shape == (len(atoms),) and np.ptp(per_atom) > 0
    assert per_atom.sum() == pytest.approx(energy, abs=1e-9)
    ase.io.write(tmp_path / "frame.extxyz", atoms, format="extxyz")
    back = ase.io.read(tmp_path / "frame.extxyz", format="extxyz")
    assert back.get_potential_energy() == pytest.approx(energy, abs=1e-8)
    np.testing.assert_allclose(back.get_forces(), forces, atol=1e-8)
    np.testing.assert_allclose(back.get_stress(), stress, atol=1e-10)
    np.testing.assert_allclose(back.get_potential_energies(), per_atom, atol=1e-8)


def test_flipped_byte_is_detected(saved, tmp_path):
    _, path = saved
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = next(n for n in members if n.startswith("params/"))
    payload = bytearray(members[name])
    payload[-3] ^= 0x10  # one bit of one weight
    members[name] = bytes(payload)
    corrupt = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(corrupt, "w") as archive:  # a valid zip whose content changed
        for n, data in members.items():
            archive.writestr(n, data)
    with pytest.raises(CheckpointError, match="corrupt.npz: corrupt checkpoint .SHA-256"):
        load_checkpoint(corrupt)


def test_truncated_and_foreign_files_are_refused(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.npz: not a readable mlpkit checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an mlpkit checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")


def test_newer_format_is_refused(saved, tmp_path, monkeypatch):
    model, _ = saved
    monkeypatch.setattr(checkpoint_module, "FORMAT_VERSION", checkpoint_module.FORMAT_VERSION + 1)
    path = save_checkpoint(model, tmp_path / "future.npz")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="newer than this mlpkit reads"):
        load_checkpoint(path)


def test_a_different_model_configuration_is_refused(saved, tmp_path):
    model, path = saved
    with pytest.raises(CheckpointError, match="expected ModelConfig"):
        load_checkpoint(path, expect_config=dataclasses.replace(model.config, features=64))
    mislabelled = dataclasses.replace(model, config=dataclasses.replace(model.config, layers=3))
    bad = save_checkpoint(mislabelled, tmp_path / "mislabelled.npz")  # checksum fine, parameters do not fit
    with pytest.raises(CheckpointError, match="do not match the stored model configuration"):
        load_checkpoint(bad)


def test_a_failed_save_keeps_the_previous_checkpoint(saved, tmp_path, monkeypatch):
    model, _ = saved
    target = save_checkpoint(model, tmp_path / "model.npz")
    before = target.read_bytes()

    def crash(stream, **arrays):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model.member(0), target)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"] and target.read_bytes() == before
    assert load_checkpoint(target).ensemble_size == 2


def test_train_command_writes_a_usable_model(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "sw:Si", "--model", "painn", "--out", str(out), "--quick", "--epochs", "2",
                 "--max-frames", "12", "--test", "sw:Si:test", "--no-progress"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.npz", "history.csv", "metrics.json", ".lock"}  # .lock: the folder's lock
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,learning_rate") and len(history) == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test"]["force_mae_ev_per_a"] < 2.0
    calc = mlpkit.load_calculator(out / "model.npz")
    assert calc.checkpoint.config == ModelConfig("painn").quick()
    assert "test: energy MAE" in capsys.readouterr().out


def test_train_command_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "absent.extxyz"), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("mlpkit: error: ")
    assert main(["train", "--data", "sw:Si", "--val-fraction", "1.5", "--out", str(tmp_path / "run")]) == 2
    assert "validation fraction must lie strictly between 0 and 1" in capsys.readouterr().err
