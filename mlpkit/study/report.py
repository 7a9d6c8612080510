"""The study's figures and its self-contained HTML report: learning curves, the data-efficiency factor,
errors by group and temperature, parity plots, the stability map."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlpkit.analysis.table import TABLE_KEYS
from mlpkit.fileio import write_bytes_atomic, write_text_atomic

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
    scratch curve never reaches the transferred error within the sizes run (or was not run).
    """
    sizes, scratch, _ = curve(rows, "scratch", metric)
    target_sizes, target, _ = curve(rows, init, metric)
    if size not in target_sizes or not len(sizes):
        return float("nan")
    goal = target[list(target_sizes).index(size)]
    order = np.argsort(scratch)  # interpolation needs increasing x: error falls as N grows
    if not scratch.min() <= goal <= scratch.max():
        return float("nan")
    log_n = np.interp(np.log(goal), np.log(scratch[order]), np.log(sizes[order]))
    return float(np.exp(log_n) / size)


def smallest_size_beating_best(rows: list[dict], metric: str = "force_mae_ev_per_a", init: str = "transfer") -> int | None:
    """The smallest N at which ``init`` (mean over seeds) is below scratch's best mean at any size; None if never."""
    _, scratch, _ = curve(rows, "scratch", metric)
    sizes, target, _ = curve(rows, init, metric)
    better = [size for size, value in zip(sizes, target) if len(scratch) and value < scratch.min()]
    return int(min(better, key=lambda n: n or np.inf)) if better else None


def _by_size(rows: list[dict], init: str, metric: str) -> dict[int, tuple[float, float]]:
    sizes, mean, spread = curve(rows, init, metric)
    return {int(n): (float(m), float(d)) for n, m, d in zip(sizes, mean, spread)}


def claims(rows: list[dict], stability: list[dict] = (), breakdown: list[dict] = (), init: str = "transfer") -> list[tuple[str, bool | None, str]]:
    """The paper's claims as (claim, held (None: not measured), the numbers) from a study's rows, its stability
    map and its test errors by temperature band."""
    metric = "force_mae_ev_per_a"
    scratch, target = (_by_size(rows, name, metric) for name in ("scratch", init))
    shared = [n for n in sorted(target, key=lambda n: n or np.inf) if n in scratch]
    small = [n for n in shared if 0 < n <= 50]
    beats = [f"N = {n}: {target[n][0]:.4f} vs {scratch[n][0]:.4f}" for n in small]
    apart = [n for n in small if n <= 25] if len({row["seed"] for row in rows}) > 1 else []  # one seed: no spread
    separated = all(target[n][0] + target[n][1] < scratch[n][0] - scratch[n][1] for n in apart)
    found = [
        (f"1. {init} below scratch at every N ≤ 50 (force MAE, eV/Å, mean over seeds)",
         all(target[n][0] < scratch[n][0] for n in small) if small else None, "; ".join(beats)),
        ("1b. … with mean ± std apart at every N ≤ 25", separated if apart else None,
         "; ".join(f"N = {n}: {target[n][0]:.4f} ± {target[n][1]:.2g} vs {scratch[n][0]:.4f} ± {scratch[n][1]:.2g}" for n in apart)),
    ]
    factor = efficiency_factor(rows, 10, metric, init)
    smallest = smallest_size_beating_best(rows, metric, init)
    found.append(("2. data-efficiency factor ≥ 5 at N = 10", None if not np.isfinite(factor) and smallest is None else
                  bool(np.isfinite(factor) and factor >= 5 or smallest is not None and 0 < smallest <= 10),
                  f"factor {factor:.2f} (nan: scratch never reaches it within the sizes run); smallest N beating scratch's "
                  f"best: {smallest if smallest is not None else 'none'}"))
    fraction = {(r["size"], r["init"], r["temperature_k"]): r["fraction_stable"] for r in stability}
    pairs = [(k[0], k[2]) for k in fraction if k[1] == "scratch" and (k[0], init, k[2]) in fraction]
    worse = [f"N = {n}, {t:g} K: {fraction[(n, init, t)]:.0%} vs {fraction[(n, 'scratch', t)]:.0%}" for n, t in sorted(pairs)
             if fraction[(n, init, t)] < fraction[(n, "scratch", t)]]
    found.append((f"3. {init} at least as stable as scratch in every (N, T) cell", not worse if pairs else None,
                  "; ".join(worse) or f"{len(pairs)} cells compared"))
    hot = {(r["size"], r["init"]): [] for r in breakdown if r["kind"] == "band" and r["label"] == "hotter"}
    for r in breakdown:
        if r["kind"] == "band" and r["label"] == "hotter":
            hot[(r["size"], r["init"])].append(r[metric])
    sizes = [n for n in (10, 25) if (n, init) in hot and (n, "scratch") in hot]
    found.append((f"4. {init}'s force MAE on frames hotter than its training below scratch's at N = 10 and 25",
                  all(np.mean(hot[(n, init)]) < np.mean(hot[(n, "scratch")]) for n in sizes) if sizes else None,
                  "; ".join(f"N = {n}: {np.mean(hot[(n, init)]):.4f} vs {np.mean(hot[(n, 'scratch')]):.4f}" for n in sizes)))
    return found


