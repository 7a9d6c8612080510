"""Notebooks in a real browser: JupyterLab serves them, headless Chromium runs every cell, and the plotly
figures, the widget controls and the nglview 3D canvas render (offline, with no console errors). Then as a
student does. Notebook 00: Stop under Run All, move the slider and press Run again (the new run draws fresh lines,
none runs backwards, the panel's table follows), reload the page (the plots come back drawn) and press Run
there (the restored plot takes the new lines). Notebook 05: a second MD run and the analysis cells run again (no line runs back in
time, nothing drawn twice). Notebook 06: Stop pressed during the study under Run All (no further run starts, and
every later cell reads the runs kept)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlpkit.viz import TutorialConfig

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))  # Debian's package; override with $CHROMIUM
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOKS = ("00_quick_tour.ipynb", "05_properties.ipynb", "06_full_study.ipynb")
RUN_TIMEOUT_S = 600
QUICK_EPOCHS = TutorialConfig().quick().train.max_epochs  # of the notebook's trainings under MLPKIT_QUICK=1

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing on CI: .ci/run installs it (apt-get install chromium)", pytrace=False)
    pytest.skip(f"no headless Chromium at {CHROMIUM} (apt-get install chromium); the browser test needs it",
                allow_module_level=True)

from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright  # noqa: E402  (only once Chromium is known to be there)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a token, serving copies of the notebooks (autosave never touches the repository)
    beside the committed results they read; ``lab(notebook)`` is the address that opens one."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    for notebook in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / notebook, root / "notebooks" / notebook)
    (root / "data").symlink_to(REPO / "data")  # notebook 06 opens ../data/results/sw
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    # no network: no news or update checks from JupyterLab
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    # every cell in the page (no virtual scrolling), so that all outputs can be inspected
    settings = tmp_path / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "MLPKIT_QUICK": "1", "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.extension_manager=readonly",
         f"--LabApp.user_settings_dir={tmp_path / 'user-settings'}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except (OSError, http.client.HTTPException):
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(1)
        yield lambda notebook: f"{url}/lab/tree/notebooks/{notebook}?token={token}&reset"
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


STARTED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""

RUN_ALL_WHEN_READY = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    if (!panel || !panel.sessionContext) return false;
    await panel.sessionContext.ready;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (!kernel || kernel.connectionStatus !== 'connected' || kernel.status !== 'idle') return false;
    app.commands.execute('notebook:run-all-cells');  // not awaited: it settles when every cell has run
    return true;
}"""


def run_all(page, attempts: int = 20) -> None:
    """Run All once the notebook's kernel is connected and idle (retried: a kernel that is still connecting drops it)."""
    for _ in range(attempts):
        if page.evaluate(RUN_ALL_WHEN_READY):
            try:
                page.wait_for_function(STARTED, timeout=20_000)
                return
            except PlaywrightTimeout:
                pass
        page.wait_for_timeout(3000)
    pytest.fail("the notebook never started running")


ALL_CELLS_DONE = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
    const busy = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="busy"]');
    const failed = [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.textContent.includes('Traceback'));
    return prompts.length > 0 && !busy && (failed || prompts.every(p => /\\[\\d+\\]/.test(p)));
}"""


KERNEL_EXECUTE = """async code => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    await kernel.requestExecute({code}).done;
}"""

TRAINING_PLOT = """() => {
    const plot = document.querySelectorAll('.js-plotly-plot')[0];
    return plot.data.map(trace => ({name: trace.name, x: Array.from(trace.x || [])}));
}"""


def run_training_panel_again(page) -> None:
    """Move notebook 00's slider to 15 Ge frames (in the kernel: the widget follows) and press its Run button."""
    page.evaluate(KERNEL_EXECUTE, "training.controls['size'].value = 15")
    page.wait_for_function("() => [...document.querySelectorAll('.widget-readout')].some(r => r.textContent.trim() === '15')",
                           timeout=30_000)
    page.locator(".jupyter-widgets button", has_text="Run").first.click()
    page.wait_for_function("() => document.body.innerText.includes('scratch (N=15)')", timeout=60_000)
    page.evaluate(KERNEL_EXECUTE, "training.job.wait()")
    page.wait_for_function("() => [...document.querySelectorAll('table')].some(t => t.innerText.includes('15'))",
                           timeout=60_000)


def run_training_panel_after_reload(page) -> None:
    """Run pressed on the reloaded page: the restored plot takes the new run's lines (fading the one before); then
    Stop, which the reloaded page's button reaches too."""
    page.locator(".jupyter-widgets button", has_text="Run").first.click()
    page.wait_for_function(f"""() => {{
        const names = ({TRAINING_PLOT})().filter(t => t.x.length > 1).map(t => t.name);
        return names.includes('earlier: scratch (N=15)') && names.includes('scratch (N=15)');
    }}""", timeout=120_000)
    page.locator(".jupyter-widgets button", has_text="Stop").first.click()
    page.evaluate(KERNEL_EXECUTE, "training.job.wait()")
    page.wait_for_function("() => document.body.innerText.includes('stopped (results so far kept)')", timeout=60_000)
    for trace in page.evaluate(TRAINING_PLOT):
        assert trace["x"] == sorted(trace["x"]), f"{trace['name']} runs backwards: {trace['x']}"


