"""Chemical elements: the one check that the species of a structure are elements someone knows.

Data readers ask whether each species is an element at all; models and potentials whether they describe it.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from ase.data import chemical_symbols

from mlpkit.errors import MlpkitError

PERIODIC_TABLE = frozenset(chemical_symbols[1:])  # H … Og; ASE's "X" (atomic number 0) is no element
PADDING_SPECIES = 0  # atomic number of a padding atom


def unknown_elements(species, known: Collection[str] = PERIODIC_TABLE) -> list:
    """The distinct entries of ``species`` that name no element of ``known``, ascending, each as given.

    species: atomic numbers or chemical symbols; known: chemical symbols (by default every element,
    atomic numbers 1–118).

    >>> unknown_elements([14, 32, 14], known=("Si",)), unknown_elements(["Si", "Qq"]), unknown_elements([0, 14])
    ([32], ['Qq'], [0])
    """
    return [entry for entry in np.unique(np.asarray(species)).tolist() if _symbol(entry) not in known]


def check_elements(species, elements, where: str, holder: str) -> None:
    """Raise :class:`~mlpkit.errors.MlpkitError` naming the elements of ``species`` (atomic numbers,
    :data:`PADDING_SPECIES` skipped) that ``holder`` (a potential, a model) does not describe."""
    species = np.asarray(species)
    unknown = sorted(chemical_symbols[z] for z in unknown_elements(species[species != PADDING_SPECIES], elements))
    if unknown:
        raise MlpkitError(f"{where} holds {unknown}, but {holder} describes only {list(elements)}")


def _symbol(entry) -> str | None:
    """The chemical symbol of an atomic number or a symbol; None for an atomic number outside 1–118."""
    if isinstance(entry, str):
        return entry
    return chemical_symbols[entry] if 0 < entry < len(chemical_symbols) else None