def claims_section(found: list[tuple[str, bool | None, str]]) -> str:
    verdict = {True: "holds", False: "does not hold", None: "not measured"}
    items = "".join(f"<tr><td style='text-align:left'>{html.escape(claim)}</td><td>{verdict[held]}</td>"
                    f"<td style='text-align:left'>{html.escape(numbers)}</td></tr>" for claim, held, numbers in found)
    return f"<h2>The paper's claims</h2><table><tr><th>claim</th><th>verdict</th><th>numbers</th></tr>{items}</table>"


def learning_curve_figure(rows: list[dict], metric: str = "force_mae_ev_per_a") -> go.Figure:
    """Log–log learning curves, mean ± standard deviation over seeds, one line per initialisation."""
    figure = go.Figure()
    for init in sorted({row["init"] for row in rows}):
        sizes, mean, spread = curve(rows, init, metric)
        figure.add_trace(go.Scatter(x=sizes, y=mean, error_y={"type": "data", "array": spread}, mode="lines+markers", name=init))
    sizes = sorted({row["size"] for row in rows})
    figure.update_layout(
        xaxis={"type": "log", "title": "Ge training configurations", "tickvals": sizes},  # one label per size run
        yaxis={"type": "log", "title": f"Ge test {METRICS.get(metric, metric)}"},
        template="plotly_white", height=420,
    )
    return figure


