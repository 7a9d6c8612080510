"""Default Stillinger–Weber data sets, built like the mlearn DFT sets so the two paths run the same study.

Groups (as in mlearn): Elastic (ground state and ±2…10 % strains in 6 Voigt modes), AIMD-NVT (64-atom
Langevin snapshots from 300 K to well above melting), Vacancy (63 atoms at the lowest and highest
temperature) and Surface ((100) and (111) slabs at 300 K). Every frame is labelled by SWCalculator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.calculator import SWCalculator
from mlpkit.data.dataset import Dataset, concatenate, from_frames
from mlpkit.data.extxyz import write_extxyz
from mlpkit.data.splits import train_val_split
from mlpkit.data.card import write_data_card
from mlpkit.fileio import write_text_atomic
from mlpkit.md.sampling import sample_configurations
from mlpkit.potentials import sw_potential
from mlpkit.structures import diamond, slab, strained, with_vacancy

# the temperatures of the mlearn AIMD runs of each element (Zuo et al. 2020)
MLEARN_TEMPERATURES_K = {"Si": (300.0, 843.0, 1518.0, 2530.0, 3374.0), "Ge": (300.0, 605.0, 1089.0, 1816.0, 2422.0)}
# liquids are first melted at 6000 K (see sample_configurations): at 1.5 × 2422 K the SW Ge crystal
# only partly melts within 2 ps, and a perfect crystal superheats far above its melting point
PREMELT_K = 6000.0
ELASTIC_STRAINS = (-0.1, -0.08, -0.06, -0.04, -0.02, 0.02, 0.04, 0.06, 0.08, 0.1)


@dataclasses.dataclass(frozen=True)
class SWDataSpec:
    """What to generate for one element; ``quick()`` is the preset for tests and notebooks."""

    element: str
    seed: int = 0
    aimd_per_temperature: int = 20
    vacancy_per_temperature: int = 32
    surface_per_facet: int = 6
    interval_fs: float = 250.0
    equilibration_fs: float = 2000.0
    test_fraction: float = 0.1

    @property
    def temperatures_k(self) -> tuple[float, ...]:
        return MLEARN_TEMPERATURES_K[self.element]

    def quick(self) -> "SWDataSpec":
        return dataclasses.replace(
            self, aimd_per_temperature=2, vacancy_per_temperature=2, surface_per_facet=1,
            interval_fs=50.0, equilibration_fs=200.0,
        )


def label(frames, group: str) -> Dataset:
    """Label ``frames`` (all of one element) with the SW reference and tag them with ``group``."""
    calculator = SWCalculator(frames[0].get_chemical_symbols()[0])
    for atoms in frames:
        calculator.calculate(atoms, ["energy", "forces", "stress"])
        results = {key: calculator.results[key] for key in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["group"] = group
    return from_frames(frames)


def elastic_frames(element: str) -> list:
    """The ground state and each Voigt strain mode at every strain in ``ELASTIC_STRAINS``."""
    ground = diamond(element)
    frames = [ground]
    for mode in range(6):
        for strain in ELASTIC_STRAINS:
            voigt = np.zeros(6)
            voigt[mode] = strain
            frames.append(strained(ground, voigt))
    return frames


def generate_sw_dataset(spec: SWDataSpec, progress: bool = True) -> Dataset:
    """Every frame of the SW data set of ``spec.element``, in a fixed order, labelled and validated."""
    potential = sw_potential(spec.element)
    runs = []  # (group, seed structure, temperature, snapshots)
    for temperature in spec.temperatures_k:
        runs.append(("AIMD-NVT", diamond(spec.element), temperature, spec.aimd_per_temperature))
    for temperature in (spec.temperatures_k[0], spec.temperatures_k[-1]):
        runs.append(("Vacancy", with_vacancy(diamond(spec.element)), temperature, spec.vacancy_per_temperature))
    liquid_k = spec.temperatures_k[-2:]  # mlearn's two highest temperatures are above melting
    for facet in ("100", "111"):
        surface = slab(spec.element, facet)
        runs.append(("Surface", surface, spec.temperatures_k[0], spec.surface_per_facet))

    parts = [label(elastic_frames(spec.element), "Elastic")]
    for run_index, (group, atoms, temperature, count) in enumerate(runs):
        if progress:
            print(f"{spec.element} {group} at {temperature:g} K: {count} snapshots", flush=True)
        snapshots = sample_configurations(
            potential, atoms, temperature, count, seed=1000 * spec.seed + run_index,
            interval_fs=spec.interval_fs, equilibration_fs=spec.equilibration_fs, progress=progress,
            premelt_k=PREMELT_K if group != "Surface" and temperature in liquid_k else None,
        )
        parts.append(label(snapshots, group))
    return concatenate(parts)


def write_sw_dataset(spec: SWDataSpec, out_dir, command: str, progress: bool = True) -> dict[str, Path]:
    """Generate, split (stratified by group) and write ``out_dir/{element}/{training,test}.extxyz``.

    Returns the written paths; the data card ``out_dir/README.md`` is rewritten to list every
    element present in ``out_dir``.
    """
    dataset = generate_sw_dataset(spec, progress)
    training, test = train_val_split(dataset, spec.test_fraction, seed=spec.seed)
    paths = {}
    for split, part in (("training", training), ("test", test)):
        paths[split] = Path(out_dir) / spec.element / f"{split}.extxyz"
        write_extxyz(part, paths[split])
    settings = ", ".join(f"{field.name}={getattr(spec, field.name)}" for field in dataclasses.fields(spec))
    write_text_atomic(Path(out_dir) / spec.element / "GENERATED_BY", f"{command}\n{settings}\n")
    write_data_card(out_dir)
    return paths


def sw_snapshots(element: str, temperatures_k, per_temperature: int, seed: int = 0, interval_fs: float = 100.0,
                 equilibration_fs: float = 1000.0, progress: bool = True) -> Dataset:
    """SW-labelled 64-atom snapshots of Langevin MD at each temperature (group "AIMD-NVT").

    At or above the element's second-highest mlearn temperature (a liquid for SW), the crystal is
    first melted at 6000 K, as in the shipped data.
    """
    liquid_k = MLEARN_TEMPERATURES_K[element][-2]
    parts = []
    for index, temperature in enumerate(temperatures_k):
        snapshots = sample_configurations(
            sw_potential(element), diamond(element), float(temperature), per_temperature, seed=seed + index,
            interval_fs=interval_fs, equilibration_fs=equilibration_fs, progress=progress,
            premelt_k=PREMELT_K if temperature >= liquid_k else None,
        )
        parts.append(label(snapshots, "AIMD-NVT"))
    return concatenate(parts)
