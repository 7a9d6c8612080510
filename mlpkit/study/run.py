"""Scheduling the sweep: cells (size, initialisation) shared out over processes and devices.

Cells are independent, so they are shared out: over processes by ``jax.process_index()`` (each takes
every P-th cell first, then whatever another process has not started, from the end; all read the
others' results from the shared ``out/runs`` folder) and, within a process, round-robin over
``jax.local_devices()``, one thread per device. The numbers do not depend on how the cells were shared.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
from tqdm.auto import tqdm

from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.md.stability_grid import read_stability_csv
from mlpkit.study.cells import ranked_order, recipe_of, source_model, target_run
from mlpkit.study.config import StudyConfig, data_checksums, load_study_data
from mlpkit.study.report import learning_curve_png, write_report
from mlpkit.study.results import breakdown_on_test_set, result_rows, write_results


def claim_order(cells: list, index: int, count: int) -> list:
    """The order process ``index`` of ``count`` takes cells in: its share (every count-th, from its index),
    then the others' cells from the end of the sweep, so that a process whose share was finished before a
    resume takes over the cells the others would reach last."""
    mine = cells[index::count]
    return mine + [cell for cell in reversed(cells) if cell not in mine]


def _submit_on_devices(cells: list, run_cell, devices: list, executors: list) -> dict:
    """{cell: future of run_cell(cell)}, the cells dealt round-robin to ``devices``, one worker thread each."""
    def on(device):
        def run(cell):
            with jax.default_device(device):
                return run_cell(cell)
        return run

    return {cell: executors[k % len(devices)].submit(on(devices[k % len(devices)]), cell) for k, cell in enumerate(cells)}


def run_study(config: StudyConfig, out, progress: bool = True, on_row=None, devices=None, process=None,
              wait_timeout_s: float = 600.0, stop_requested=None) -> list[dict]:
    """Run (or resume) the whole sweep; writes ``out/results.csv``, ``results.json`` and ``report.html``.

    ``on_row(row)`` is called as each row becomes available (live plots). Once ``stop_requested()`` is true,
    no further run starts: the rows of the runs finished by then are returned, and the report is not written. ``devices`` (default
    ``jax.local_devices()``) run this process's cells round-robin; ``process`` = (index, count) (default
    ``jax.process_index()``, ``jax.process_count()``) picks its share (:func:`claim_order`). Process 0 trains
    the source model and writes the files; the other processes wait for the source, and give up with an
    error after ``wait_timeout_s`` in which no process held its folder.
    """
    out = Path(out)
    devices = jax.local_devices() if devices is None else list(devices)
    index, count = (jax.process_index(), jax.process_count()) if process is None else process
    draws = [_prepared_draw(draw, out, progress, wait_timeout_s if index != 0 else None) for draw in config.draws()]
    # draws innermost: neighbouring cells cost alike, so every-P-th shares start balanced
    cells = [(size, init, k) for size in config.sizes for init in config.inits for k in range(len(draws))]
    inner_progress = progress and len(devices) == 1

    def run_cell(cell, claim=False):
        if stop_requested is not None and stop_requested():
            return None
        size, init, k = cell
        draw, data, checksums, source = draws[k]
        return target_run(draw, data, checksums, source, size, init, out, inner_progress, claim)

    executors = [ThreadPoolExecutor(1) for _ in devices]
    try:
        # every cell is claimed (skipped while another process trains it), then read back in sweep order
        futures = _submit_on_devices(claim_order(cells, index, count), lambda cell: run_cell(cell, claim=True), devices,
                                     executors)
        rows = []
        for cell in tqdm(cells, desc="study", unit="run", disable=not progress):
            claimed = futures[cell].result()
            # another process had it: wait for its lock, then read it back (or train it, if that process stopped)
            claimed = claimed if claimed is not None else run_cell(cell)
            if claimed is None:  # stopped
                return rows
            run, n_frames, path = claimed
            size, init, k = cell
            for row in result_rows(config.data, n_frames, init, draws[k][0].seeds, run["test"], run["wall_s"],
                                   path.relative_to(out)):
                rows.append(row)
                if on_row is not None:
                    on_row(row)
            if index == 0:
                write_results(out, config, rows)
    finally:
        for executor in executors:
            executor.shutdown(cancel_futures=True)
    if index == 0:
        write_study_files(config, draws[0][1].ge_test, out, rows, read_stability_csv(out / "stability.csv"))
    return rows


def _prepared_draw(config: StudyConfig, out: Path, progress: bool, source_wait_s: float | None) -> tuple:
    """(config, its data with every ranking the inits need, data checksums, source run or None) of one draw."""
    data, checksums = load_study_data(config), data_checksums(config)
    too_large = [size for size in config.sizes if size > len(data.ge_pool)]
    if too_large:
        raise MlpkitError(f"the Ge pool of this study holds {len(data.ge_pool)} training frames, fewer than the sizes "
                          f"{too_large} asked for (size 0 takes all of them)")
    recipes = [recipe_of(config, init) for init in config.inits]
    source = source_model(config, data, checksums, out, progress, source_wait_s) if any(r.needs_source for r in recipes) else None
    for selection in sorted({recipe.selection for recipe in recipes} - {"random"}):
        data = data.with_ranking(selection, ranked_order(selection, config, data, source, checksums, out))
    return config, data, checksums, source


def write_study_files(config: StudyConfig, test: Dataset, out: Path, rows: list[dict], stability: list[dict] = ()) -> None:
    """``results.csv``, ``results.json`` and ``report.html`` of finished ``rows``, with the errors by group
    and temperature on ``test`` and the stability map of ``stability`` (rows of ``stability.csv``)."""
    breakdown, parity = breakdown_on_test_set(test, out, rows, config.max_train_temperature_k)
    write_results(out, config, rows, breakdown)
    _write_report(config, out, rows, breakdown, parity, stability)


def _write_report(config: StudyConfig, out: Path, rows: list[dict], breakdown: list[dict], parity: dict,
                  stability: list[dict]) -> None:
    """The learning-curve figures and ``report.html``, with the property table where the folder has one."""
    for metric in ("force_mae_ev_per_a", "energy_mae_mev_per_atom"):
        learning_curve_png(rows, out / "figures" / f"learning_curve_{metric}.png", metric, f"Si → Ge on {config.data} data")
    properties = out / "properties_table.json"
    write_report(rows, out / "report.html", title=f"Si → Ge transfer on {config.data} data: learning curves",
                 breakdown=breakdown, parity=parity, stability=stability,
                 properties=json.loads(properties.read_text()) if properties.exists() else None)


def refresh_report(out, stability: list[dict] | None = None) -> Path:
    """Rewrite the report of the finished study in ``out`` from its files, with the stability map of
    ``stability`` (after ``mlpkit stability``; default: the folder's ``stability.csv``). ``results.csv`` and
    ``results.json`` stay as the study wrote them: the models are read again only for the parity plots."""
    out = Path(out)
    stability = read_stability_csv(out / "stability.csv") if stability is None else stability
    document = json.loads((out / "results.json").read_text())
    config = StudyConfig.from_dict(document["config"])
    rows = [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in document["rows"]]
    _, parity = breakdown_on_test_set(load_study_data(config).ge_test, out, rows, config.max_train_temperature_k)
    _write_report(config, out, rows, document["breakdown"], parity, stability)
    return out / "report.html"