def learning_curve_png(rows: list[dict], path, metric: str = "force_mae_ev_per_a", title: str = "") -> Path:
    """The learning curves of :func:`learning_curve_figure` as a static PNG (matplotlib, no browser needed),
    for READMEs and papers; written atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)  # no pyplot: a notebook's own backend and figures stay as they are
    axes = figure.add_subplot()
    for init in sorted({row["init"] for row in rows}):
        sizes, mean, spread = curve(rows, init, metric)
        axes.errorbar(sizes, mean, yerr=spread, marker="o", capsize=3, label=init)
    axes.set(xscale="log", yscale="log", xlabel="Ge training configurations", ylabel=f"Ge test {METRICS.get(metric, metric)}",
             title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


def _mean_and_spread(values: list[float]) -> str:
    """"mean ± std" over seeds; a single seed has no spread to show."""
    return f"{np.mean(values):.4g} ± {np.std(values):.2g}" if len(values) > 1 else f"{values[0]:.4g}"


def summary_table(rows: list[dict]) -> str:
    """HTML table: mean ± std over seeds of every metric, per (size, init) (the value alone for one seed)."""
    header = "".join(f"<th>{html.escape(label)}</th>" for label in METRICS.values())
    lines = [f"<table><tr><th>size</th><th>init</th>{header}</tr>"]
    for size in sorted({row["size"] for row in rows}):
        for init in sorted({row["init"] for row in rows}):
            values = [row for row in rows if row["size"] == size and row["init"] == init]
            if values:
                cells = "".join(f"<td>{_mean_and_spread([v[m] for v in values])}</td>" for m in METRICS)
                lines.append(f"<tr><td>{size}</td><td>{html.escape(init)}</td>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def _label_order(labels) -> list[str]:
    """Temperatures numerically ("300 K" before "1089 K"), other labels alphabetically."""
    return sorted(labels, key=lambda label: (0, float(label[:-2]), "") if label.endswith(" K") else (1, 0.0, label))


def breakdown_table(records: list[dict], kind: str, metric: str = "force_mae_ev_per_a") -> str:
    """HTML table of ``metric`` by label of ``kind`` ("group", "temperature"): mean over seeds per (size, init)."""
    chosen = [r for r in records if r["kind"] == kind]
    labels = _label_order({r["label"] for r in chosen})
    header = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    lines = [f"<table><tr><th>size</th><th>init</th>{header}</tr>"]
    for size in sorted({r["size"] for r in chosen}):
        for init in sorted({r["init"] for r in chosen}):
            cells = []
            for label in labels:
                values = [r[metric] for r in chosen if (r["size"], r["init"], r["label"]) == (size, init, label)]
                cells.append(f"<td>{np.mean(values):.4g}</td>" if values else "<td></td>")
            if any(cell != "<td></td>" for cell in cells):
                lines.append(f"<tr><td>{size}</td><td>{html.escape(init)}</td>{''.join(cells)}</tr>")
    return "\n".join(lines + ["</table>"])


def breakdown_figure(records: list[dict], kind: str, metric: str = "force_mae_ev_per_a") -> go.Figure:
    """``metric`` against the labels of ``kind``, one line per (init, size), mean ± std over seeds."""
    chosen = [r for r in records if r["kind"] == kind]
    labels = _label_order({r["label"] for r in chosen})
    figure = go.Figure()
    for init in sorted({r["init"] for r in chosen}):
        for size in sorted({r["size"] for r in chosen}):
            values = [[r[metric] for r in chosen if (r["size"], r["init"], r["label"]) == (size, init, label)] for label in labels]
            if all(values):
                figure.add_trace(go.Scatter(x=labels, y=[np.mean(v) for v in values], mode="lines+markers",
                                            error_y={"type": "data", "array": [np.std(v) for v in values]}, name=f"{init}, N = {size}"))
    figure.update_layout(xaxis={"title": kind, "type": "category"}, yaxis={"type": "log", "title": f"Ge test {METRICS.get(metric, metric)}"},
                         template="plotly_white", height=420)
    return figure


def parity_trace(label: str, reference, predicted, colour: str | None = None) -> go.Scattergl:
    """One run's predicted against reference values as a cloud of points (single precision: a plot needs no more,
    and the page stays under 5 MiB with plotly.js inlined)."""
    return go.Scattergl(x=np.ravel(reference).astype(np.float32), y=np.ravel(predicted).astype(np.float32), mode="markers", name=label,
                        marker={"size": 3, "opacity": 0.5, "color": colour})


def stretch_diagonal(figure: go.Figure) -> None:
    """Make the figure's first trace, the line y = x, span every point of the others."""
    points = np.concatenate([np.ravel(t.x) for t in figure.data[1:]] + [np.ravel(t.y) for t in figure.data[1:]] + [[]])
    if points.size:
        low, high = float(points.min()), float(points.max())
        figure.data[0].x, figure.data[0].y = (low, high), (low, high)


