"""The study runner: one row per (size, seed, init), nested training subsets (random and active), a resume
that repeats no finished run, a self-contained report with parity plots and errors by group and temperature,
and the data-efficiency factor by log–log interpolation."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from mlpkit.study import cells
from mlpkit.cli import main
from mlpkit.errors import MlpkitError
from mlpkit.selection import force_disagreement
from mlpkit.transfer import transferred
from mlpkit.study import RESULT_COLUMNS, data_checksums, efficiency_factor, load_study_data, recipe_of, run_study
from conftest import STUDY_CONFIG as CONFIG


@pytest.fixture
def finished(finished_study):
    return finished_study


def test_results_have_one_row_per_size_seed_and_init(finished):
    out, rows = finished
    with open(out / "results.csv") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == list(RESULT_COLUMNS)
    assert sorted((int(r["size"]), int(r["seed"]), r["init"]) for r in table) == sorted(
        (size, seed, init) for size in (2, 4) for seed in (0, 1) for init in ("scratch", "transfer", "transfer-active")
    )
    assert all(0 < float(r["force_mae_ev_per_a"]) < 5 for r in table)
    assert all((out / r["checkpoint"]).exists() for r in table)
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["sizes"] == [2, 4] and "jax" in document["versions"]
    page = (out / "report.html").read_text()
    assert "<script src=" not in page and "Plotly" in page  # plotly.js inlined: opens offline
    assert "Parity on the Ge test set" in page and "by temperature" in page and "transfer-active, N = 4" in page
    breakdown = document["breakdown"]
    groups = {r["label"] for r in breakdown if r["kind"] == "group"}
    assert groups == set(load_study_data(CONFIG).ge_test.group)  # every test group has its errors
    assert all(r["frames"] > 0 and r["force_mae_ev_per_a"] > 0 for r in breakdown)


def test_active_selection_takes_the_most_disputed_frames_nested(finished):
    out, _ = finished
    data, checksums = load_study_data(CONFIG), data_checksums(CONFIG)
    source = cells.source_model(CONFIG, data, checksums, out, progress=False, wait_timeout_s=None)
    order = cells.ranked_order("active", CONFIG, data, source, checksums, out)
    transfer = recipe_of(CONFIG, "transfer").transfer
    disagreement = force_disagreement(transferred(source["checkpoint"], transfer), data.ge_pool)
    assert sorted(order) == list(range(len(data.ge_pool)))
    assert disagreement[order[:4]].min() >= np.delete(disagreement, order[:4]).max()  # the top of the ranking
    active = data.ge_pool.select(order)
    assert active.first(2) == active.first(4).first(2)  # nested: N = 2 ⊂ N = 4


def test_diverse_selection_ranks_the_pool_once_in_group_proportion(finished):
    out, _ = finished
    data, checksums = load_study_data(CONFIG), data_checksums(CONFIG)
    source = cells.source_model(CONFIG, data, checksums, out, progress=False, wait_timeout_s=None)
    order = cells.ranked_order("diverse", CONFIG, data, source, checksums, out)
    assert sorted(order) == list(range(len(data.ge_pool))) and order != cells.ranked_order("active", CONFIG, data, source, checksums, out)
    assert cells.ranked_order("diverse", CONFIG, data, source, checksums, out) == order  # read back from its order.json
    groups, counts = np.unique(data.ge_pool.group, return_counts=True)
    taken = data.ge_pool.group[order[:20]]
    for group, count in zip(groups, counts):  # each group within one frame of its share of the first 20
        assert abs(np.sum(taken == group) - 20 * count / len(data.ge_pool)) <= 1


@pytest.fixture
def trained(monkeypatch) -> list[dict]:
    """The payloads of the runs the study trains (not reads back) from now on, in order."""
    payloads = []
    original = cells.cached_training

    def counting(folder, payload, fit, *args, **kwargs):
        return original(folder, payload, lambda: payloads.append(payload) or fit(), *args, **kwargs)

    monkeypatch.setattr(cells, "cached_training", counting)
    return payloads


def test_a_repeated_study_trains_nothing_and_a_resumed_one_only_the_missing_run(finished, trained):
    out, rows = finished
    assert run_study(CONFIG, out, progress=False) == rows and trained == []
    row = next(r for r in rows if r["size"] == 4 and r["init"] == "transfer-active")
    (out / row["checkpoint"]).with_name("done.json").unlink()  # as if the study stopped during this run
    again = run_study(CONFIG, out, progress=False)
    assert [(c["size"], c["init"]) for c in trained] == [(4, "transfer-active")]
    assert len(again) == len(rows)


def test_a_stop_request_lets_the_run_in_progress_finish_and_starts_no_other(finished, trained):
    out, rows = finished
    for init in ("scratch", "transfer"):  # as if the study had stopped before these two runs
        row = next(r for r in rows if r["size"] == 4 and r["init"] == init)
        (out / row["checkpoint"]).with_name("done.json").unlink()
    stopped = run_study(CONFIG, out, progress=False, stop_requested=lambda: bool(trained))
    cell = [(r["size"], r["init"], r["seed"]) for r in rows]
    assert len(trained) == 1 and [(r["size"], r["init"], r["seed"]) for r in stopped] == cell[:len(stopped)] == cell[:8]
    assert len(run_study(CONFIG, out, progress=False)) == len(rows) and len(trained) == 2  # the same call resumes


def test_a_damaged_run_record_is_named_with_the_way_out(finished):
    out, rows = finished
    done = (out / rows[0]["checkpoint"]).with_name("done.json")
    intact = done.read_text()
    try:
        done.write_text(intact[: len(intact) // 2])
        with pytest.raises(MlpkitError, match=r"done\.json: unreadable record.*delete its folder"):
            run_study(CONFIG, out, progress=False)
    finally:
        done.write_text(intact)


def test_training_subsets_are_nested():
    data = load_study_data(CONFIG)
    pool = data.ge_pool
    assert pool.first(10) == pool.first(25).first(10)
    assert len(pool) + len(data.ge_validation) == 214  # every Ge training frame: in the pool or validation


def test_efficiency_factor_interpolates_the_scratch_curve_in_log_log():
    rows = [{"size": n, "init": "scratch", "seed": 0, "force_mae_ev_per_a": e} for n, e in [(10, 0.2), (20, 0.1), (40, 0.05)]]
    rows += [{"size": 10, "init": "transfer", "seed": 0, "force_mae_ev_per_a": 0.1}]
    assert efficiency_factor(rows, 10) == pytest.approx(2.0)
    rows[-1]["force_mae_ev_per_a"] = 0.01  # better than scratch ever gets: not reached
    assert np.isnan(efficiency_factor(rows, 10))
    assert np.isnan(efficiency_factor(rows[-1:], 10))  # a study without scratch runs: nothing to compare with


def test_study_command_rejects_a_mlearn_study_without_its_folder(tmp_path, capsys):
    assert main(["study", "--data", "mlearn", "--out", str(tmp_path)]) == 2
    assert "needs mlearn_dir" in capsys.readouterr().err


def test_the_default_transfer_scales_lengths_and_the_papers_protocol_never_does():
    scaled = recipe_of(CONFIG, "transfer-active").transfer
    assert scaled.length_scale == pytest.approx(5.4310 / 5.6536, rel=1e-4)  # SW a_Si / a_Ge
    assert recipe_of(CONFIG, "transfer-plain").transfer.length_scale == 1.0
    unscaled = dataclasses.replace(CONFIG, rescale_lengths=False)
    assert recipe_of(unscaled, "transfer").transfer == CONFIG.transfer


def test_a_study_transfers_from_a_shipped_source_without_training_silicon(tmp_path):
    from mlpkit.checkpoint import checkpoint_path, load_checkpoint
    from mlpkit.fileio import sha256_of

    shipped = load_checkpoint("pretrained:si_painn_quick")
    config = dataclasses.replace(CONFIG, sizes=(2,), seeds=(0,), inits=("transfer",), source="pretrained:si_painn_quick",
                                 train=dataclasses.replace(CONFIG.train, model=shipped.config, max_epochs=1))
    rows = run_study(config, tmp_path, progress=False)
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/done.json")]
    assert [r["config"]["role"] for r in records] == ["target"]  # nothing trained on Si
    assert records[0]["config"]["source_sha256"] == sha256_of(checkpoint_path("pretrained:si_painn_quick"))
    assert len(rows) == 1 and 0 < rows[0]["force_mae_ev_per_a"] < 5
    with pytest.raises(MlpkitError, match="pretrained:si_painn_quick: the source is .*painn.*the study trains"):
        run_study(dataclasses.replace(config, train=CONFIG.train), tmp_path / "other", progress=False)