def check_second_run(page) -> None:
    traces = page.evaluate(TRAINING_PLOT)
    names = {trace["name"] for trace in traces}
    assert {"scratch (N=15)", "transfer (N=15)", "earlier: scratch (N=10)", "earlier: transfer (N=10)"} <= names, names
    for trace in traces:
        assert trace["x"] == sorted(trace["x"]), f"{trace['name']} runs backwards: {trace['x']}"
    tables = page.locator(".jp-OutputArea-output table").all_inner_texts()
    assert any("15" in table and "scratch" in table for table in tables), tables


PLOTS_DRAWN = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.length >= 2 && plots.every(p => (p.data || []).some(t => (t.x || []).length > 0));
}"""


PLOTS_STATE = """() => ({
    plots: [...document.querySelectorAll('.js-plotly-plot')].map(p => (p.data || []).map(t => (t.x || []).length)),
    widgets: document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    loading: document.body.innerText.includes('Loading widget'),
})"""

NOTEBOOK_SAVED = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.context.save();
    return !panel.context.model.dirty;
}"""


def save_notebook(page) -> None:
    assert page.evaluate(NOTEBOOK_SAVED), "the notebook is still unsaved after a save"


def open_notebook(page, lab_url: str) -> None:
    page.goto(lab_url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)


# the page shows a progress line whose count (the pattern's one group) is at least the one given: a status line shows
# each count only until the next arrives, and a loaded browser can take several of them within one frame
PROGRESS_REACHED = """([pattern, count]) => [...document.body.innerText.matchAll(new RegExp(pattern, 'g'))]
    .some(match => parseInt(match[1], 10) >= count)"""


def run_all_cells(page, stop_at: tuple[str, int] | None = None) -> None:
    """Run All and wait for every cell; with ``stop_at`` (a progress pattern with one group and a count,
    see :data:`PROGRESS_REACHED`), press the first panel's Stop once its status has reached that count (the cells after
    the panel are queued by then, and one of them is awaiting the run)."""
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()  # make the notebook the current widget
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")  # autosave may have kept some
    run_all(page)
    if stop_at is not None:
        page.wait_for_function(PROGRESS_REACHED, arg=list(stop_at), timeout=RUN_TIMEOUT_S * 1000, polling=200)
        page.locator(".jupyter-widgets button", has_text="Stop").first.click()
    page.wait_for_function(ALL_CELLS_DONE, timeout=RUN_TIMEOUT_S * 1000, polling=500)
    page.wait_for_timeout(3000)  # let the last widget messages render


def check_stopped_early(page, epochs: int) -> None:
    """The first run ended at the Stop, epochs before its last one, and the notebook ran on from what it kept."""
    assert page.get_by_text("stopped (results so far kept)").count() >= 1
    transfer = [trace for trace in page.evaluate(TRAINING_PLOT) if trace["name"] == "transfer (N=10)"]
    assert transfer and max(transfer[0]["x"]) < epochs, transfer


def no_tracebacks(page) -> None:
    failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    tracebacks = [text for text in failed if "Error" in text and "Traceback" in text]
    assert not tracebacks, tracebacks[0][-2000:]


@contextlib.contextmanager
def chromium_page(tmp_path: Path, name: str):
    """A Chromium page that records console errors, leaves a full-page screenshot ``name``.png however the test
    ends, and fails the test on any console error."""
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            page.set_viewport_size({"width": 1400, "height": 6000})  # JupyterLab scrolls inside the page: grow it
            page.wait_for_timeout(2000)
            page.evaluate("() => document.querySelectorAll('.jp-WindowedPanel-outer').forEach(e => e.scrollTo(0, 0))")
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
            print(f"screenshot: {tmp_path / f'{name}.png'}")
            browser.close()
    assert not errors, f"browser console errors: {errors}"


