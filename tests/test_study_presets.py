"""The study's presets and draws: the paper preset's sizes and independent draws, draws that differ in their Ge
subsets and stay nested within a draw, a temperature split that keeps every hot frame out of training, the
epochs set by a step budget, and a CLI that never trains with another model than the one asked for."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mlpkit.checkpoint import load_checkpoint
from mlpkit.cli import main
from mlpkit.errors import MlpkitError
from mlpkit.study import StudyConfig, load_study_data, run_study
from mlpkit.study.config import PAPER_STEPS_PER_RUN, SHIPPED_SOURCES
from conftest import STUDY_CONFIG, TINY_TRAIN


def test_the_paper_preset_sweeps_every_size_with_three_draws_from_the_shipped_source():
    for data, mlearn_dir in (("sw", None), ("mlearn", "somewhere")):
        paper = StudyConfig(data=data, mlearn_dir=mlearn_dir).paper()
        assert paper.sizes == (5, 10, 25, 50, 100, 0) and paper.seeds == (0, 1, 2) and paper.independent_draws
        assert paper.source == SHIPPED_SOURCES[data] and paper.steps_per_run == PAPER_STEPS_PER_RUN
        assert paper.train.model.features == 32 and paper.inits == ("scratch", "transfer")
    assert StudyConfig(source="mine.npz").paper().source == "mine.npz"  # a given source is kept
    gpu = StudyConfig().gpu()
    assert gpu.independent_draws and gpu.train.model.features == 64 and gpu.steps_per_run is None


def test_each_draw_has_its_own_nested_subset_validation_split_and_initialisation():
    config = dataclasses.replace(STUDY_CONFIG, seeds=(0, 1, 2), independent_draws=True)
    draws = config.draws()
    assert [d.seeds for d in draws] == [(0,), (1,), (2,)] and [d.data_seed for d in draws] == [0, 1, 2]
    assert [d.train.data_seed for d in draws] == [0, 1, 2]  # batch order too
    data = [load_study_data(d) for d in draws]
    for one in data:
        assert one.ge_pool.first(10) == one.ge_pool.first(25).first(10)  # nested within a draw
    first_fives = {tuple(np.round(d.ge_pool.first(5).energy_ev, 8)) for d in data}
    assert len(first_fives) == 3  # the draws' subsets differ
    assert len({tuple(np.round(d.ge_validation.energy_ev, 8)) for d in data}) == 3  # and so do their validation sets
    assert STUDY_CONFIG.draws() == [STUDY_CONFIG]  # without draws the seeds stay members of one ensemble


def test_the_temperature_split_keeps_every_hot_frame_out_of_training_and_validation():
    config = dataclasses.replace(STUDY_CONFIG, max_train_temperature_k=1089.0)
    data, everything = load_study_data(config), load_study_data(STUDY_CONFIG)
    for split in (data.ge_pool, data.ge_validation):
        assert not np.any(split.temperature_k > 1089.0)
        assert {"Elastic", "Surface"} <= set(split.group)  # Elastic (no temperature) and the 300 K surfaces stay
    kept = np.sum(~(everything.ge_pool.temperature_k > 1089.0))
    assert len(data.ge_pool) == kept and np.any(everything.ge_pool.temperature_k > 1089.0)
    assert np.sum(data.ge_test.temperature_k > 1089.0) > 0  # the test set keeps its hot frames


def test_a_step_budget_gives_small_sets_more_epochs_up_to_the_cap():
    config = dataclasses.replace(STUDY_CONFIG, steps_per_run=40, train=dataclasses.replace(TINY_TRAIN, max_epochs=30))
    assert config.members_for(4).max_epochs == 30  # one batch per epoch: 40 steps capped at 30 epochs
    assert config.members_for(40).max_epochs == 4  # ten batches of 4
    assert config.members_for(40).warmup_epochs <= 3 and STUDY_CONFIG.members_for(40) == STUDY_CONFIG.members


@pytest.mark.parametrize("bad", [{"sizes": (5, 5)}, {"seeds": (0, 0)}, {"seeds": (-1,)}, {"steps_per_run": 0},
                                 {"max_train_temperature_k": float("nan")}])
def test_a_study_that_would_count_a_run_twice_or_cannot_mean_anything_is_refused(bad):
    with pytest.raises(MlpkitError, match="invalid study"):
        dataclasses.replace(STUDY_CONFIG, **bad)


def test_draws_give_one_row_per_seed_each_from_its_own_single_model(tmp_path):
    shipped = load_checkpoint("pretrained:si_painn_quick")  # no Si training per draw
    config = dataclasses.replace(STUDY_CONFIG, sizes=(2,), seeds=(0, 1), inits=("scratch", "transfer"), independent_draws=True,
                                 max_train_temperature_k=1089.0, source="pretrained:si_painn_quick",
                                 train=dataclasses.replace(TINY_TRAIN, model=shipped.config, max_epochs=1))
    rows = run_study(config, tmp_path, progress=False)
    assert sorted((r["seed"], r["init"]) for r in rows) == [(0, "scratch"), (0, "transfer"), (1, "scratch"), (1, "transfer")]
    assert len({r["checkpoint"] for r in rows}) == 4  # four single-member runs, no ensemble
    document = json.loads((tmp_path / "results.json").read_text())
    bands = {(r["seed"], r["label"]) for r in document["breakdown"] if r["kind"] == "band"}
    assert bands == {(s, label) for s in (0, 1) for label in ("trained range", "hotter")}
    assert "Temperature transferability" in (tmp_path / "report.html").read_text()


def test_the_study_command_refuses_a_model_its_source_does_not_have(tmp_path, capsys):
    command = ["study", "--out", str(tmp_path), "--source", "pretrained:si_painn_quick", "--model", "mace"]
    assert main(command) == 2
    assert "does not match --model mace (the source has painn)" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path), "--source", "pretrained:si_painn_quick", "--train-source"]) == 2
    assert main(["study", "--out", str(tmp_path), "--quick", "--preset", "paper"]) == 2


def test_a_finished_study_checks_as_current_and_a_stale_or_edited_one_is_flagged(finished_study, tmp_path):
    import shutil

    from mlpkit.study.check import study_problems

    study, rows = finished_study
    assert study_problems(study) == []
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    document = json.loads((copy / "results.json").read_text())
    document["config"]["train"]["learning_rate"] = 1e-3  # the code would key these runs differently now
    (copy / "results.json").write_text(json.dumps(document))
    problems = study_problems(copy)
    assert len(problems) == len(rows) and all(p.startswith("stale row") for p in problems)
    shutil.copy(study / "results.json", copy / "results.json")
    text = (copy / "results.csv").read_text().replace(f"{rows[0]['force_mae_ev_per_a']!r}", "0.001", 1)
    (copy / "results.csv").write_text(text)  # a number edited by hand
    assert study_problems(copy) == ["results.csv and results.json hold different rows",
                                    "report.html does not show the numbers of results.csv"]


def test_the_property_table_of_a_study_sits_beside_the_truth_in_its_report(finished_study, tmp_path):
    import shutil

    from mlpkit.study.properties import study_property_table
    from mlpkit.study.run import refresh_report

    study, _ = finished_study
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    table = study_property_table(copy, sizes=(4,), inits=("transfer",))
    assert list(table.values) == ["truth", "transfer, N = 4"]
    assert table.values["truth"]["a0_angstrom"] == pytest.approx(5.6536, abs=2e-3)  # SW Ge: 4·2^(1/6)σ/√3
    assert table.relative_error["truth"]["a0_angstrom"] == 0.0
    assert json.loads((copy / "properties_table.json").read_text())["reference"] == "truth"
    tables = {name: (copy / name).read_bytes() for name in ("results.csv", "results.json")}
    refresh_report(copy)
    assert "Out-of-target properties of Ge" in (copy / "report.html").read_text()
    assert {name: (copy / name).read_bytes() for name in tables} == tables  # a refresh re-reads, never rewrites, the results
    with pytest.raises(MlpkitError, match="no runs of seed 0 at sizes \\[7\\]"):
        study_property_table(copy, sizes=(7,))
