"""Dynamics of trajectories: mean squared displacement, diffusion, velocity autocorrelation, vibrational DOS.

Pure numpy over explicit arrays [T, N, 3] sampled every ``dt_fs`` femtoseconds. Positions must be
**unwrapped** (continuous in time, never folded back into the cell): a wrapped trajectory jumps by a
cell length when an atom crosses a face and gives a meaningless MSD. ``mlpkit.md`` trajectories are
unwrapped; ASE's ``atoms.get_positions(wrap=False)`` is too.
"""

from __future__ import annotations

import numpy as np

FS_PER_PS = 1000.0


def _autocorrelation(x, max_lag: int):
    """Σ over origins of x(t)·x(t + lag) for lags 0 … max_lag − 1, per trailing column. x: [T, K] → [max_lag, K]."""
    n = x.shape[0]
    size = 1 << int(np.ceil(np.log2(2 * n)))  # zero padding: a linear, not circular, correlation
    spectrum = np.fft.rfft(x, n=size, axis=0)
    return np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[:max_lag]


def _lags(n_frames: int, max_lag: int | None) -> int:
    if n_frames < 2:
        raise ValueError(f"a time series needs at least 2 frames, got {n_frames}")
    return n_frames if max_lag is None else min(int(max_lag), n_frames)


def mean_squared_displacement(positions_a, max_lag: int | None = None):
    """MSD(lag) = ⟨|r(t + lag) − r(t)|²⟩ over atoms and every time origin (Å²), for lags 0 … max_lag − 1 frames.

    positions_a: [T, N, 3] unwrapped (see the module docstring). Computed in O(T log T) with FFTs.
    ``max_lag`` defaults to T; lags beyond about T/2 average over few origins and are noisy.
    """
    positions_a = np.asarray(positions_a, float)
    n_frames = positions_a.shape[0]
    max_lag = _lags(n_frames, max_lag)
    x = positions_a.reshape(n_frames, -1)  # [T, 3N]
    squares = np.sum(positions_a**2, axis=2)  # [T, N]
    # Σ_t |r(t+m) − r(t)|² = Σ_t r(t)² + Σ_t r(t+m)² − 2 Σ_t r(t)·r(t+m), t = 0 … T−m−1
    cumulative = np.concatenate([np.zeros((1, squares.shape[1])), np.cumsum(squares, axis=0)])  # [T+1, N]
    lags = np.arange(max_lag)
    heads = cumulative[n_frames - lags] - cumulative[0]  # Σ_{t < T−m} r(t)²
    tails = cumulative[n_frames] - cumulative[lags]  # Σ_{t ≥ m} r(t)²
    cross = _autocorrelation(x, max_lag).reshape(max_lag, -1, 3).sum(axis=2)  # [L, N]
    per_atom = (heads + tails - 2.0 * cross) / (n_frames - lags)[:, None]
    return np.maximum(per_atom.mean(axis=1), 0.0)


def diffusion_coefficient(msd_a2, dt_fs: float, fit_window=(0.2, 0.6), dimensions: int = 3) -> float:
    """Self-diffusion coefficient D (Å²/ps) from the slope of the MSD: MSD ≈ 2·dimensions·D·t.

    msd_a2: [L] from :func:`mean_squared_displacement`, lag k at time k·dt_fs. The straight line is fitted
    over lags in ``fit_window`` (fractions of L): this skips the ballistic start and the noisy end.
    """
    msd_a2 = np.asarray(msd_a2, float)
    start, stop = (int(round(f * len(msd_a2))) for f in fit_window)
    if stop - start < 2:
        raise ValueError(f"fit_window {fit_window} of {len(msd_a2)} lags leaves fewer than 2 points")
    time_ps = np.arange(len(msd_a2)) * dt_fs / FS_PER_PS
    slope_a2_per_ps = np.polyfit(time_ps[start:stop], msd_a2[start:stop], 1)[0]
    return float(slope_a2_per_ps / (2 * dimensions))


def velocity_autocorrelation(velocities, max_lag: int | None = None, masses=None, normalise: bool = True):
    """VACF(lag) = ⟨m v(t)·v(t + lag)⟩ over atoms and time origins, for lags 0 … max_lag − 1 frames.

    velocities: [T, N, 3] (any unit); masses: [N] (u) or None for equal weights. With ``normalise`` the
    result is divided by its value at lag 0, so it starts at 1.
    """
    velocities = np.asarray(velocities, float)
    n_frames, n_atoms = velocities.shape[:2]
    max_lag = _lags(n_frames, max_lag)
    weights = np.ones(n_atoms) if masses is None else np.asarray(masses, float)
    sums = _autocorrelation(velocities.reshape(n_frames, -1), max_lag).reshape(max_lag, n_atoms, 3).sum(axis=2)
    vacf = (sums @ weights) / (n_frames - np.arange(max_lag)) / weights.sum()
    return vacf / vacf[0] if normalise else vacf


def vibrational_dos(vacf, dt_fs: float):
    """Vibrational density of states from a VACF: the cosine transform of the (Hann-tapered) VACF.

    vacf: [L] at lags k·dt_fs. Returns ``(frequency_thz, dos)``, [L]: frequencies up to the Nyquist
    frequency 1/(2·dt) and a density normalised to unit area (1/THz). The taper trades a little
    resolution (≈ 1/(L·dt)) for the absence of ringing from the cut-off VACF.
    """
    vacf = np.asarray(vacf, float)
    n = len(vacf)
    taper = np.hanning(2 * n + 1)[n:-1]  # [n], 1 at lag 0 falling to ~0 at the last lag
    tapered = vacf * taper
    symmetric = np.concatenate([tapered, tapered[-1:0:-1]])  # an even function of time
    dos = np.fft.rfft(symmetric).real[:n]
    frequency_thz = np.fft.rfftfreq(len(symmetric), dt_fs / FS_PER_PS)[:n]  # 1/ps = THz
    dos = np.maximum(dos, 0.0)
    area = np.trapezoid(dos, frequency_thz)
    return frequency_thz, dos / area if area > 0 else dos
