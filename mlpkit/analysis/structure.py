"""Structure of trajectories: radial and bond-angle distributions, smoothing and peaks.

Pure numpy over explicit arrays: ``positions_a`` [T, N, 3] (Å; wrapped or not, periodic images are
taken care of) and one fixed periodic ``cell_a`` [3, 3] (rows are the lattice vectors, Å).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from mlpkit.cell import cell_volume_a3
from mlpkit.neighbors import neighbor_pairs


def pair_vectors(positions_a, cell_a, r_max_a: float):
    """Every ordered pair (i, j, image) of one periodic frame closer than ``r_max_a``, sorted by i then j.

    positions_a: [N, 3] Å; cell_a: [3, 3] Å. Returns ``(i, j, vectors_a)`` with ``vectors_a[p] = r_j + image − r_i``
    ([P], [P], [P, 3]); an atom's own periodic images count, the atom itself does not. Any ``r_max_a``
    is exact, also beyond half the cell: the pairs are those of :func:`mlpkit.neighbors.neighbor_pairs`.
    """
    positions_a, cell_a = np.asarray(positions_a, float), np.asarray(cell_a, float)
    i, j, shift = neighbor_pairs(positions_a, cell_a, np.ones(3, bool), r_max_a)
    return i, j, positions_a[j] + shift @ cell_a - positions_a[i]


def gaussian_smooth(y, dx: float, sigma: float):
    """``y`` on a uniform grid of spacing ``dx`` convolved with a unit-area Gaussian of width ``sigma`` (same units as ``dx``).

    The ends are padded by reflection, so a flat curve stays flat up to the grid edges.
    """
    y = np.asarray(y, float)
    if sigma <= 0:
        return y.copy()
    half = max(1, int(np.ceil(4 * sigma / dx)))
    x = np.arange(-half, half + 1) * dx
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(y, half, mode="reflect") if len(y) > half else np.pad(y, half, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _frames(positions_a):
    positions_a = np.asarray(positions_a, float)
    return positions_a[None] if positions_a.ndim == 2 else positions_a  # [T, N, 3]


def radial_distribution(positions_a, cell_a, r_max_a: float = 6.0, n_bins: int = 300, smoothing_a: float = 0.0):
    """Radial distribution function g(r), averaged over frames.

    positions_a: [T, N, 3] (or [N, 3]) Å; cell_a: [3, 3] Å. Returns ``(r_a, g)``, both [n_bins]: bin centres
    (Å) and g(r), which tends to 1 in a liquid at large r. ``smoothing_a`` > 0 convolves g with a Gaussian of
    that width (Å), which turns a perfect crystal's spikes into peaks that :func:`peak_positions` can find.
    """
    frames = _frames(positions_a)
    n_frames, n_atoms = frames.shape[:2]
    edges_a = np.linspace(0.0, r_max_a, n_bins + 1)
    counts = np.zeros(n_bins)
    for frame in frames:
        _, _, vectors = pair_vectors(frame, cell_a, r_max_a)
        counts += np.histogram(np.linalg.norm(vectors, axis=1), bins=edges_a)[0]
    density_per_a3 = n_atoms / cell_volume_a3(np.asarray(cell_a, float))
    shell_a3 = 4.0 / 3.0 * np.pi * np.diff(edges_a**3)
    g = counts / (n_frames * n_atoms * density_per_a3 * shell_a3)
    r_a = 0.5 * (edges_a[1:] + edges_a[:-1])
    return r_a, gaussian_smooth(g, r_max_a / n_bins, smoothing_a)


def angular_distribution(positions_a, cell_a, cutoff_a: float, n_bins: int = 180, smoothing_deg: float = 0.0):
    """Bond-angle distribution P(θ) of the angles j–i–k between neighbours j, k of i within ``cutoff_a``.

    positions_a: [T, N, 3] (or [N, 3]) Å; cell_a: [3, 3] Å. Returns ``(theta_deg, p)``, both [n_bins] over
    0–180°: bin centres and a probability density (1/degree, unit area before smoothing). ``smoothing_deg``
    > 0 convolves P with a Gaussian of that width (degrees). Diamond gives one peak at 109.47°.
    """
    edges_deg = np.linspace(0.0, 180.0, n_bins + 1)
    counts = np.zeros(n_bins)
    for frame in _frames(positions_a):
        i, _, vectors = pair_vectors(frame, cell_a, cutoff_a)  # sorted by i
        n_neighbors = np.bincount(i, minlength=frame.shape[0])  # [N]
        width = int(n_neighbors.max(initial=0))
        if width < 2:
            continue
        slot = np.arange(len(i)) - np.repeat(np.cumsum(n_neighbors) - n_neighbors, n_neighbors)
        units = np.zeros((frame.shape[0], width, 3))  # [N, M, 3] unit bond vectors, zero padding
        units[i, slot] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        valid = np.zeros((frame.shape[0], width), bool)
        valid[i, slot] = True
        cosines = np.einsum("nja,nka->njk", units, units)  # [N, M, M]
        pairs = valid[:, :, None] & valid[:, None, :] & np.triu(np.ones((width, width), bool), k=1)[None]
        angles_deg = np.degrees(np.arccos(np.clip(cosines[pairs], -1.0, 1.0)))
        counts += np.histogram(angles_deg, bins=edges_deg)[0]
    bin_deg = 180.0 / n_bins
    density = counts / max(counts.sum(), 1.0) / bin_deg
    return 0.5 * (edges_deg[1:] + edges_deg[:-1]), gaussian_smooth(density, bin_deg, smoothing_deg)


def peak_positions(x, y, min_height: float | None = None, min_prominence: float = 0.0):
    """Positions of the local maxima of a sampled curve ``y(x)`` (uniform ``x``), refined between grid points.

    Each maximum is refined by the parabola through it and its two neighbours, so positions are finer than
    the grid. ``min_height`` and ``min_prominence`` (in units of ``y``) drop small wiggles. Returns [P], ascending.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    indices, _ = find_peaks(y, height=min_height, prominence=min_prominence or None)
    dx = x[1] - x[0]
    left, centre, right = y[indices - 1], y[indices], y[indices + 1]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, 1.0), 0.0)
    return x[indices] + offset * dx
