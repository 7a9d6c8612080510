"""Tutorial settings: one environment variable picks the quick preset, one place says what it means.

``MLPKIT_QUICK=1`` (set by ``bash tasks.sh test``) makes every notebook run on small settings; without it
the notebooks use the full tutorial settings, which take minutes on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
import os

from mlpkit.checkpoint import PRETRAINED_DIR, Checkpoint, load_checkpoint
from mlpkit.models import ModelConfig
from mlpkit.training import TrainConfig

QUICK_ENV = "MLPKIT_QUICK"
PRETRAINED_SI = PRETRAINED_DIR / "si_painn_quick" / "model.npz"


def quick_mode() -> bool:
    """True when ``MLPKIT_QUICK=1``: tests and slow machines run the notebooks on small settings."""
    return os.environ.get(QUICK_ENV, "") == "1"


@dataclasses.dataclass(frozen=True)
class TutorialConfig:
    """What the notebooks run. Ge models share the architecture of the shipped Si model (quick PaiNN)."""

    train: TrainConfig = TrainConfig(model=ModelConfig("painn").quick(), max_epochs=150, warmup_epochs=2, patience_epochs=30)
    si_frames: int = 0  # Si training frames for notebook 02 (0: all)
    si_epochs: int = 40
    ge_size: int = 10  # Ge training frames of the single comparison
    ge_sizes: tuple[int, ...] = (5, 10, 25, 50, 100)  # learning curve
    seeds: tuple[int, ...] = (0, 1, 2)
    md_chunks: int = 100  # MD length in chunks of MDConfig.chunk_steps (20 fs at dt = 1 fs)
    temperature_k: float = 900.0
    vibration_ps: float = 8.0  # MD for the vibrational DOS of notebook 05, sampled every 5 fs: resolution ~ 2 / this THz

    def quick(self) -> TutorialConfig:
        train = dataclasses.replace(self.train, max_epochs=12, patience_epochs=12)
        return dataclasses.replace(self, train=train, si_frames=24, si_epochs=4, ge_sizes=(5, 8, 12, 20), seeds=(0,),
                                   md_chunks=25, vibration_ps=1.0)  # 0.5 ps: long enough for a scratch model to fail


def mode_line() -> str:
    """One line for a notebook's first output: which settings are active, and how to get the other ones."""
    if quick_mode():
        return (f"quick mode ({QUICK_ENV}=1): small settings, 1 to 4 minutes per notebook on a 2-core laptop; "
                "for the full tutorial settings start JupyterLab with `bash tasks.sh lab-full`")
    return (f"full tutorial settings: trainings and MD take minutes on a laptop CPU; for the quick ones start JupyterLab "
            f"with `bash tasks.sh lab` ({QUICK_ENV}=1)")


def tutorial_config() -> TutorialConfig:
    """The quick preset under ``MLPKIT_QUICK=1``, else the full tutorial settings."""
    return TutorialConfig().quick() if quick_mode() else TutorialConfig()


def pretrained_si() -> Checkpoint:
    """The shipped Si model (``mlpkit/pretrained/si_painn_quick``; its README says how it was made)."""
    return load_checkpoint(PRETRAINED_SI, expect_config=TutorialConfig().train.model)
