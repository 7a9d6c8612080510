"""A control panel: widgets for the settings, Run and Stop buttons, a status line, and the outputs it drives."""

from __future__ import annotations

import asyncio
import html
from typing import Any, Callable, Mapping

import ipywidgets as widgets
from plotly.basedatatypes import BaseFigure

from mlpkit.viz.figures import LiveFigure, start_run
from mlpkit.viz.jobs import FAILED, FINISHED, RUNNING, STOPPED, Job

POLL_INTERVAL_S = 0.1  # how often a cell awaiting a run looks whether it has ended


class RunPanel:
    """Runs ``work(settings, job)`` with the values of ``controls`` (read once, at start).

    Run is disabled while a run is going, so a second press cannot start a second run on the same
    figures; Stop asks the work to stop after its current step and keeps what it has done. Each run
    draws its own lines: the figures among ``outputs`` keep the previous run faded as "earlier"
    (:func:`~mlpkit.viz.figures.start_run`). With ``summary(result) -> HTML``, the panel shows that
    table of the latest run's result, replaced whenever a run ends.
    ``run()`` is what a notebook cell calls; it returns at once. A later cell that needs the result
    awaits :meth:`finished`, which leaves the kernel free to handle the buttons meanwhile, so Stop works
    under Run All too (a blocking wait would queue the click until the run had ended).
    """

    def __init__(self, work: Callable[[Mapping[str, Any], Job], Any], controls: Mapping[str, widgets.ValueWidget] | None = None,
                 outputs=(), title: str = "", summary: Callable[[Any], str] | None = None):
        self.work = work
        self.figures = [output for output in outputs if isinstance(output, BaseFigure)]
        self.summary = summary
        self.table = widgets.HTML()
        self.controls = dict(controls or {})
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.status = widgets.HTML(value="ready")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.job.stop())
        self.job = Job(on_change=self._refresh)
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        buttons = widgets.HBox([self.run_button, self.stop_button, self.status])
        views = [output.view if isinstance(output, LiveFigure) else output for output in outputs]
        self.widget = widgets.VBox([*header, *self.controls.values(), buttons, *views, self.table])

    def settings(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def run(self) -> None:
        """Start a run with the current settings in the background; does nothing while a run is going."""
        if self.job.running:
            return
        for figure in self.figures:
            start_run(figure)
        self.table.value = ""
        self.job.start(self.work, self.settings())

    async def finished(self):
        """The latest run's result once it has ended (``await panel.finished()`` in a cell); re-raises its error.

        Awaiting yields to the kernel between looks, so widget messages (a Stop click) are handled meanwhile.
        """
        while not self.job.wait(0):
            await asyncio.sleep(POLL_INTERVAL_S)
        if self.job.error is not None:
            raise self.job.error
        return self.job.result

    @property
    def result(self):
        return self.job.result

    @property
    def stopped(self) -> bool:
        """Whether the latest run ended at a Stop (its result holds what was done by then)."""
        return self.job.state == STOPPED

    def _refresh(self, job: Job) -> None:
        if not job.running:  # the run's last changes may have come faster than a figure draws them
            for figure in self.figures:
                if isinstance(figure, LiveFigure):
                    figure.redraw()
        self.run_button.disabled = job.running
        self.stop_button.disabled = job.state != RUNNING
        colour = "#b00020" if job.state == FAILED else "inherit"
        self.status.value = f'<span style="color:{colour}">{html.escape(job.status)}</span>'
        if self.summary is not None and job.state in (FINISHED, STOPPED) and job.result:
            self.table.value = self.summary(job.result)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

