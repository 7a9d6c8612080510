"""The stability map: a broken potential fails at every temperature while SW never does, the map has one
row per (cell, temperature), a rerun after an interruption recomputes only the unfinished cells, and the
CLI adds the map to the study's report."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from mlpkit.cli import main
from mlpkit.errors import MlpkitError
from mlpkit.md import stability_grid as stability_module
from mlpkit.md.stability_grid import STABILITY_COLUMNS, MapSettings, potential_stability, read_stability_csv, stability_map
from mlpkit.potentials import sw_potential

SHORT = MapSettings(temperatures_k=(300.0, 1816.5), duration_fs=100.0, replicas=2)


def test_sw_never_fails_and_a_broken_potential_fails_at_every_temperature():
    truth = potential_stability(sw_potential("Ge"), SHORT)
    assert [row["temperature_k"] for row in truth] == [300.0, 1816.5]
    assert all(row["fraction_stable"] == 1.0 and row["mean_time_to_failure_fs"] == 100.0 and row["runs"] == 2 for row in truth)
    sw = sw_potential("Ge")
    # SW with its sign flipped: the crystal becomes an energy maximum, so thermal noise grows without bound
    broken = dataclasses.replace(sw, name="inverted SW", energy_fn=lambda *args: -sw.energy_fn(*args))
    failed = potential_stability(broken, SHORT)
    assert all(row["fraction_stable"] == 0.0 and row["mean_time_to_failure_fs"] < 50.0 for row in failed)


def test_the_map_has_a_row_per_cell_and_temperature_and_a_rerun_recomputes_only_unfinished_cells(finished_study, tmp_path, monkeypatch):
    study, _ = finished_study
    settings = MapSettings(temperatures_k=(605.0, 1089.0), duration_fs=40.0, replicas=1)
    live = []
    rows = stability_map(study, sizes=(4,), inits=("scratch", "transfer"), settings=settings, out=tmp_path, on_row=live.append,
                         progress=False)
    assert [(r["size"], r["init"], r["temperature_k"]) for r in rows] == [
        (4, init, t) for init in ("scratch", "transfer") for t in (605.0, 1089.0)]
    assert live == rows and all(0.0 <= r["fraction_stable"] <= 1.0 and r["replicas"] == 1 for r in rows)
    with open(tmp_path / "stability.csv") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == list(STABILITY_COLUMNS) and len(table) == 4
    computed = []
    original = stability_module.potential_stability
    monkeypatch.setattr(stability_module, "potential_stability", lambda *args: computed.append(1) or original(*args))
    (tmp_path / "stability" / "transfer_N4.json").unlink()  # as if interrupted during the second cell
    again = stability_map(study, sizes=(4,), inits=("scratch", "transfer"), settings=settings, out=tmp_path, progress=False)
    assert len(computed) == 1 and again == rows  # the MD is seeded: the recomputed cell gives the same numbers
    # a pass over another part of the study (another core's share) keeps the cells finished before in its map
    both = stability_map(study, sizes=(2,), inits=("scratch",), settings=settings, out=tmp_path, progress=False)
    assert len(computed) == 2 and [(r["size"], r["init"]) for r in both if r["size"] == 4] == [(r["size"], r["init"]) for r in rows]
    assert {r["size"] for r in both} == {2, 4} and read_stability_csv(tmp_path / "stability.csv") == both
    longer = MapSettings(temperatures_k=(605.0, 1089.0), duration_fs=60.0, replicas=1)
    stability_map(study, sizes=(4,), inits=("scratch",), settings=longer, out=tmp_path, progress=False)
    assert len(computed) == 3  # other settings: the cell is computed afresh
    # Stop (a notebook's button) once a model has started: it finishes, no other starts
    stopped = stability_map(study, sizes=(4,), inits=("scratch", "transfer"), settings=settings, out=tmp_path / "stopped",
                            progress=False, stop_requested=lambda: len(computed) > 3)
    assert len(computed) == 4 and stopped == rows[:2]


def test_the_cli_writes_the_map_and_adds_it_to_the_report(finished_study, tmp_path, capsys):
    study, _ = finished_study
    code = main(["stability", "--study", str(study), "--sizes", "2", "--inits", "transfer", "--temperatures", "605",
                 "--duration-fs", "40", "--replicas", "1", "--out", str(tmp_path), "--no-progress"])
    assert code in (0, None)
    with open(tmp_path / "stability.csv") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["init"] == "transfer" and float(row["temperature_k"]) == 605.0 and np.isfinite(float(row["mean_time_to_failure_fs"]))
    page = (study / "report.html").read_text()
    assert "Stability map" in page and "Parity on the Ge test set" in page
    assert "stability.csv" in capsys.readouterr().out


def test_damaged_tables_are_named_and_a_damaged_cell_is_computed_again(finished_study, tmp_path, monkeypatch):
    (tmp_path / "results.csv").write_text("size,init\n4,scratch\n")  # no checkpoint column
    with pytest.raises(MlpkitError, match=r"results.csv, line 2: not a row of a study's results table \(it needs a size, an init and a checkpoint"):
        stability_map(tmp_path, settings=SHORT, progress=False)
    (tmp_path / "stability.csv").write_text("size,init,temperature_k\nfour,scratch,605\n")
    with pytest.raises(MlpkitError, match="stability.csv: not a stability table"):
        read_stability_csv(tmp_path / "stability.csv")
    study, _ = finished_study
    settings = MapSettings(temperatures_k=(605.0,), duration_fs=20.0, replicas=1)
    rows = stability_map(study, sizes=(2,), inits=("scratch",), settings=settings, out=tmp_path / "map", progress=False)
    (tmp_path / "map" / "stability" / "scratch_N2.json").write_text("{truncated")
    computed = []
    original = stability_module.potential_stability
    monkeypatch.setattr(stability_module, "potential_stability", lambda *args: computed.append(1) or original(*args))
    assert stability_map(study, sizes=(2,), inits=("scratch",), settings=settings, out=tmp_path / "map", progress=False) == rows
    assert computed == [1]


def test_a_swapped_model_is_refused_and_draws_pool_their_replicas(finished_study, tmp_path):
    study, rows = finished_study
    first, other = (study / rows[0]["checkpoint"]), next(study / r["checkpoint"] for r in rows if r["checkpoint"] != rows[0]["checkpoint"])
    intact = first.read_bytes()
    try:
        first.write_bytes(other.read_bytes())  # one run's model copied over another's
        with pytest.raises(MlpkitError, match="model.npz is not the checkpoint this run wrote"):
            stability_map(study, settings=SHORT, out=tmp_path, progress=False)
    finally:
        first.write_bytes(intact)
    draws = [[{"size": 5, "init": "transfer", "temperature_k": 300.0, "fraction_stable": f, "mean_time_to_failure_fs": t,
               "replicas": 2}] for f, t in ((1.0, 2000.0), (0.5, 1500.0), (0.0, 100.0))]
    (pooled,) = stability_module.pooled_rows(draws)
    assert pooled["fraction_stable"] == pytest.approx(0.5) and pooled["replicas"] == 6
    assert pooled["mean_time_to_failure_fs"] == pytest.approx(1200.0)
