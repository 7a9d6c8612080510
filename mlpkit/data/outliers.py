"""Frames that are valid physics one by one but suspicious next to the rest of their set.

:func:`~mlpkit.data.dataset.validate` refuses what cannot be physics (NaN, zero-volume cells, overlaps).
This module finds what is probably a units or bookkeeping slip: an energy per atom stored as the
total, Hartree or kcal/mol among eV, a stress in kBar or GPa read as eV/Å³, a cell in other units than
the rest, a cell so small that the model's cutoff sees many periodic images. The thresholds sit far
outside the spread of real sets (mlearn Si/Ge and the SW sets have energies within 13 robust spreads
of their median, RMS forces within 2.5× the median, stresses under 25 GPa).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import units

from mlpkit.data.composition import element_counts, element_energies_ev
from mlpkit.data.dataset import Dataset
from mlpkit.cell import cell_volume_a3, face_distances_a

ENERGY_SPREADS = 30.0  # robust spreads (1.4826 MAD) an energy per atom may lie from the set's typical one
ENERGY_FLOOR_EV_PER_ATOM = 2.0  # ... and never flagged closer than this
# |energy per atom| of real data in eV: cohesive energies (SW, VASP-like DFT totals) are a few eV/atom; the
# same numbers in Hartree are ~0.15, in kcal/mol ~100. Valence totals over pseudopotentials (Quantum ESPRESSO,
# CP2K, PySCF: about −100 eV/atom for Si and Ge) look like the kcal/mol case and are flagged too.
ENERGY_WINDOW_EV_PER_ATOM = (0.5, 50.0)
FORCE_RATIO = 20.0  # RMS force of a frame over the set's median RMS force
FORCE_FLOOR_EV_PER_A = 5.0
FORCE_LIMIT_EV_PER_A = 100.0  # any force component beyond this is implausible training data
STRESS_LIMIT_GPA = 100.0
DENSITY_RATIO = 3.0  # atoms per Å³ over (or under) the set's median; slabs with vacuum reach 0.44
DUPLICATE_DECIMALS = 4  # positions and cells equal to 1e-4 Å (with equal species) make two frames one structure


@dataclasses.dataclass(frozen=True)
class Outlier:
    """Frame ``frame`` looks wrong in ``field`` for ``reason``."""

    frame: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"frame {self.frame}, field {self.field!r}: {self.reason}"


def outlier_report(dataset: Dataset, cutoff_a: float | None = None) -> list[Outlier]:
    """Suspicious frames of ``dataset``, each with the field and the reason, in frame order.

    With ``cutoff_a`` (Å) also the frames whose periodic cell is under half the cutoff across.
    """
    found = [*_energy_outliers(dataset), *_unphysical_energies(dataset), *_force_outliers(dataset),
             *_stress_outliers(dataset), *_density_outliers(dataset), *_duplicates(dataset)]
    if cutoff_a is not None:
        found += _small_cells(dataset, cutoff_a)
    return sorted(found, key=lambda outlier: outlier.frame)


def describe(outliers: list[Outlier], path=None, limit: int = 5) -> str:
    """One readable paragraph: how many suspicious frames, the first ``limit`` of them."""
    where = f"{path}: " if path is not None else ""
    shown = "; ".join(map(str, outliers[:limit]))
    more = f"; and {len(outliers) - limit} more" if len(outliers) > limit else ""
    frames = len({outlier.frame for outlier in outliers})
    problems = "" if frames == len(outliers) else f" ({len(outliers)} problems)"
    return f"{where}{frames} suspicious frame{'s' if frames != 1 else ''}{problems}: {shown}{more}"


def _energy_outliers(dataset: Dataset) -> list[Outlier]:
    """Energies per atom far from the set's, after a least-squares energy per element."""
    numbers = np.unique(dataset.species)
    counts = element_counts(dataset, numbers)  # [F, E]
    e0 = element_energies_ev(dataset, numbers)  # [E] eV
    residual = (dataset.energy_ev - counts @ e0) / dataset.n_atoms  # [F] eV/atom
    typical = np.median(residual)
    spread = 1.4826 * np.median(np.abs(residual - typical))
    limit = max(ENERGY_SPREADS * spread, ENERGY_FLOOR_EV_PER_ATOM)
    outliers = []
    for frame in np.flatnonzero(np.abs(residual - typical) > limit):
        per_atom = dataset.energy_ev[frame] / dataset.n_atoms[frame]
        reference = (counts[frame] @ e0) / dataset.n_atoms[frame] + typical
        hint = ("it looks like an energy per atom stored as the total" if abs(dataset.energy_ev[frame] - reference) < 1.0
                else "energy per atom stored as the total, other units (Hartree, kcal/mol) or another reference energy?")
        outliers.append(Outlier(int(frame), "energy", f"{per_atom:.4g} eV/atom where the set has about {reference:.4g}: {hint}"))
    return outliers


