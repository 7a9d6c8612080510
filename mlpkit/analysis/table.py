"""Out-of-target properties of a potential, and the table comparing several potentials with a reference.

The same :func:`compute_properties` runs for the SW reference (``"sw:Ge"``), a checkpoint path and an
ensemble checkpoint, so any difference in the table comes from the potentials, never from the method.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator

from mlpkit.analysis.phonons import diamond_phonons
from mlpkit.analysis.static import elastic_constants, equation_of_state, vacancy_formation_energy
from mlpkit.calculator import calculator_for
from mlpkit.errors import MlpkitError
from mlpkit.fileio import write_text_atomic

# scalar properties of the table, in order, with their labels
TABLE_KEYS = {
    "a0_angstrom": "a0 (Å)",
    "e0_ev_per_atom": "E0 (eV/atom)",
    "bulk_modulus_gpa": "B (GPa)",
    "c11_gpa": "C11 (GPa)",
    "c12_gpa": "C12 (GPa)",
    "c44_gpa": "C44 relaxed (GPa)",
    "c44_unrelaxed_gpa": "C44 unrelaxed (GPa)",
    "vacancy_formation_ev": "vacancy formation (eV)",
    "phonon_gamma_thz": "Γ optical (THz)",
    "phonon_x_ta_thz": "X TA (THz)",
    "phonon_x_to_thz": "X TO (THz)",
    "phonon_l_ta_thz": "L TA (THz)",
    "phonon_l_to_thz": "L TO (THz)",
}


@dataclasses.dataclass(frozen=True)
class PropertyConfig:
    """How the properties are measured; shared by the CLI, the notebooks and the tests.

    eos_span / eos_points: lattice constants a0·(1 ± span) fitted by the equation of state;
    strain: ± strain of the elastic constants; *_fmax_ev_per_a: force tolerance of the relaxations;
    vacancy_repeat: the vacancy lives in a repeat³ cubic supercell (8·repeat³ sites);
    phonon_repeat: cubic supercell of the force constants (even, for L); displacement_a: its displacement.
    """

    eos_span: float = 0.01
    eos_points: int = 9
    strain: float = 0.005
    elastic_fmax_ev_per_a: float = 1e-4
    vacancy_repeat: int = 3
    vacancy_fmax_ev_per_a: float = 1e-3
    phonon_repeat: int = 2
    displacement_a: float = 0.01

    def quick(self) -> "PropertyConfig":
        """Seconds per potential: a 63-atom vacancy cell and fewer equation-of-state points."""
        return dataclasses.replace(self, eos_points=7, vacancy_repeat=2)


def _element_of(calculator: Calculator, element: str | None) -> str:
    potential = getattr(calculator, "potential", None)
    elements = getattr(potential, "elements", None)
    if element is None:
        if not elements or len(elements) != 1:
            raise MlpkitError(f"the potential describes {list(elements or [])}: name the element to measure")
        return elements[0]
    if elements is not None and element not in elements:
        raise MlpkitError(f"the potential describes only {list(elements)}, not {element!r}")
    return element


def phonon_values(phonons_thz: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The phonon rows of the table from :func:`~mlpkit.analysis.diamond_phonons`' frequencies (THz): Γ's optical
    branch, and the lowest (TA) and highest (TO) branch at X and L."""
    return {"phonon_gamma_thz": float(phonons_thz["gamma"].max()),
            "phonon_x_ta_thz": float(phonons_thz["x"].min()), "phonon_x_to_thz": float(phonons_thz["x"].max()),
            "phonon_l_ta_thz": float(phonons_thz["l"].min()), "phonon_l_to_thz": float(phonons_thz["l"].max())}


