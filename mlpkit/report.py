"""Learning curves, the data-efficiency factor and the self-contained HTML report of a study."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from mlpkit.fileio import write_text_atomic

METRICS = {
    "force_mae_ev_per_a": "force MAE (eV/Å)",
    "force_rmse_ev_per_a": "force RMSE (eV/Å)",
    "energy_mae_mev_per_atom": "energy MAE (meV/atom)",
}


def curve(rows: list[dict], init: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sizes, mean over seeds, standard deviation over seeds) of ``metric`` for one initialisation."""
    sizes = np.array(sorted({row["size"] for row in rows if row["init"] == init}))
    values = [[row[metric] for row in rows if row["init"] == init and row["size"] == size] for size in sizes]
    return sizes, np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])


def efficiency_factor(rows: list[dict], size: int, metric: str = "force_mae_ev_per_a", init: str = "transfer") -> float:
    """How many more frames scratch needs to match ``init`` at ``size``: N_scratch / size.

    N_scratch comes from log–log interpolation of the scratch curve (means over seeds); NaN when the
    scratch curve never reaches the transferred error within the sizes run.
    """
    sizes, scratch, _ = curve(rows, "scratch", metric)
    target_sizes, target, _ = curve(rows, init, metric)
    if size not in target_sizes:
        return float("nan")
    goal = target[list(target_sizes).index(size)]
    order = np.argsort(scratch)  # interpolation needs increasing x: error falls as N grows
    if not scratch.min() <= goal <= scratch.max():
        return float("nan")
    log_n = np.interp(np.log(goal), np.log(scratch[order]), np.log(sizes[order]))
    return float(np.exp(log_n) / size)


def learning_curve_figure(rows: list[dict], metric: str = "force_mae_ev_per_a") -> go.Figure:
    """Log–log learning curves, mean ± standard deviation over seeds, one line per initialisation."""
    figure = go.Figure()
    for init in sorted({row["init"] for row in rows}):
        sizes, mean, spread = curve(rows, init, metric)
        figure.add_trace(go.Scatter(x=sizes, y=mean, error_y={"type": "data", "array": spread}, mode="lines+markers", name=init))
    figure.update_layout(
        xaxis={"type": "log", "title": "Ge training configurations"},
        yaxis={"type": "log", "title": f"Ge test {METRICS.get(metric, metric)}"},
        template="plotly_white", height=420,
    )
    return figure


def summary_table(rows: list[dict]) -> str:
    """HTML table: mean ± std over seeds of every metric, per (size, init)."""
    header = "".join(f"<th>{html.escape(label)}</th>" for label in METRICS.values())
    lines = [f"<table><tr><th>size</th><th>init</th>{header}</tr>"]
    for size in sorted({row["size"] for row in rows}):
        for init in sorted({row["init"] for row in rows}):
            values = [row for row in rows if row["size"] == size and row["init"] == init]
            if values:
                cells = "".join(
                    f"<td>{np.mean([v[m] for v in values]):.4g} ± {np.std([v[m] for v in values]):.2g}</td>" for m in METRICS
                )
                lines.append(f"<tr><td>{size}</td><td>{html.escape(init)}</td>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def write_report(rows: list[dict], path, title: str = "Si → Ge transfer: learning curves") -> Path:
    """A self-contained HTML page (plotly.js inlined, no network needed): curves, factors, table."""
    figures = [learning_curve_figure(rows, metric) for metric in METRICS]
    plots = [figures[0].to_html(full_html=False, include_plotlyjs=True)]
    plots += [figure.to_html(full_html=False, include_plotlyjs=False) for figure in figures[1:]]
    factors = "".join(
        f"<li>N = {size}: {efficiency_factor(rows, size):.2f}</li>"
        for size in sorted({row["size"] for row in rows if row["init"] == "transfer"})
    )
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{len(rows)} runs. Errors on the Ge test set; mean ± standard deviation over seeds.</p>
{''.join(plots)}
<h2>Data-efficiency factor</h2><p>Frames scratch needs to match transfer, divided by N (log–log interpolation;
nan: not reached within the sizes run).</p><ul>{factors}</ul>
<h2>All numbers</h2>{summary_table(rows)}</body></html>"""
    write_text_atomic(path, body)
    return Path(path)
