"""mlpkit: machine-learning interatomic potentials in JAX, and transfer learning from Si to Ge."""

from mlpkit.calculator import MLPCalculator, PotentialCalculator, SWCalculator, calculator_for, load_calculator, load_potential
from mlpkit.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from mlpkit.errors import DataError, MlpkitError

__version__ = "0.1.0"

__all__ = [
    "Checkpoint", "CheckpointError", "DataError", "MLPCalculator", "MlpkitError", "PotentialCalculator", "SWCalculator",
    "calculator_for", "load_calculator", "load_checkpoint", "load_potential", "save_checkpoint", "__version__",
]
