"""mlpkit: machine-learning interatomic potentials in JAX, and transfer learning from Si to Ge."""

from mlpkit.calculator import PotentialCalculator, SWCalculator
from mlpkit.errors import DataError, MlpkitError

__version__ = "0.1.0"

__all__ = ["PotentialCalculator", "SWCalculator", "DataError", "MlpkitError", "__version__"]
