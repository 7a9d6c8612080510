"""3D view of a structure (nglview) with atoms coloured by a per-atom number, updated live during MD.

Colouring works by binning: each bin is one representation of balls with its own colour and an
atom-index selection, so a new colouring or new positions never reload the structure. Atoms are drawn
as balls without sticks: NGL computes bonds once, when the structure is loaded, and an atom wrapped
back into the cell during MD would keep its old bonds, drawn as sticks across the whole cell.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import plotly.colors
from ase import Atoms
from ase.geometry import wrap_positions

COLOURSCALE = "Viridis"


def colour_bins(values, low: float | None = None, high: float | None = None, n_bins: int = 6) -> list[tuple[str, list[int]]]:
    """(colour, atom indices) per non-empty bin of ``values`` [N] between ``low`` and ``high`` (default: their range)."""
    values = np.asarray(values, float)
    low = float(np.min(values)) if low is None else low
    high = float(np.max(values)) if high is None else high
    fraction = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    index = np.minimum((fraction * n_bins).astype(int), n_bins - 1)
    colours = plotly.colors.sample_colorscale(COLOURSCALE, [(b + 0.5) / n_bins for b in range(n_bins)], colortype="rgb")
    return [(_hex(colours[b]), np.flatnonzero(index == b).tolist()) for b in range(n_bins) if (index == b).any()]


def _hex(rgb: str) -> str:
    red, green, blue = (int(float(c)) for c in rgb[rgb.index("(") + 1:-1].split(","))
    return f"#{red:02x}{green:02x}{blue:02x}"


class StructureView:
    """An nglview widget of ``atoms`` with a caption; ``update`` moves the atoms and recolours them.

    ``label`` names the per-atom quantity (with units) and ``low``/``high`` fix the colour range so
    that colours mean the same in every update (default: the range of the first values).
    """

    def __init__(self, atoms: Atoms, values=None, label: str = "", low: float | None = None, high: float | None = None):
        import nglview  # imported here: its import is slow and only views need it

        self.atoms = atoms.copy()
        self.label = label
        # explicit representations switch nglview's default ones off; _colour replaces them at once
        self.view = nglview.show_ase(self.atoms, representations=[{"type": "unitcell", "params": {}}])
        self.caption = widgets.HTML()
        if values is None:
            self.low, self.high = low, high
            self._colour(np.zeros(len(atoms)))
        else:
            values = np.asarray(values, float)
            self.low = float(values.min()) if low is None else low
            self.high = float(values.max()) if high is None else high
            self._colour(values)
        self.view.center()  # zoom onto the cell: it fills the canvas instead of a corner of it
        # NGL sizes its canvas from the width it finds when first drawn: give it a full row (not an HBox cell)
        self.widget = widgets.VBox([self.caption, self.view])

    def update(self, positions_a, values=None, note: str = "") -> None:
        """New positions [N, 3] (Å; wrapped into the cell) and, optionally, new per-atom values [N]."""
        wrapped = wrap_positions(np.asarray(positions_a, float), self.atoms.cell, self.atoms.pbc)
        self.view.set_coordinates({0: wrapped.astype(np.float32)})
        if values is not None:
            self._colour(np.asarray(values, float), note)
        elif note:
            self.caption.value = html.escape(note)

    def _colour(self, values, note: str = "") -> None:
        self.view.clear_representations(component=0)
        self.view.add_representation("unitcell")
        for colour, atoms in colour_bins(values, self.low, self.high):
            self.view.add_representation("spacefill", selection=atoms, color=colour, radius=0.6)
        scale = f"{self.label}: {self.low:.3g} (purple) … {self.high:.3g} (yellow)" if self.label and self.high is not None else ""
        self.caption.value = html.escape(" · ".join(part for part in (scale, note) if part))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