def _unphysical_energies(dataset: Dataset) -> list[Outlier]:
    """Energies per atom outside the window of real data in eV, even when the whole set agrees (all in Hartree)."""
    low, high = ENERGY_WINDOW_EV_PER_ATOM
    per_atom = dataset.energy_ev / dataset.n_atoms  # [F] eV/atom
    return [
        Outlier(int(frame), "energy", f"{per_atom[frame]:.4g} eV/atom, outside the {low:g}–{high:g} eV/atom of "
                                      "cohesive and DFT total energies: Hartree, kcal/mol or a per-element reference "
                                      "subtracted? (data with another reference: --allow-outliers)")
        for frame in np.flatnonzero(~((np.abs(per_atom) >= low) & (np.abs(per_atom) <= high)))
    ]


def _force_outliers(dataset: Dataset) -> list[Outlier]:
    offsets = dataset.offsets
    squares = np.add.reduceat(np.sum(dataset.forces_ev_per_a ** 2, axis=1), offsets[:-1]) if len(dataset) else np.zeros(0)
    rms = np.sqrt(squares / (3 * dataset.n_atoms))  # [F] eV/Å
    largest = np.maximum.reduceat(np.abs(dataset.forces_ev_per_a).max(axis=1), offsets[:-1]) if len(dataset) else np.zeros(0)
    limit = max(FORCE_RATIO * np.median(rms), FORCE_FLOOR_EV_PER_A) if len(dataset) else np.inf
    outliers = []
    for frame in np.flatnonzero((rms > limit) | (largest > FORCE_LIMIT_EV_PER_A)):
        outliers.append(Outlier(int(frame), "forces", f"RMS force {rms[frame]:.3g} eV/Å, largest component {largest[frame]:.3g} eV/Å, "
                                f"where the set's median RMS is {np.median(rms):.3g}: other units (Hartree/Bohr, kcal/mol/Å) or a failed calculation?"))
    return outliers


def _stress_outliers(dataset: Dataset) -> list[Outlier]:
    largest_gpa = np.nan_to_num(np.abs(dataset.stress_ev_per_a3)).max(axis=1, initial=0.0) / units.GPa
    return [
        Outlier(int(frame), "stress", f"{largest_gpa[frame]:.3g} GPa, beyond any plausible load: kBar or GPa read as eV/Å³?")
        for frame in np.flatnonzero(largest_gpa > STRESS_LIMIT_GPA)
    ]


def _density_outliers(dataset: Dataset) -> list[Outlier]:
    """Periodic frames much denser or sparser than the set's median: a cell in other units (Bohr, nm) than the rest."""
    periodic = dataset.pbc.all(axis=1)
    density = np.where(periodic, dataset.n_atoms / cell_volume_a3(dataset.cell_a), np.nan)  # [F] atoms/Å³
    if not periodic.any():
        return []
    typical = np.nanmedian(density)
    ratio = density / typical
    return [
        Outlier(int(frame), "cell", f"{density[frame]:.3g} atoms/Å³, {ratio[frame]:.3g}× the set's median: "
                                    f"cell too {'small' if ratio[frame] > 1 else 'large'} (other units?)")
        for frame in np.flatnonzero((ratio > DENSITY_RATIO) | (ratio < 1 / DENSITY_RATIO))
    ]


def _small_cells(dataset: Dataset, cutoff_a: float) -> list[Outlier]:
    shortest = np.where(dataset.pbc, face_distances_a(dataset.cell_a), np.inf).min(axis=1)  # [F] Å
    return [
        Outlier(int(frame), "cell", f"periodic cell only {shortest[frame]:.3g} Å across, under half the {cutoff_a:g} Å cutoff: "
                                    "each atom meets many images of itself (cell in other units, or a molecule marked periodic?)")
        for frame in np.flatnonzero(shortest < cutoff_a / 2)
    ]


def first_copies(dataset: Dataset) -> np.ndarray:
    """[F] for each frame the index of the first frame with the same structure (species, cell and positions
    equal to :data:`DUPLICATE_DECIMALS` decimals in Å): its own index unless it repeats an earlier frame."""
    offsets, seen = dataset.offsets, {}
    first = np.arange(len(dataset))
    for frame in range(len(dataset)):
        atoms = slice(offsets[frame], offsets[frame + 1])
        key = (dataset.species[atoms].tobytes(), np.round(dataset.cell_a[frame], DUPLICATE_DECIMALS).tobytes(),
               np.round(dataset.positions_a[atoms], DUPLICATE_DECIMALS).tobytes())
        first[frame] = seen.setdefault(key, frame)
    return first


def _duplicates(dataset: Dataset) -> list[Outlier]:
    first = first_copies(dataset)
    return [Outlier(int(frame), "positions", f"the same structure as frame {first[frame]}: a repeated frame weighs "
                                             "twice in training (the splits keep copies on one side)")
            for frame in np.flatnonzero(first != np.arange(len(dataset)))]