def test_notebook_00_runs_and_renders_in_chromium(lab, tmp_path):
    with chromium_page(tmp_path, "notebook_00") as page:
        open_notebook(page, lab(NOTEBOOKS[0]))
        run_all_cells(page, stop_at=(r"transfer \(N=10\): epoch (\d+)/", 2))  # Stop works under Run All
        no_tracebacks(page)
        check_stopped_early(page, QUICK_EPOCHS)
        assert page.locator(".js-plotly-plot").count() >= 2  # training curves and the MD thermo plot
        assert page.locator(".jupyter-widgets .widget-slider, .jupyter-widgets.widget-slider").count() >= 1
        assert page.locator(".jupyter-widgets button", has_text="Run").count() >= 2
        ngl_canvases = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output canvas')]
            .filter(c => !c.closest('.js-plotly-plot'))
            .filter(c => c.getBoundingClientRect().width > 200 && c.getBoundingClientRect().height > 150).length""")
        assert ngl_canvases >= 1, "the nglview canvas did not render"
        run_training_panel_again(page)
        check_second_run(page)
        save_notebook(page)  # as a student does before a reload (autosave runs only every 2 minutes)
        open_notebook(page, lab(NOTEBOOKS[0]))  # a reload: the live kernel's plots come back drawn, with every line
        try:
            page.wait_for_function(PLOTS_DRAWN, timeout=120_000)
        except PlaywrightTimeout:
            pytest.fail(f"after the reload the plots are not drawn: {page.evaluate(PLOTS_STATE)}")
        run_training_panel_after_reload(page)


CELL_PLOTS = """index => [...document.querySelectorAll('.jp-Notebook .jp-Cell')[index].querySelectorAll('.js-plotly-plot')]
    .map(plot => plot.data.map(trace => ({name: trace.name, x: Array.from(trace.x || [])})))"""

RUN_CELL = """async index => {
    const panel = window.jupyterapp.shell.currentWidget;
    panel.content.activeCellIndex = index;
    await window.jupyterapp.commands.execute('notebook:run-cell');
}"""


def cell_index(page, text: str) -> int:
    """The index of the first cell whose source holds ``text``."""
    index = page.evaluate("""text => window.jupyterapp.shell.currentWidget.content.widgets
        .findIndex(cell => cell.model.sharedModel.getSource().includes(text))""", text)
    assert index >= 0, f"no cell holds {text!r}"
    return index


def cell_plot(page, index: int) -> list[dict]:
    """The traces (name, x) of the one plot in cell ``index``."""
    plots = page.evaluate(CELL_PLOTS, index)
    assert len(plots) == 1, f"cell {index} shows {len(plots)} plots, not one: {plots}"
    return plots[0]


def rerun_cells(page, indices) -> None:
    for index in indices:
        page.evaluate(RUN_CELL, index)
    page.wait_for_function(ALL_CELLS_DONE, timeout=RUN_TIMEOUT_S * 1000, polling=1000)
    page.wait_for_timeout(2000)


def test_notebook_05_second_md_run_and_rerun_analysis_draw_each_line_once(lab, tmp_path):
    with chromium_page(tmp_path, "notebook_05") as page:
        open_notebook(page, lab(NOTEBOOKS[1]))
        run_all_cells(page)
        no_tracebacks(page)
        md_cell, analysis_cell = cell_index(page, "md = viz.RunPanel("), cell_index(page, 'titles = ("g(r)"')
        first_run = cell_plot(page, md_cell)
        models = {trace["name"] for trace in first_run}
        assert models >= {"SW (truth)", "scratch", "transfer"}, models
        page.locator(".jupyter-widgets button", has_text="Run").nth(1).click()  # the MD panel's Run
        page.wait_for_function(f"index => ({CELL_PLOTS})(index)[0]?.some(trace => trace.name.startsWith('earlier')) ?? false",
                               arg=md_cell, timeout=60_000)
        page.evaluate(KERNEL_EXECUTE, "md.job.wait()")
        page.wait_for_timeout(2000)
        second_run = cell_plot(page, md_cell)
        current = [trace for trace in second_run if not trace["name"].startswith("earlier")]
        earlier = [trace for trace in second_run if trace["name"].startswith("earlier")]
        assert len(current) == len(first_run) and len(earlier) == len(first_run), [t["name"] for t in second_run]
        for trace in current:  # each line of the new run starts at 0 and only goes forward in time
            assert trace["x"] and trace["x"][0] < 0.05 and trace["x"] == sorted(trace["x"]), (trace["name"], trace["x"][:5])
        rerun_cells(page, [cell_index(page, "await md.finished()"), analysis_cell])
        no_tracebacks(page)
        analysis = cell_plot(page, analysis_cell)
        names = [trace["name"] for trace in analysis]
        assert len(names) == 3 * len(set(names)), names  # g(r), angles and DOS once per model that stayed physical


def test_notebook_06_stop_during_run_all_keeps_the_finished_runs_and_starts_no_other(lab, tmp_path):
    with chromium_page(tmp_path, "notebook_06") as page:
        open_notebook(page, lab(NOTEBOOKS[2]))
        run_all_cells(page, stop_at=(r"(\d+) / 4 runs done", 1))
        no_tracebacks(page)
        assert page.get_by_text("stopped (results so far kept)").count() >= 1
        text = page.evaluate("() => document.body.innerText")
        kept = [line for line in text.splitlines() if line.startswith("stopped after")]
        assert kept and int(kept[0].split()[2]) < 4, kept  # "stopped after k of 4 runs": the rest never started
        assert not any(f"{count} / 4 runs done" in text for count in range(int(kept[0].split()[2]) + 1, 9))
        assert "cells done" in text and "Traceback" not in text  # the map ran on the models kept
