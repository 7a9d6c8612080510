"""The shipped Si model is the file its data card names, and it still has the validation errors recorded
when it was made (a change in the model code that alters its predictions shows up here)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from mlpkit.calculator import MLPCalculator
from mlpkit.data import load_dataset, sw_data_path, train_val_split
from mlpkit.training import evaluate
from mlpkit.viz import PRETRAINED_SI, TutorialConfig, pretrained_si

CARD = PRETRAINED_SI.parents[1] / "README.md"


def test_the_data_card_gives_the_command_and_the_checksum_of_every_file():
    card = CARD.read_text()
    assert "mlpkit train --data sw:Si --model painn --quick --out mlpkit/pretrained/si_painn_quick" in card
    for path in sorted(PRETRAINED_SI.parent.iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert re.search(rf"`si_painn_quick/{path.name}` \| `{digest}`", card), f"{path.name}: checksum not on the card"


def test_the_pretrained_model_reproduces_its_recorded_validation_errors():
    checkpoint = pretrained_si()
    assert checkpoint.config == TutorialConfig().train.model and list(checkpoint.table.symbols) == ["Si"]
    recorded = json.loads((PRETRAINED_SI.parent / "metrics.json").read_text())["validation"]
    _, validation = train_val_split(load_dataset(sw_data_path("Si", "training")), val_fraction=0.1, seed=0)
    assert len(validation) == checkpoint.metadata["validation_frames"]
    measured = evaluate(checkpoint, validation)
    for key in ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "force_rmse_ev_per_a", "stress_mae_gpa"):
        assert measured[key] == pytest.approx(recorded[key], rel=1e-3), key
    assert measured["force_mae_ev_per_a"] < 0.25  # a usable starting point for Ge: ~10 % of typical hot-frame forces


def test_the_pretrained_model_is_smooth_at_the_perfect_crystal_and_near_sw():
    # −F/h of one displaced atom is a force constant only if the energy is smooth at the crystal; SW gives
    # 17.7 eV/Å² at every h (tests/test_sw.py), a cusp would make it grow as h falls
    from test_models import self_force_constant_ev_per_a2

    calculator = MLPCalculator(pretrained_si(), float64=True)
    constants = [self_force_constant_ev_per_a2(calculator, h) for h in (0.1, 0.03, 0.01, 1e-3, 1e-4)]
    assert constants == pytest.approx([constants[-1]] * len(constants), rel=0.02)
    assert constants[-1] == pytest.approx(17.7, rel=0.25)
