"""The shipped models are the files their data card names, and they still have the validation errors recorded
when they were made (a change in the model code that alters their predictions shows up here)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from mlpkit.calculator import MLPCalculator
from mlpkit.checkpoint import PRETRAINED_DIR, load_checkpoint
from mlpkit.data import load_dataset, sw_data_path, train_val_split
from mlpkit.training import evaluate
from mlpkit.viz import TutorialConfig, pretrained_si

CARD = PRETRAINED_DIR / "README.md"
# shipped model → (the command on its card, its training file: "sw" or "mlearn", the largest validation force MAE)
SHIPPED = {
    "si_painn_quick": ("mlpkit train --data sw:Si --model painn --quick --out mlpkit/pretrained/si_painn_quick", "sw", 0.25),
    "si_mace_mlearn": ("mlpkit train --data MLEARN/Si/training.json --test MLEARN/Si/test.json --model mace --quick "
                       "--recipe mace --ensemble 3 --epochs 60 --out mlpkit/pretrained/si_mace_mlearn", "mlearn", 0.05),
    "si_mace_sw": ("mlpkit train --data sw:Si --test sw:Si:test --model mace --quick --recipe default --epochs 200 "
                   "--out mlpkit/pretrained/si_mace_sw", "sw", 0.025),
}


def test_every_shipped_model_is_on_the_card():
    assert sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/model.npz")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_data_card_gives_the_command_and_the_checksum_of_every_file(name):
    card = CARD.read_text()
    assert SHIPPED[name][0] in card
    for path in sorted((PRETRAINED_DIR / name).iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert re.search(rf"`{name}/{path.name}` \| `{digest}`", card), f"{path.name}: checksum not on the card"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_model_reproduces_its_recorded_validation_errors(name, request):
    _, source, largest_force_mae = SHIPPED[name]
    if source == "sw":
        training = load_dataset(sw_data_path("Si", "training"))
    else:
        training = load_dataset(request.getfixturevalue("mlearn_dir") / "Si" / "training.json")
    checkpoint = load_checkpoint(f"pretrained:{name}")
    assert list(checkpoint.table.symbols) == ["Si"]
    recorded = json.loads((PRETRAINED_DIR / name / "metrics.json").read_text())["validation"]
    _, validation = train_val_split(training, val_fraction=0.1, seed=0)
    assert len(validation) == checkpoint.metadata["validation_frames"]
    measured = evaluate(checkpoint, validation)
    for key in ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "force_rmse_ev_per_a", "stress_mae_gpa"):
        assert measured[key] == pytest.approx(recorded[key], rel=1e-3), key
    assert measured["force_mae_ev_per_a"] < largest_force_mae


def test_the_tutorials_start_from_the_shipped_quick_painn():
    assert pretrained_si().config == TutorialConfig().train.model


def test_the_pretrained_model_is_smooth_at_the_perfect_crystal_and_near_sw():
    # −F/h of one displaced atom is a force constant only if the energy is smooth at the crystal; SW gives
    # 17.7 eV/Å² at every h (tests/test_sw.py), a cusp would make it grow as h falls
    from conftest import self_force_constant_ev_per_a2

    calculator = MLPCalculator(pretrained_si(), float64=True)
    constants = [self_force_constant_ev_per_a2(calculator, h) for h in (0.1, 0.03, 0.01, 1e-3, 1e-4)]
    assert constants == pytest.approx([constants[-1]] * len(constants), rel=0.02)
    assert constants[-1] == pytest.approx(17.7, rel=0.25)
