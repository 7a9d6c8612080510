"""Plotly figures that grow while work runs: training curves, MD thermodynamics, parity, learning curves, active learning.

Each ``*_figure`` returns a :class:`LiveFigure` (``widget=True``, live in a notebook) or a plain ``Figure``;
the ``record_*`` / ``add_*`` functions append to either, so they are tested without a browser.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import ipywidgets as widgets
import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io
from IPython.display import display
from plotly.subplots import make_subplots

from mlpkit.study.report import learning_curve_figure, parity_trace, stability_figure, stretch_diagonal
from mlpkit.study.report import parity_figure as study_parity_figure

PALETTE = plotly.colors.qualitative.Plotly


PLOTLY_MIME = "application/vnd.plotly.v1+json"  # drawn by JupyterLab's plotly renderer, offline
REDRAW_INTERVAL_S = 0.5  # a figure changed faster than this is drawn again at the next change after it, or by redraw()


class LiveFigure(go.Figure):
    """A figure that draws itself again in a notebook after its changes, from any thread.

    The drawing is an output of an ``ipywidgets.Output``, which the kernel keeps: a page reload shows the
    latest state (a plotly ``FigureWidget`` comes back empty and then refuses updates), and nothing waits on
    the browser loading plotly's 5 MB widget bundle. Changes made within :data:`REDRAW_INTERVAL_S` of the last
    drawing wait for the next change or for :meth:`redraw` (the panels call it when a run ends).
    """

    def __init__(self, figure: go.Figure):
        super().__init__(figure)
        self._view = widgets.Output()
        self._drawn_at_s = -np.inf
        self._drawing = threading.Lock()
        self.redraw()

    @property
    def view(self) -> widgets.Output:
        """The widget to put in a layout (``VBox``, a panel's outputs)."""
        return self._view

    @contextlib.contextmanager
    def batch_update(self):
        outermost = not self._in_batch_mode
        with super().batch_update():
            yield
        if outermost and time.monotonic() - self._drawn_at_s >= REDRAW_INTERVAL_S:
            self.redraw()

    def redraw(self) -> None:
        """Draw the figure as it is now."""
        with self._drawing:
            drawing = json.loads(plotly.io.to_json(self, validate=False))  # numpy arrays become JSON lists
            drawing["config"] = {"displaylogo": False}
            self._view.outputs = ({"output_type": "display_data", "metadata": {},
                                   "data": {PLOTLY_MIME: drawing, "text/plain": "<a plotly figure>"}},)
            self._drawn_at_s = time.monotonic()

    def _ipython_display_(self):
        self.redraw()
        display(self._view)

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        self.redraw()
        return self._view._repr_mimebundle_(include=include, exclude=exclude, **kwargs)


def _new(figure: go.Figure, widget: bool) -> go.Figure:
    figure.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return LiveFigure(figure) if widget else figure


EARLIER = "earlier: "  # name prefix of the previous run's traces, kept faded beside the new run


def _series(figure: go.Figure, name: str, panel: str, row: int = 1, col: int = 1, **style):
    """The trace of run ``name`` in ``panel``, added on first use; one colour per run across panels."""
    for trace in figure.data:
        if trace.meta == f"{name}/{panel}":
            return trace
    runs = list(dict.fromkeys(t.legendgroup for t in figure.data if t.meta and not t.name.startswith(EARLIER)))
    colour = PALETTE[(runs.index(name) if name in runs else len(runs)) % len(PALETTE)]
    first = name not in runs
    figure.add_trace(
        go.Scatter(x=[], y=[], name=name, legendgroup=name, showlegend=first, meta=f"{name}/{panel}",
                   mode="lines", line={"color": colour}, **style),
        row=row, col=col,
    )
    return figure.data[-1]


def start_run(figure: go.Figure) -> None:
    """Before a new run of a panel: the traces of the previous run stay, faded and labelled "earlier: …",
    and those of any run before it are removed, so a new run always draws fresh lines of its own. The faded
    traces share one legend entry, under the title "earlier run", which shows or hides them all."""
    with figure.batch_update():
        figure.data = [t for t in figure.data if not (t.meta and t.name.startswith(EARLIER))]
        faded = [trace for trace in figure.data if trace.meta]
        for index, trace in enumerate(faded):
            trace.update(name=EARLIER + trace.name, legendgroup=EARLIER, meta=EARLIER + trace.meta, opacity=0.35,
                         line={"dash": "dot"}, showlegend=index == 0, legendgrouptitle_text="earlier run")


def _append(trace, x, y) -> None:
    trace.x = (*(trace.x or ()), *np.atleast_1d(x).tolist())
    trace.y = (*(trace.y or ()), *np.atleast_1d(y).tolist())


def training_figure(widget: bool = True) -> go.Figure:
    """Training loss and validation force MAE (eV/Å) against epoch, log scales, one colour per run."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation force MAE (eV/Å)"))
    figure.update_yaxes(type="log")
    figure.update_yaxes(title_text="loss (weighted mean squared errors)", row=1, col=1)
    figure.update_yaxes(title_text="force MAE (eV/Å)", row=1, col=2)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(height=330)
    return _new(figure, widget)


def record_epoch(figure: go.Figure, name: str, metrics: dict) -> None:
    """Add one epoch of ``train``'s callback metrics to run ``name`` (epoch 0 has no training loss yet)."""
    with figure.batch_update():
        if np.isfinite(metrics["train_loss"]):
            _append(_series(figure, name, "loss", 1, 1), metrics["epoch"], metrics["train_loss"])
        _append(_series(figure, name, "force", 1, 2), metrics["epoch"], metrics["force_mae_ev_per_a"])


MD_PANELS = (("temperature", "T (K)"), ("potential", "E_pot (eV/atom)"), ("total", "E_tot (eV/atom)"))


def md_figure(widget: bool = True) -> go.Figure:
    """Temperature, potential and total energy per atom against time (ps), one colour per run."""
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05)
    for row, (_, title) in enumerate(MD_PANELS, start=1):
        figure.update_yaxes(title_text=title, row=row, col=1)
    figure.update_xaxes(title_text="time (ps)", row=3, col=1)
    figure.update_layout(height=480)
    return _new(figure, widget)