def parity_figure(parity: dict, quantity: str = "forces_ev_per_a") -> go.Figure:
    """Predicted against reference ``quantity`` ("forces_ev_per_a" components or "energy_ev_per_atom"): the
    line y = x first, then one trace per run from ``{run label: {quantity: (reference, predicted)}}``."""
    name, unit = ("force component", "eV/Å") if quantity == "forces_ev_per_a" else ("energy", "eV/atom")
    figure = go.Figure(go.Scatter(x=[], y=[], mode="lines", line={"color": "black", "dash": "dot"}, name="y = x"))
    for label, series in parity.items():
        figure.add_trace(parity_trace(label, *series[quantity]))
    stretch_diagonal(figure)
    figure.update_layout(xaxis={"title": f"reference {name} ({unit})"}, yaxis={"title": f"predicted {name} ({unit})"},
                         template="plotly_white", height=480)
    return figure


def stability_figure(stability: list[dict], sizes=None, inits=None, temperatures_k=None) -> go.Figure:
    """One heatmap per initialisation, side by side: the fraction of MD replicas that stayed physical, by
    Ge training-set size (rows) and temperature (columns), rows of :func:`mlpkit.md.stability_map`. The grid
    is the rows' unless given (cells without a row stay empty); it is kept in the layout's ``meta``."""
    inits = list(inits or dict.fromkeys(row["init"] for row in stability))
    sizes = sorted(sizes or {row["size"] for row in stability})
    temperatures = sorted(temperatures_k or {row["temperature_k"] for row in stability})
    figure = make_subplots(rows=1, cols=len(inits), subplot_titles=inits, shared_yaxes=True)
    figure.update_layout(meta={"sizes": sizes, "inits": inits, "temperatures_k": temperatures})
    for column, init in enumerate(inits, start=1):
        fraction = {(r["size"], r["temperature_k"]): r["fraction_stable"] for r in stability if r["init"] == init}
        z = [[fraction.get((size, t), np.nan) for t in temperatures] for size in sizes]
        figure.add_trace(go.Heatmap(z=z, x=[f"{t:g} K" for t in temperatures], y=[f"N = {s or 'all'}" for s in sizes],
                                    zmin=0, zmax=1, colorscale="RdYlGn", name=init, showscale=column == len(inits),
                                    colorbar={"title": "stable"}, texttemplate="%{z:.0%}",
                                    hovertemplate="%{y}, %{x}: %{z:.0%} stable<extra>" + html.escape(init) + "</extra>"),
                         row=1, col=column)
        figure.update_xaxes(title_text="temperature (K)", row=1, col=column)
    figure.update_yaxes(title_text="Ge training frames", row=1, col=1)
    # the title sits above the panels' own titles (the initialisations), with room between them
    figure.update_layout(title={"text": "Fraction of MD replicas stable, by Ge set size and temperature", "y": 0.98,
                                "yanchor": "top"}, margin={"t": 110}, template="plotly_white", height=440)
    return figure


