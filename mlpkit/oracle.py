"""A first-principles oracle: energies and forces of periodic Si/Ge cells from PySCF's Kohn–Sham DFT, cached on disk.

:class:`DFTOracle` is an ASE calculator. Its settings live in one frozen :class:`DFTSettings` (functional, basis,
pseudopotential, k-point mesh, density grid), and every label is stored under a key made of the structure and
those settings, so the same cell is never computed twice. Cells whose estimated cost exceeds the settings'
budget are refused before any work starts. PySCF is an optional dependency (``pip install "mlpkit[dft]"``); its
GTH pseudopotentials and basis sets ship inside the wheel, so nothing is downloaded.

The electrons are smeared (Fermi–Dirac, ``smearing_ha``): Ge in LDA has almost no gap, and at the Γ point of an
8-atom cell a thermal snapshot's highest occupied and lowest empty levels cross, so that an SCF with integer
occupations oscillates and never converges (measured on a rattled cell: 150 cycles without convergence; smeared,
it converges in about 20). The forces are then the derivatives of the Mermin free energy E − TS, and the energy the
oracle reports (``energy`` and ``free_energy`` alike) is that free energy, so that a potential trained on its
labels fits an energy whose gradient its forces are.

Only the Γ point, and no stress: PySCF 2.14's analytic forces of periodic Kohn–Sham need its multigrid
integration, which neither its k-point forces nor its stress support (both fail inside PySCF). Sample the
Brillouin zone with a larger cell instead.

>>> from ase.build import bulk
>>> atoms = bulk("Ge", "diamond", a=5.66, cubic=True)
>>> atoms.calc = DFTOracle()  # doctest: +SKIP
>>> atoms.get_forces()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from mlpkit.errors import MlpkitError
from mlpkit.fileio import write_text_atomic

# seconds for one SCF and its forces on an 8-atom Ge cell with the default settings on two laptop-class cores
# (benchmarks/oracle_cost.py: 10.8 s; 16.5 s at 16 atoms, 33.2 s at 32, about atoms^0.8, the density grid
# dominating); the estimate scales it linearly with the atoms, erring high
REFERENCE_SECONDS = 11.0
REFERENCE_ATOMS = 8


@dataclasses.dataclass(frozen=True)
class DFTSettings:
    """What the oracle computes. The defaults are crude on purpose, to label a small cell in seconds: LDA, a
    minimal (single-zeta) basis, Goedecker–Teter–Hutter pseudopotentials, the Γ point, electrons smeared by
    ``smearing_ha`` (see the module's docstring). ``ke_cutoff_ha``:
    kinetic-energy cutoff of the density grid (None: PySCF's choice for the basis); ``max_seconds``: cells
    estimated to take longer are refused."""

    xc: str = "lda,vwn"
    smearing_ha: float = 0.005  # Fermi–Dirac width, 0.14 eV
    basis: str = "gth-szv"
    pseudo: str = "gth-pade"
    kpoints: tuple[int, int, int] = (1, 1, 1)  # the Γ point only (see the module's docstring)
    ke_cutoff_ha: float | None = None
    conv_tol_ha: float = 1e-7  # Ha; forces within 1e-3 eV/Å of a 1e-9 SCF (measured), at half its cycles
    max_seconds: float = 60.0

    def __post_init__(self):
        if tuple(self.kpoints) != (1, 1, 1):
            raise MlpkitError(f"invalid DFT settings: kpoints {self.kpoints}: the oracle's forces work at the Γ point "
                              "only (PySCF's k-point forces fail with the multigrid integrals); use a larger cell instead")
        if not 0 < self.conv_tol_ha < 1e-3 or not 0 < self.max_seconds < np.inf:
            raise MlpkitError(f"invalid DFT settings: 0 < conv_tol_ha < 1e-3 and max_seconds > 0, got {self.conv_tol_ha}, "
                              f"{self.max_seconds}")
        if not 0 < self.smearing_ha < 0.1:
            raise MlpkitError(f"invalid DFT settings: 0 < smearing_ha < 0.1 Ha, got {self.smearing_ha}")
        if self.ke_cutoff_ha is not None and not 0 < self.ke_cutoff_ha < np.inf:
            raise MlpkitError(f"invalid DFT settings: ke_cutoff_ha must be > 0, got {self.ke_cutoff_ha}")

    def estimated_seconds(self, n_atoms: int) -> float:
        """Rough wall time of one label: the measured 8-atom cost scaled linearly with the atoms."""
        return REFERENCE_SECONDS * n_atoms / REFERENCE_ATOMS


def default_cache_dir() -> Path:
    """``$MLPKIT_CACHE_DIR/dft`` if set, else ``~/.cache/mlpkit/dft`` (or under ``$XDG_CACHE_HOME``)."""
    if os.environ.get("MLPKIT_CACHE_DIR"):
        return Path(os.environ["MLPKIT_CACHE_DIR"]) / "dft"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlpkit" / "dft"


def label_key(atoms: Atoms, settings: DFTSettings) -> str:
    """SHA-256 of the structure (species, positions and cell rounded to 1e-8 Å, periodicity) and the settings."""
    payload = {
        "numbers": atoms.numbers.tolist(), "positions_a": np.round(atoms.positions, 8).tolist(),
        "cell_a": np.round(atoms.cell.array, 8).tolist(), "pbc": atoms.pbc.tolist(), "settings": dataclasses.asdict(settings),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class DFTOracle(Calculator):
    """ASE calculator over PySCF's periodic Kohn–Sham DFT (energy in eV, forces in eV/Å), with a disk cache.

    ``computed`` counts the labels this instance computed (not read from the cache); ``last_seconds`` is the
    wall time of the latest one.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, settings: DFTSettings = DFTSettings(), cache_dir=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.computed = 0
        self.last_seconds = 0.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        labels = self.label(self.atoms)
        self.results = {"energy": labels["energy_ev"], "free_energy": labels["energy_ev"],
                        "forces": np.array(labels["forces_ev_per_a"])}

    def label(self, atoms: Atoms) -> dict:
        """{"energy_ev", "forces_ev_per_a" [N][3], "seconds"}: from the cache, or computed now and cached."""
        path = self.cache_dir / f"{label_key(atoms, self.settings)}.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                pass  # a damaged cache entry is computed again and replaced
        check_cell(atoms, self.settings)
        start = time.perf_counter()
        energy_ev, forces_ev_per_a = kohn_sham(atoms, self.settings)
        self.last_seconds = time.perf_counter() - start
        self.computed += 1
        labels = {"energy_ev": energy_ev, "forces_ev_per_a": forces_ev_per_a.tolist(), "seconds": self.last_seconds}
        write_text_atomic(path, json.dumps(labels) + "\n")
        return labels


def check_cell(atoms: Atoms, settings: DFTSettings) -> None:
    """Refuse what the oracle cannot do: a cell that is not periodic in 3D, elements without the basis, an odd
    electron count (it would need spin polarisation), or an estimated cost above ``settings.max_seconds``."""
    if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-6:
        raise MlpkitError("the DFT oracle labels periodic cells only (pbc in all three directions, a cell with a volume)")
    unknown = sorted(set(atoms.get_chemical_symbols()) - {"Si", "Ge"})
    if unknown:
        raise MlpkitError(f"the DFT oracle's settings cover Si and Ge, not {unknown}")
    n_atoms = len(atoms)
    estimate_s = settings.estimated_seconds(n_atoms)
    if estimate_s > settings.max_seconds:
        raise MlpkitError(f"a {n_atoms}-atom cell would take about {estimate_s:.0f} s with these settings, over the budget "
                          f"of {settings.max_seconds:.0f} s "
                          f"(DFTSettings.max_seconds): label smaller cells, or raise the budget")


def kohn_sham(atoms: Atoms, settings: DFTSettings) -> tuple[float, np.ndarray]:
    """(free energy eV, forces [N, 3] eV/Å) of ``atoms`` by restricted Kohn–Sham DFT in PySCF with smeared
    occupations, converged to ``settings.conv_tol_ha``; an SCF that does not converge raises
    :class:`~mlpkit.errors.MlpkitError`."""
    try:
        from pyscf.pbc import dft, gto
        from pyscf.pbc.dft import multigrid
    except ImportError:
        raise MlpkitError('the DFT oracle needs PySCF: pip install "mlpkit[dft]"') from None
    cell = gto.Cell()
    cell.atom = [(symbol, position) for symbol, position in zip(atoms.get_chemical_symbols(), atoms.positions)]
    cell.a, cell.unit, cell.verbose = atoms.cell.array, "A", 0
    cell.basis, cell.pseudo = settings.basis, settings.pseudo
    if settings.ke_cutoff_ha is not None:
        cell.ke_cutoff = settings.ke_cutoff_ha
    cell.build()
    if cell.nelectron % 2:
        raise MlpkitError(f"{cell.nelectron} valence electrons: the oracle's restricted Kohn–Sham needs an even number")
    solver = dft.RKS(cell, xc=settings.xc).smearing(sigma=settings.smearing_ha, method="fermi")  # the Γ point
    solver._numint = multigrid.MultiGridNumInt2(cell)  # PySCF's periodic RKS forces need the multigrid integrals
    solver.conv_tol = settings.conv_tol_ha
    solver.kernel()
    if not solver.converged:
        raise MlpkitError(f"the SCF of a {len(atoms)}-atom cell did not converge to {settings.conv_tol_ha} Ha")
    gradient_ha_per_bohr = np.asarray(solver.nuc_grad_method().kernel())  # of the free energy, not of e_tot
    return float(solver.e_free * units.Hartree), -gradient_ha_per_bohr * units.Hartree / units.Bohr
