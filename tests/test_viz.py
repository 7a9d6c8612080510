"""The tutorial widgets without a browser: one run at a time, Stop keeps what was done, settings are read
once, figures grow correctly, colour bins cover every atom, and unphysical MD states are recognised."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pytest

from mlpkit import viz
from mlpkit.md import MDConfig
from mlpkit.potentials import sw_potential
from mlpkit.structures import diamond
from mlpkit.viz.jobs import FAILED, FINISHED, IDLE, RUNNING, STOPPED

REPO = Path(__file__).resolve().parents[1]


def blocking_work(release: threading.Event, seen: list):
    """Work that records its settings, then polls for Stop until ``release`` is set."""

    def work(settings, job):
        seen.append(dict(settings))
        steps = 0
        while not release.wait(0.01):
            if job.stop_requested:
                return {"steps": steps, "stopped": True}
            steps += 1
        return {"steps": steps, "stopped": False}

    return work


def test_a_second_start_while_running_is_refused_and_stop_keeps_the_result():
    release, seen = threading.Event(), []
    job = viz.Job()
    assert job.state == IDLE
    assert job.start(blocking_work(release, seen), {"n": 1})
    assert job.running and not job.start(blocking_work(release, seen), {"n": 2})
    job.stop()
    assert job.wait(5)
    assert job.state == STOPPED and job.result["stopped"] and seen == [{"n": 1}]
    assert "stopped" in job.status
    assert job.start(blocking_work(release, seen), {"n": 3})  # a finished job can run again
    release.set()
    assert job.wait(5) and job.state == FINISHED and not job.result["stopped"]


def test_settings_are_a_frozen_copy_taken_at_start():
    release, seen = threading.Event(), []
    settings = {"size": 10}
    job = viz.Job()
    job.start(blocking_work(release, seen), settings)
    settings["size"] = 99
    assert job.settings["size"] == 10
    with pytest.raises(TypeError):
        job.settings["size"] = 5
    release.set()
    job.wait(5)


def test_a_failing_run_reports_its_error_and_a_panel_waiting_for_it_raises():
    def broken(settings, job):
        raise ValueError("no Ge frames")

    job = viz.Job()
    job.start(broken, {})
    assert job.wait(5) and job.state == FAILED and "no Ge frames" in job.status
    panel = viz.RunPanel(broken)
    panel.run()
    with pytest.raises(ValueError, match="no Ge frames"):
        asyncio.run(panel.finished())
    assert not panel.job.running and "no Ge frames" in panel.status.value


def test_panel_disables_run_while_running_and_ignores_slider_changes_mid_run():
    release, seen = threading.Event(), []
    slider = widgets.IntSlider(value=10, min=5, max=100)
    panel = viz.RunPanel(blocking_work(release, seen), {"size": slider})
    assert not panel.run_button.disabled and panel.stop_button.disabled
    panel.run_button.click()
    assert panel.run_button.disabled and not panel.stop_button.disabled and panel.job.state == RUNNING
    slider.value = 50
    panel.run_button.click()  # ignored: a second run would race on the same figures
    panel.run()
    panel.stop_button.click()
    assert panel.job.wait(5)
    assert seen == [{"size": 10}] and panel.result["stopped"] and panel.stopped
    assert not panel.run_button.disabled and panel.stop_button.disabled
    release.set()
    panel.run()
    assert not asyncio.run(panel.finished())["stopped"] and seen[-1] == {"size": 50} and not panel.stopped


def test_a_cell_awaiting_a_run_leaves_the_kernel_free_to_press_stop():
    """What Run All does: the next cell awaits the run while the Stop click still arrives on the same loop."""
    release, seen = threading.Event(), []
    panel = viz.RunPanel(blocking_work(release, seen))

    async def press_stop_while_awaited():
        await asyncio.sleep(0.3)
        assert panel.job.state == RUNNING  # the run is still going, the waiting cell has not returned
        panel.stop_button.click()

    async def run_all():
        panel.run()
        result, _ = await asyncio.wait_for(asyncio.gather(panel.finished(), press_stop_while_awaited()), timeout=10)
        return result

    assert asyncio.run(run_all())["stopped"] and panel.job.state == STOPPED


def test_quick_mode_is_read_from_one_environment_variable(monkeypatch):
    monkeypatch.setenv("MLPKIT_QUICK", "1")
    quick = viz.tutorial_config()
    assert viz.quick_mode() and quick == viz.TutorialConfig().quick()
    monkeypatch.delenv("MLPKIT_QUICK")
    full = viz.tutorial_config()
    assert not viz.quick_mode() and full == viz.TutorialConfig()
    assert quick.train.max_epochs < full.train.max_epochs and len(quick.ge_sizes) < len(full.ge_sizes)
    assert quick.train.model == full.train.model  # both fine-tune the shipped Si model


def metrics(epoch, loss, force):
    return {"epoch": epoch, "train_loss": loss, "force_mae_ev_per_a": force}


def test_training_curves_grow_per_run_with_one_colour_per_run():
    figure = viz.training_figure(widget=False)
    viz.record_epoch(figure, "scratch", metrics(0, float("nan"), 0.8))  # epoch 0: validation only
    for epoch in (1, 2):
        viz.record_epoch(figure, "scratch", metrics(epoch, 1.0 / epoch, 0.5 / epoch))
        viz.record_epoch(figure, "transfer", metrics(epoch, 0.1 / epoch, 0.1 / epoch))
    by_meta = {trace.meta: trace for trace in figure.data}
    assert set(by_meta) == {"scratch/loss", "scratch/force", "transfer/loss", "transfer/force"}
    assert list(by_meta["scratch/loss"].x) == [1, 2] and list(by_meta["scratch/force"].x) == [0, 1, 2]
    assert list(by_meta["transfer/force"].y) == [0.1, 0.05]
    assert by_meta["scratch/loss"].line.color == by_meta["scratch/force"].line.color != by_meta["transfer/loss"].line.color
    assert sum(bool(trace.showlegend) for trace in figure.data) == 2


def test_a_new_run_draws_fresh_lines_and_keeps_only_the_previous_run_faded():
    figure = viz.training_figure(widget=False)
    for run, epochs in enumerate(([0, 1, 2], [0, 1], [0])):
        viz.start_run(figure)
        for epoch in epochs:
            viz.record_epoch(figure, "scratch", metrics(epoch, 1.0 + run, 0.5))
    by_name = {(trace.name, trace.meta.rsplit("/", 1)[-1]): trace for trace in figure.data}
    assert set(by_name) == {("scratch", "loss"), ("scratch", "force"), ("earlier: scratch", "loss"), ("earlier: scratch", "force")}
    assert list(by_name["scratch", "force"].x) == [0]  # the third run, on its own: time never runs backwards
    assert list(by_name["earlier: scratch", "force"].x) == [0, 1]  # the second run, faded; the first is gone
    assert by_name["earlier: scratch", "force"].opacity < 1 and by_name["scratch", "force"].opacity is None
    assert by_name["scratch", "force"].line.color == by_name["earlier: scratch", "force"].line.color
    assert [trace.showlegend for trace in figure.data if trace.name.startswith("earlier")] == [True, False]  # one entry


def test_a_panel_starts_each_run_on_fresh_lines_and_its_table_follows_the_latest_run():
    figure = viz.training_figure()  # a LiveFigure, as in the notebooks
    slider = widgets.IntSlider(value=10, min=5, max=100)

    def work(settings, job):
        for epoch in range(3):
            viz.record_epoch(figure, "scratch", metrics(epoch, 1.0, 1.0 / settings["size"]))
        return [{"size": settings["size"]}]

    panel = viz.RunPanel(work, {"size": slider}, outputs=[figure], summary=lambda rows: f"<p>N = {rows[0]['size']}</p>")
    panel.run()
    asyncio.run(panel.finished())
    assert panel.table.value == "<p>N = 10</p>"
    slider.value = 20
    panel.run()
    asyncio.run(panel.finished())
    assert panel.table.value == "<p>N = 20</p>"
    current = [trace for trace in figure.data if trace.name == "scratch"]
    assert all(list(trace.x) == sorted(trace.x) for trace in figure.data)
    assert [list(trace.y) for trace in current if trace.meta.endswith("force")] == [[0.05, 0.05, 0.05]]
    # what a reloaded page shows: the kernel's copy of the drawing, with every epoch of both runs in it
    drawn = figure.view.outputs[0]["data"][viz.figures.PLOTLY_MIME]["data"]
    assert [(trace["name"], trace["x"]) for trace in drawn] == [(trace.name, list(trace.x)) for trace in figure.data]
    assert {"scratch", "earlier: scratch"} == {trace["name"] for trace in drawn}


def test_epoch_callback_asks_train_to_stop_once_stop_was_pressed():
    job = viz.Job()
    job.state = RUNNING
    callback = viz.epoch_callback(viz.training_figure(widget=False), "scratch", job, max_epochs=10)
    assert callback(1, metrics(1, 0.5, 0.3)) is False
    job.stop()
    assert callback(2, metrics(2, 0.4, 0.2)) is True
    assert "epoch 2/10" in job.progress


class Frame:
    def __init__(self, step, potential, kinetic, temperature):
        self.step, self.potential_energy_ev, self.kinetic_energy_ev = step, np.array(potential), np.array(kinetic)
        self.temperature_k = np.array(temperature)


def test_md_figure_plots_time_in_ps_and_total_energy_per_atom():
    figure = viz.md_figure(widget=False)
    viz.record_md_frame(figure, "SW", Frame(2, [-8.0, -7.0], [1.0, 0.5], [300.0, 200.0]), n_atoms=2, dt_fs=1.0)
    viz.record_md_frame(figure, "SW", Frame(4, [-6.0, -6.0], [0.0, 0.0], [0.0, 0.0]), n_atoms=2, dt_fs=1.0)
    traces = {trace.meta: trace for trace in figure.data}
    assert np.allclose(traces["SW/temperature"].x, [0.001, 0.002, 0.003, 0.004])
    assert np.allclose(traces["SW/potential"].y, [-4.0, -3.5, -3.0, -3.0])
    assert np.allclose(traces["SW/total"].y, [-3.5, -3.25, -3.0, -3.0])


def test_parity_plot_labels_the_error_and_spans_every_point():
    figure = viz.parity_figure(widget=False)
    viz.add_parity(figure, "transfer", [[0.0, 1.0, -2.0]], [[0.1, 0.9, -2.0]])
    viz.add_parity(figure, "scratch", [[3.0]], [[2.0]])
    assert "MAE 0.067" in figure.data[1].name and "MAE 1.000" in figure.data[2].name
    assert tuple(figure.data[0].x) == (-2.0, 3.0)


def test_learning_curves_update_in_place():
    figure = viz.learning_curves_figure(widget=False)
    rows = [{"size": 5, "seed": 0, "init": "scratch", "force_mae_ev_per_a": 0.4},
            {"size": 5, "seed": 0, "init": "transfer", "force_mae_ev_per_a": 0.2}]
    viz.set_learning_curves(figure, rows)
    viz.set_learning_curves(figure, rows + [{"size": 20, "seed": 0, "init": "scratch", "force_mae_ev_per_a": 0.2}])
    assert sorted(trace.name for trace in figure.data) == ["scratch", "transfer"]
    assert list(next(t for t in figure.data if t.name == "scratch").x) == [5, 20]


def test_a_stopped_sweep_shows_its_partial_curve_beside_the_previous_sweep_marked_earlier():
    """A sweep stopped after its first scratch run must not sit next to the last sweep's complete transfer line as
    if both were one run: the old curves are faded as "earlier", and share one legend entry."""
    figure = viz.learning_curves_figure(widget=False)
    complete = [{"size": size, "seed": 0, "init": init, "force_mae_ev_per_a": error / size}
                for size in (5, 10) for init, error in (("scratch", 2.0), ("transfer", 1.0))]
    viz.set_learning_curves(figure, complete)
    viz.start_run(figure)
    viz.set_learning_curves(figure, complete[:1])
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"scratch", "earlier: scratch", "earlier: transfer"}
    assert list(by_name["scratch"].x) == [5] and list(by_name["earlier: transfer"].x) == [5, 10]
    assert by_name["earlier: transfer"].opacity < 1 and by_name["scratch"].opacity is None
    assert sum(bool(trace.showlegend is not False) for trace in figure.data if trace.name.startswith("earlier")) == 1


def test_colour_bins_cover_every_atom_once_from_dark_to_bright():
    values = np.linspace(0.0, 1.0, 64)
    bins = viz.colour_bins(values, n_bins=4)
    assert sorted(i for _, atoms in bins for i in atoms) == list(range(64))
    assert [atoms[0] for _, atoms in bins] == sorted(atoms[0] for _, atoms in bins)  # higher value, later bin
    assert all(colour.startswith("#") and len(colour) == 7 for colour, _ in bins)
    assert len(viz.colour_bins(np.ones(8))) == 1  # constant values: one colour
    assert viz.colour_bins([5.0, -1.0], low=0.0, high=1.0)[0][1] == [1]  # clipped to the range


class StopAfter(viz.Job):
    """A job whose Stop is pressed after ``n`` progress reports."""

    def __init__(self, n):
        super().__init__()
        self.reports, self.n = 0, n

    def report(self, progress):
        self.reports += 1
        super().report(progress)

    @property
    def stop_requested(self):
        return self.reports >= self.n


def test_md_comparison_runs_potentials_in_turn_and_stops_between_chunks():
    figure = viz.md_figure(widget=False)
    config = MDConfig(temperature_k=600.0, chunk_steps=5)
    potentials = {"SW": sw_potential("Si"), "SW again": sw_potential("Si")}
    outcome = viz.compare_md(potentials, diamond("Si"), config, n_chunks=10, figure=figure, job=StopAfter(3))
    assert [outcome[name]["chunks"] for name in potentials] == [2, 1]  # stopped after three chunks in all
    assert outcome["SW"]["instability"] is None and outcome["SW"]["last"].step == 10
    traces = {trace.meta: trace for trace in figure.data}
    assert len(traces["SW/temperature"].x) == 10 and len(traces["SW again/temperature"].x) == 5


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_read_quick_mode_through_mlpkit(path):
    notebook = json.loads(path.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code)
    source = "".join("".join(cell["source"]) for cell in code)
    assert "environ" not in source and "getenv" not in source  # quick mode comes from mlpkit.viz.quick_mode()


def test_the_tutorial_notebooks_are_all_there():
    names = [path.name[:2] for path in NOTEBOOKS]
    assert names == ["00", "01", "02", "03", "04", "05", "06", "07"]


def test_active_learning_rounds_plot_per_strategy_and_tabulate_side_by_side():
    from mlpkit.active import Round

    figure = viz.active_learning_figure(widget=False)
    rounds = {"active": [Round(0, 0.5, np.nan, np.array([0.2, 0.4])), Round(2, 0.3, 12.0, np.array([0.1, 0.1]))],
              "random": [Round(0, 0.5, np.nan, np.array([0.2, 0.4]))]}
    for strategy, runs in rounds.items():
        for round_ in runs:
            viz.record_round(figure, strategy, round_)
    lines = {trace.meta: trace for trace in figure.data}
    assert list(lines["active/error"].x) == [0, 2] and list(lines["active/error"].y) == [0.5, 0.3]
    assert list(lines["active/disagreement"].y) == pytest.approx([0.3, 0.1])  # the mean over the candidates
    assert lines["active/error"].line.color != lines["random/error"].line.color
    table = viz.selection_table(rounds)
    assert "<td>2</td><td>0.300 (0.100)</td><td>–</td>" in table  # random has no round with 2 labels


def test_structure_view_keeps_one_colour_scale_and_moves_atoms_without_reloading():
    atoms = diamond("Si")
    view = viz.StructureView(atoms, np.linspace(0.0, 1.0, len(atoms)), label="force error (eV/Å)")
    assert "force error (eV/Å): 0 (purple) … 1 (yellow)" in view.caption.value
    n_components = len(view.view._ngl_component_ids)
    view.update(atoms.positions + 0.1, np.zeros(len(atoms)), note="0.20 ps")
    assert len(view.view._ngl_component_ids) == n_components  # recoloured, not reloaded
    assert "0 (purple) … 1 (yellow)" in view.caption.value and "0.20 ps" in view.caption.value


def test_stop_ends_a_training_run_after_the_current_epoch_and_keeps_its_best_model():
    from mlpkit.data import load_dataset, sw_data_path
    from mlpkit.models import ModelConfig
    from mlpkit.training import TrainConfig, train

    ge = load_dataset(sw_data_path("Ge", "test"))
    tiny = TrainConfig(model=ModelConfig("painn", features=8, layers=1), max_epochs=50, warmup_epochs=1, batch_size=4)
    figure = viz.training_figure(widget=False)

    def fit(settings, job):
        callback = viz.epoch_callback(figure, "scratch", job, tiny.max_epochs)
        return train(ge.first(2), ge.select([5, 6, 7]), tiny, progress=False,
                     callback=lambda epoch, metrics: (epoch == 1 and job.stop()) or callback(epoch, metrics))

    job = viz.Job()
    job.start(fit, {})
    assert job.wait(120) and job.state == STOPPED
    assert [row["epoch"] for row in job.result.history] == [0, 1]  # 50 epochs asked, stopped after the second
    assert job.result.checkpoint.params is not None
    assert list(next(t for t in figure.data if t.meta == "scratch/force").x) == [0, 1]


def test_the_stability_map_fills_only_the_cells_rows_have_reached_and_names_its_axes():
    figure = viz.stability_map_figure([5, 20], ["scratch", "transfer"], [605.0, 1816.5], widget=False)
    assert [trace.name for trace in figure.data] == ["scratch", "transfer"]
    assert figure.layout.xaxis.title.text == "temperature (K)" and figure.layout.yaxis.title.text == "Ge training frames"
    row = {"size": 20, "init": "transfer", "temperature_k": 1816.5, "fraction_stable": 0.25, "mean_time_to_failure_fs": 300.0,
           "replicas": 4}
    viz.set_stability_map(figure, [row])
    transfer, scratch = np.array(figure.data[1].z, float), np.array(figure.data[0].z, float)
    assert transfer[1, 1] == 0.25 and np.isnan(transfer).sum() == 3 and np.isnan(scratch).all()


def test_the_selection_dropdown_trains_both_inits_on_the_diverse_frames():
    from mlpkit.study import StudyConfig, load_study_data
    from conftest import random_checkpoint

    data = load_study_data(StudyConfig())
    source = random_checkpoint("painn")
    assert [r.name for r in viz.recipes(data, selection="diverse")] == ["scratch-diverse", "transfer-diverse"]
    assert all(r.selection == "diverse" for r in viz.recipes(data, selection="diverse"))
    ranked = viz.with_selection(data, source, "diverse")
    assert viz.with_selection(data, source, "random") is data and viz.with_selection(ranked, source, "diverse") is ranked
    first = ranked.frames("diverse", 10)
    assert len(first) == 10 and first != data.frames("random", 10)
    assert len(set(first.group)) == len(set(data.ge_pool.group))  # ten diverse frames hold every kind of the pool