def compute_properties(potential, element: str | None = None, config: PropertyConfig = PropertyConfig()) -> dict:
    """Diamond-crystal properties of ``potential`` (a :func:`mlpkit.load_potential` spec such as ``"sw:Si"`` or
    a checkpoint path, or an ASE calculator) for ``element`` (default: the potential's only element).

    Returns a JSON-ready dict with the :data:`TABLE_KEYS` (a0 from the equation of state; everything else
    at that a0), ``elastic_matrix_gpa`` (6×6, relaxed), ``phonon_thz`` (Γ, X, L: all six branches) and
    ``potential``, ``element``, ``config``, and ``failures``: property → why it is None (a strained cell
    or a vacancy that did not relax within the step limit).
    """
    calculator = potential if isinstance(potential, Calculator) else calculator_for(potential)
    element = _element_of(calculator, element)
    eos = equation_of_state(calculator, element, span=config.eos_span, n_points=config.eos_points)
    failures = {}
    try:  # a rough model may not relax a strained cell or its vacancy: report that, keep the other properties
        elastic = elastic_constants(calculator, element, eos.a0_angstrom, config.strain, config.elastic_fmax_ev_per_a)
    except MlpkitError as error:
        elastic, failures["elastic_constants"] = None, str(error)
    try:
        vacancy_ev = vacancy_formation_energy(calculator, element, eos.a0_angstrom, config.vacancy_repeat, config.vacancy_fmax_ev_per_a)
    except MlpkitError as error:
        vacancy_ev, failures["vacancy_formation_ev"] = None, str(error)
    phonons = diamond_phonons(calculator, element, eos.a0_angstrom, config.phonon_repeat, config.displacement_a)
    return {
        "potential": str(potential) if not isinstance(potential, Calculator) else type(potential).__name__,
        "element": element,
        "a0_angstrom": eos.a0_angstrom,
        "e0_ev_per_atom": eos.e0_ev_per_atom,
        "bulk_modulus_gpa": eos.bulk_modulus_gpa,
        **{key: getattr(elastic, key) if elastic else None for key in ("c11_gpa", "c12_gpa", "c44_gpa", "c44_unrelaxed_gpa")},
        "vacancy_formation_ev": vacancy_ev,
        **phonon_values(phonons),
        "elastic_matrix_gpa": elastic.matrix_gpa.round(6).tolist() if elastic else None,
        "phonon_thz": {name: values.round(6).tolist() for name, values in phonons.items()},
        "failures": failures,
        "config": dataclasses.asdict(config),
    }


@dataclasses.dataclass(frozen=True)
class PropertyTable:
    """Properties of each named potential (``values[name][key]``) and their relative errors against the
    reference column (``relative_error[name][key] = (value − reference) / |reference|``; None where the
    reference lacks the property or is zero)."""

    element: str
    reference: str
    values: dict
    relative_error: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        """The table as Markdown: one row per property that some potential has, one column per potential,
        errors against the reference in brackets."""
        names = list(self.values)
        lines = [f"| {self.element} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key, label in TABLE_KEYS.items():
            if all(self.values[name].get(key) is None for name in names):
                continue
            cells = []
            for name in names:
                value, error = self.values[name].get(key), self.relative_error[name].get(key)
                cell = "–" if value is None else f"{value:.4g}"
                if value is not None and error is not None and name != self.reference:
                    cell += f" ({100 * error:+.1f} %)"
                cells.append(cell)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def relative_errors(values: Mapping, reference: Mapping) -> dict:
    """(value − reference) / |reference| for every :data:`TABLE_KEYS` entry; None where either is missing or the reference is 0."""
    errors = {}
    for key in TABLE_KEYS:
        value, truth = values.get(key), reference.get(key)
        errors[key] = None if value is None or truth is None or truth == 0 else (value - truth) / abs(truth)
    return errors


def property_table(potentials: Mapping, reference: str = "truth", element: str = "Ge", quick: bool = False,
                   config: PropertyConfig | None = None, out: str | os.PathLike | None = None) -> PropertyTable:
    """Measure every potential the same way and compare each with the ``reference`` column.

    potentials: name → a :func:`mlpkit.load_potential` spec (``"sw:Ge"``, a checkpoint path) or an ASE
    calculator, measured with :func:`compute_properties`; or name → a mapping of values already known
    (such as :func:`dft_ground_state`), used as it is. With ``out``, writes ``out/properties_table.json``
    and ``out/properties_table.md``.

    >>> table = property_table({"truth": "sw:Ge", "scratch": "ge_scratch.npz", "transfer": "ge_transfer.npz"},
    ...                        element="Ge", quick=True, out="out/")  # doctest: +SKIP
    """
    if reference not in potentials:
        raise MlpkitError(f"the reference column {reference!r} is not among the potentials {list(potentials)}")
    config = (config or PropertyConfig()).quick() if quick else (config or PropertyConfig())
    calculators: dict[str, Calculator] = {}  # one per distinct spec: compiled programs are reused, results are not

    def measure(spec) -> dict:
        if isinstance(spec, Calculator):
            return compute_properties(spec, element, config)
        if str(spec) not in calculators:
            calculators[str(spec)] = calculator_for(spec)
        return {**compute_properties(calculators[str(spec)], element, config), "potential": str(spec)}

    values = {name: dict(spec) if isinstance(spec, Mapping) else measure(spec) for name, spec in potentials.items()}
    table = PropertyTable(element=element, reference=reference, values=values,
                          relative_error={name: relative_errors(v, values[reference]) for name, v in values.items()})
    if out is not None:
        write_text_atomic(Path(out) / "properties_table.json", json.dumps(table.to_dict(), indent=2) + "\n")
        write_text_atomic(Path(out) / "properties_table.md", table.to_markdown())
    return table