def write_report(rows: list[dict], path, title: str = "Si → Ge transfer: learning curves",
                 breakdown: list[dict] = (), parity: dict | None = None, stability: list[dict] = (),
                 properties: dict | None = None) -> Path:
    """A self-contained HTML page (plotly.js inlined, no network needed): curves, factors, tables; with
    ``breakdown`` (records of the study's ``test_breakdown``) errors by group and temperature, with
    ``parity`` predicted-against-reference plots, with ``stability`` (rows of ``stability.csv``) the map."""
    figures = [learning_curve_figure(rows, metric) for metric in METRICS]
    figures += [breakdown_figure(breakdown, "temperature")] if breakdown else []
    figures += [parity_figure(parity, quantity) for quantity in ("forces_ev_per_a", "energy_ev_per_atom")] if parity else []
    figures += [stability_figure(stability)] if stability else []
    plots = [figures[0].to_html(full_html=False, include_plotlyjs=True)]
    plots += [figure.to_html(full_html=False, include_plotlyjs=False) for figure in figures[1:]]
    factors = "".join(
        f"<li>{html.escape(init)}, N = {size}: {efficiency_factor(rows, size, init=init):.2f}</li>"
        for init in sorted({row["init"] for row in rows} - {"scratch"})
        for size in sorted({row["size"] for row in rows if row["init"] == init})
    )
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{len(rows)} runs. Errors on the Ge test set; mean ± standard deviation over seeds.</p>
{''.join(plots[:len(METRICS)])}
<h2>Data-efficiency factor</h2><p>Frames scratch needs to match transfer, divided by N (log–log interpolation;
nan: not reached within the sizes run).</p><ul>{factors}</ul>
{claims_section(claims(rows, stability, breakdown))}
<h2>All numbers</h2>{summary_table(rows)}
{_breakdown_section(breakdown, plots[len(METRICS):len(plots) - bool(stability)])}
{_band_section(breakdown)}
{_property_section(properties) if properties else ""}
{_stability_section(stability, plots[-1]) if stability else ""}</body></html>"""
    write_text_atomic(path, body)
    return Path(path)


def _breakdown_section(breakdown: list[dict], plots: list[str]) -> str:
    if not breakdown:
        return ""
    temperature_plot, parity_plots = (plots[0], plots[1:]) if plots else ("", [])
    return f"""<h2>Force MAE (eV/Å) by group</h2>{breakdown_table(breakdown, "group")}
<h2>Force MAE (eV/Å) by temperature</h2><p>Test frames with a known temperature (AIMD and vacancy
snapshots); mean over seeds.</p>{temperature_plot}{breakdown_table(breakdown, "temperature")}
<h2>Energy MAE (meV/atom) by group</h2>{breakdown_table(breakdown, "group", "energy_mae_mev_per_atom")}
<h2>Parity on the Ge test set</h2><p>First seed of the smallest and largest training sets.</p>{''.join(parity_plots)}"""


def _property_section(table: dict) -> str:
    """The out-of-target property table (a :class:`~mlpkit.analysis.PropertyTable` as a dict) as HTML, with the
    relative error of every column against the reference."""
    names = list(table["values"])
    header = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    lines = [f"<table><tr><th>property</th>{header}</tr>"]
    for key, label in TABLE_KEYS.items():
        cells = []
        for name in names:
            value, error = table["values"][name].get(key), table["relative_error"][name].get(key)
            text = "–" if value is None else f"{value:.4g}"
            text += f" ({100 * error:+.1f} %)" if value is not None and error is not None and name != table["reference"] else ""
            cells.append(f"<td>{text}</td>")
        lines.append(f"<tr><td style='text-align:left'>{html.escape(label)}</td>{''.join(cells)}</tr>")
    return (f"<h2>Out-of-target properties of {html.escape(table['element'])}</h2><p>Every column measured the same way "
            f"(<code>mlpkit properties --study</code>); in brackets the error against {html.escape(table['reference'])}.</p>"
            + "\n".join(lines + ["</table>"]))


def _band_section(breakdown: list[dict]) -> str:
    if not any(r["kind"] == "band" for r in breakdown):
        return ""
    return f"""<h2>Temperature transferability</h2><p>The Ge models were trained and validated only on frames up to a
temperature; these are their test errors inside that range (with the frames of no temperature) and on the hotter
frames, mean over seeds.</p><h3>Force MAE (eV/Å)</h3>{breakdown_table(breakdown, "band")}
<h3>Energy MAE (meV/atom)</h3>{breakdown_table(breakdown, "band", "energy_mae_mev_per_atom")}"""


def _stability_section(stability: list[dict], plot: str) -> str:
    runs = stability[0]["replicas"]
    return f"""<h2>Stability map</h2><p>NVT MD from the perfect 64-atom crystal, {runs} replicas per cell and
temperature, under the stability monitor (<code>mlpkit stability</code>); each cell gives the fraction of replicas
that stayed physical for the whole run.</p>{plot}"""