def record_md_frame(figure: go.Figure, name: str, frame, n_atoms: int, dt_fs: float) -> None:
    """Append the per-step values of one MD chunk (an ``MDFrame``) to run ``name``."""
    steps = np.arange(frame.step - len(frame.potential_energy_ev) + 1, frame.step + 1)
    time_ps = steps * dt_fs / 1000.0
    potential = frame.potential_energy_ev / n_atoms
    values = (frame.temperature_k, potential, potential + frame.kinetic_energy_ev / n_atoms)
    with figure.batch_update():
        for row, ((panel, _), y) in enumerate(zip(MD_PANELS, values), start=1):
            _append(_series(figure, name, panel, row, 1), time_ps, y)


def parity_figure(widget: bool = True) -> go.Figure:
    """Predicted against reference force components (eV/Å), filled by :func:`add_parity`."""
    figure = study_parity_figure({})
    figure.update_layout(height=420, width=520)
    return _new(figure, widget)


def add_parity(figure: go.Figure, name: str, reference, predicted) -> None:
    """Add one model's force components, labelled with their MAE, and stretch the diagonal over all points."""
    mae = float(np.mean(np.abs(np.ravel(predicted) - np.ravel(reference))))
    with figure.batch_update():
        colour = PALETTE[(len(figure.data) - 1) % len(PALETTE)]
        figure.add_trace(parity_trace(f"{name} (MAE {mae:.3f} eV/Å)", reference, predicted, colour))
        stretch_diagonal(figure)


def set_learning_curves(figure: go.Figure, rows: list[dict], metric: str = "force_mae_ev_per_a") -> None:
    """Show ``rows`` (``mlpkit.study`` result rows) as :func:`mlpkit.study.learning_curve_figure` does; the
    curves are this run's, so a panel's next run fades them as "earlier" (:func:`start_run`)."""
    target = learning_curve_figure(rows, metric)
    with figure.batch_update():
        figure.update_layout(xaxis=target.layout.xaxis, yaxis=target.layout.yaxis)
        for new in target.data:
            old = next((t for t in figure.data if t.name == new.name), None)
            if old is None:
                figure.add_trace(new.update(meta=f"{new.name}/curve"))
            else:
                old.x, old.y, old.error_y = new.x, new.y, new.error_y


def stability_map_figure(sizes, inits, temperatures_k, widget: bool = True) -> go.Figure:
    """An empty stability map over the grid (Ge set sizes × temperatures, one panel per initialisation) for
    :func:`set_stability_map`."""
    return _new(stability_figure([], sizes, inits, temperatures_k), widget)


def set_stability_map(figure: go.Figure, rows: list[dict]) -> None:
    """Fill the cells of ``figure`` that ``rows`` (:func:`mlpkit.md.stability_map` rows) have reached."""
    target = stability_figure(rows, **figure.layout.meta)
    with figure.batch_update():
        for old, new in zip(figure.data, target.data):
            old.z = new.z


def learning_curves_figure(widget: bool = True) -> go.Figure:
    """An empty learning-curve figure for :func:`set_learning_curves`."""
    figure = learning_curve_figure([])
    figure.update_layout(height=380)
    return _new(figure, widget)


def active_learning_figure(widget: bool = True) -> go.Figure:
    """Test force MAE and the committee's mean force disagreement on the candidates against labels, one line per
    selection strategy."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("test force MAE (eV/Å)", "committee disagreement on the candidates (eV/Å)"))
    figure.update_xaxes(title_text="labels (DFT calculations)")
    figure.update_yaxes(title_text="force MAE (eV/Å)", row=1, col=1)
    figure.update_yaxes(title_text="mean force spread (eV/Å)", row=1, col=2)
    figure.update_layout(height=340)
    return _new(figure, widget)


def record_round(figure: go.Figure, strategy: str, round_) -> None:
    """Add one :class:`mlpkit.active.Round` of ``strategy`` to :func:`active_learning_figure`."""
    with figure.batch_update():
        _append(_series(figure, strategy, "error", 1, 1), round_.labels, round_.force_mae_ev_per_a)
        _append(_series(figure, strategy, "disagreement", 1, 2), round_.labels, float(np.mean(round_.disagreement_ev_per_a)))
