"""Out-of-target properties, measured identically for any potential (SW reference, model, ensemble).

- structure of trajectories: :func:`radial_distribution`, :func:`angular_distribution`, :func:`peak_positions`;
- dynamics of trajectories: :func:`mean_squared_displacement`, :func:`diffusion_coefficient`,
  :func:`velocity_autocorrelation`, :func:`vibrational_dos`;
- static properties through an ASE calculator: :func:`equation_of_state`, :func:`elastic_constants`,
  :func:`vacancy_formation_energy`, :func:`diamond_phonons`;
- all of them at once: :func:`compute_properties`, and the comparison :func:`property_table` against a
  reference column (the SW truth, or the DFT column :func:`dft_reference` fitted to the mlearn Elastic group).

>>> from mlpkit.analysis import PropertyConfig, compute_properties
>>> round(compute_properties("sw:Si", config=PropertyConfig().quick())["a0_angstrom"], 3)  # doctest: +SKIP
5.431
"""

from mlpkit.analysis.dynamics import diffusion_coefficient, mean_squared_displacement, velocity_autocorrelation, vibrational_dos
from mlpkit.analysis.phonons import diamond_phonons, fcc_special_points, phonon_frequencies
from mlpkit.analysis.reference import MLEARN_GROUND_STATE, dft_ground_state, dft_reference, elastic_reference
from mlpkit.analysis.static import (
    ElasticConstants, EquationOfStateFit, elastic_constants, equation_of_state, relax_positions, vacancy_formation_energy,
)
from mlpkit.analysis.structure import angular_distribution, gaussian_smooth, pair_vectors, peak_positions, radial_distribution
from mlpkit.analysis.table import (
    TABLE_KEYS, PropertyConfig, PropertyTable, compute_properties, phonon_values, property_table, relative_errors,
)

__all__ = [
    "MLEARN_GROUND_STATE", "TABLE_KEYS", "ElasticConstants", "EquationOfStateFit", "PropertyConfig", "PropertyTable",
    "angular_distribution", "compute_properties", "dft_ground_state", "dft_reference", "diamond_phonons", "diffusion_coefficient",
    "elastic_constants", "elastic_reference", "equation_of_state", "fcc_special_points", "gaussian_smooth", "mean_squared_displacement",
    "pair_vectors", "peak_positions", "phonon_frequencies", "phonon_values", "property_table", "radial_distribution", "relative_errors",
    "relax_positions", "vacancy_formation_energy", "velocity_autocorrelation", "vibrational_dos",
]
