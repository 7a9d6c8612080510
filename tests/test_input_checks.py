"""Every setting checked where it enters, each reproducer of a silent wrong result turned into a refusal: loss
weights that reward error, a target model given as the transfer source, a finished training run written over
from other data, sizes beyond the pool, negative seeds, and an interrupt before anything was kept."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mlpkit.cli import main
from mlpkit.errors import MlpkitError
from mlpkit.study import run_study
from mlpkit.training import TrainConfig
from mlpkit.training.loss import LossWeights
from mlpkit.transfer import TransferConfig, transferred
from conftest import STUDY_CONFIG, random_checkpoint

TINY_TRAIN = ["train", "--data", "sw:Si", "--model", "painn", "--features", "8", "--layers", "1", "--epochs", "1",
              "--max-frames", "8", "--batch-size", "4", "--no-progress"]


@pytest.mark.parametrize("weights", [{"energy": -10.0}, {"forces": float("nan")}, {"virial": float("inf")},
                                     {"energy": 0.0, "forces": 0.0, "virial": 0.0}])
def test_loss_weights_that_reward_error_or_weigh_nothing_are_refused(weights):
    with pytest.raises(MlpkitError, match="invalid loss weights"):
        LossWeights(**weights)


def test_the_late_energy_weight_of_the_cli_is_checked_before_training_and_leaves_no_folder(tmp_path, capsys):
    assert main([*TINY_TRAIN, "--late-energy-weight", "-10", "--out", str(tmp_path / "run")]) == 2
    assert "invalid loss weights" in capsys.readouterr().err and not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is theirs: a refusal leaves it
    assert main([*TINY_TRAIN, "--late-energy-weight", "nan", "--out", str(tmp_path / "kept")]) == 2
    assert "invalid loss weights" in capsys.readouterr().err and (tmp_path / "kept").is_dir()


def test_a_target_model_is_refused_as_the_source_of_a_transfer():
    ge_model = random_checkpoint("painn", ("Ge",))
    with pytest.raises(MlpkitError, match=r"source model is for \['Ge'\].*Si → Ge.*already a target model"):
        transferred(ge_model, TransferConfig())
    with pytest.raises(MlpkitError, match=r"source model is for \['Si', 'Ge'\]"):
        transferred(random_checkpoint("painn", ("Si", "Ge")), TransferConfig())
    assert transferred(random_checkpoint("painn", ("Si",)), TransferConfig()).table.symbols == ("Ge",)


def test_a_study_refuses_a_target_model_as_its_source_before_any_run_trains(tmp_path):
    from mlpkit.checkpoint import save_checkpoint

    ge_model = random_checkpoint("painn", ("Ge",))
    save_checkpoint(ge_model, tmp_path / "ge.npz")
    config = dataclasses.replace(STUDY_CONFIG, source=str(tmp_path / "ge.npz"), inits=("scratch", "transfer"), sizes=(2,),
                                 train=dataclasses.replace(STUDY_CONFIG.train, model=ge_model.config))
    with pytest.raises(MlpkitError, match=r"source model is for \['Ge'\]"):
        run_study(config, tmp_path / "study", progress=False)
    assert not list((tmp_path / "study").glob("runs/*/done.json")) and not (tmp_path / "study" / "results.csv").exists()


def test_a_finished_training_run_is_not_written_over_from_other_data(tmp_path, capsys):
    assert main([*TINY_TRAIN, "--out", str(tmp_path)]) in (0, None)
    first = (tmp_path / "model.npz").read_bytes()
    assert json.loads((tmp_path / "metrics.json").read_text())["inputs"]["training_frames_sha256"]
    assert main([*TINY_TRAIN, "--data-seed", "1", "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "holds a finished run made from other inputs" in message and "training_frames_sha256" in message
    assert "config.data_seed" in message and "--overwrite" in message
    assert (tmp_path / "model.npz").read_bytes() == first
    assert main([*TINY_TRAIN, "--data-seed", "1", "--out", str(tmp_path), "--overwrite"]) in (0, None)
    assert (tmp_path / "model.npz").read_bytes() != first


def test_train_names_frames_it_does_not_have_and_refuses_a_negative_seed(tmp_path, capsys):
    assert main([*TINY_TRAIN, "--max-frames", "100000", "--out", str(tmp_path)]) == 2
    assert "--max-frames 100000: the training set holds only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*TINY_TRAIN, "--data-seed", "-1", "--out", str(tmp_path)])
    assert exited.value.code == 2 and "a seed is an integer ≥ 0, got -1" in capsys.readouterr().err


def test_a_study_larger_than_its_pool_is_refused_naming_the_pool(tmp_path):
    with pytest.raises(MlpkitError, match=r"Ge pool of this study holds \d+ training frames, fewer than the sizes \[100000\]"):
        run_study(dataclasses.replace(STUDY_CONFIG, sizes=(100000,), inits=("scratch",)), tmp_path, progress=False)


def test_a_bad_late_stage_config_names_the_field():
    with pytest.raises(MlpkitError, match="invalid loss weights"):
        TrainConfig(late_weights=LossWeights(energy=float("nan")))


def test_repeated_frames_are_reported_and_kept_on_one_side_of_every_split():
    from mlpkit.data import concatenate, load_dataset, outlier_report, sw_data_path, train_val_split

    base = load_dataset(sw_data_path("Si")).first(30)
    repeated = concatenate([base, *[base.select([3])] * 9])  # frame 3 ten times over
    found = [o for o in outlier_report(repeated) if o.field == "positions"]
    assert [o.frame for o in found] == list(range(30, 39)) and "the same structure as frame 3" in found[0].reason
    energy = repeated.energy_ev[3]
    for seed in range(8):
        train, validation = train_val_split(repeated, 0.2, seed)
        copies = [int(np.sum(np.isclose(part.energy_ev, energy, rtol=0, atol=1e-9))) for part in (train, validation)]
        assert sorted(copies) == [0, 10]  # all ten on one side
        assert len(train) + len(validation) == len(repeated)
    assert not [o for o in outlier_report(base) if o.field == "positions"]  # the shipped set has no repeats


def test_an_edited_data_cache_is_refused_by_its_checksum(tmp_path):
    import io

    from mlpkit.data import load_dataset, load_npz, save_npz, sw_data_path
    from mlpkit.errors import DataError

    path = tmp_path / "cache.npz"
    save_npz(load_dataset(sw_data_path("Si")).first(4), path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["energy_ev"] = arrays["energy_ev"] * 27.2114  # Hartree read as eV, written back by hand
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"cache.npz: corrupt dataset cache \(SHA-256 mismatch\)"):
        load_npz(path)
    del arrays["sha256"]  # the edit with the checksum removed: refused too, not read as an unchecked cache
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"cache.npz: not an mlpkit dataset cache \(no checksum\)"):
        load_npz(path)


def test_coincident_atoms_and_non_finite_positions_are_named_not_a_nan_energy():
    from ase.build import bulk

    from mlpkit import SWCalculator
    from mlpkit.calculator import MLPCalculator

    for calculator in (SWCalculator("Si"), MLPCalculator(random_checkpoint("painn"))):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True)
        atoms.positions[1] = atoms.positions[0] + 1e-4  # one atom on top of another
        atoms.calc = calculator
        with pytest.raises(MlpkitError, match="atoms 0 and 1 are 0.00017 Å apart"):
            atoms.get_potential_energy()
        atoms.positions[1] = np.nan
        with pytest.raises(MlpkitError, match=r"the positions of atoms \[1\] are not finite"):
            atoms.get_potential_energy()


def test_md_without_a_structure_for_an_element_without_a_lattice_names_the_way_out():
    from mlpkit.structures import diamond

    with pytest.raises(MlpkitError, match="no diamond lattice constant known for 'O'.*--structure FILE"):
        diamond("O")


def test_a_frame_with_two_problems_is_one_suspicious_frame():
    from mlpkit.data.outliers import Outlier, describe

    text = describe([Outlier(3, "energy", "too low"), Outlier(3, "forces", "too large")])
    assert text.startswith("1 suspicious frame (2 problems): frame 3, field 'energy'")


def test_a_failed_write_names_the_file_being_written(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from mlpkit.fileio import write_text_atomic

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() fails: no file named

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as raised:
        write_text_atomic(tmp_path / "results.csv", "size\n")
    assert raised.value.filename == str(tmp_path / "results.csv") and raised.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_a_results_table_cut_at_a_row_end_is_not_read_as_a_smaller_study(finished_study, tmp_path):
    import shutil

    from mlpkit.md.stability_grid import study_cells

    study, _ = finished_study
    copy = shutil.copytree(study, tmp_path / "study")
    lines = (copy / "results.csv").read_text().splitlines(keepends=True)
    (copy / "results.csv").write_text("".join(lines[:-1]))
    with pytest.raises(MlpkitError, match=f"holds {len(lines) - 2} rows where results.json records {len(lines) - 1}"):
        study_cells(copy)
    (copy / "results.csv").write_text("".join(lines[:-1]) + lines[-1][:5])  # cut mid-row
    with pytest.raises(MlpkitError, match=f"results.csv, line {len(lines)}: not a row of a study's results table .*cut short"):
        study_cells(copy)


def test_train_checks_the_test_sets_elements_before_training(tmp_path, capsys):
    assert main([*TINY_TRAIN, "--test", "sw:Ge:test", "--out", str(tmp_path)]) == 2
    assert "--test set sw:Ge:test" in capsys.readouterr().err and not (tmp_path / "model.npz").exists()


def test_stability_sizes_take_0_for_the_largest_set_and_refuse_a_size_the_study_lacks(finished_study):
    from mlpkit.md.stability_grid import study_cells

    study, rows = finished_study
    largest = max(row["size"] for row in rows)
    assert {size for size, _ in study_cells(study, sizes=(0,))} == {largest}
    with pytest.raises(MlpkitError, match=rf"no runs with \[997\] Ge frames; its sizes are \[.*{largest}\] \(0: the largest\)"):
        study_cells(study, sizes=(largest, 997))
