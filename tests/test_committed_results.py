"""The committed study results (``data/results/``) are current: their CSVs are what their report shows, and every
row's run is the one this mlpkit would make of the study's configuration (a stale result fails here instead of
being shown as current; rerun the command in ``data/results/README.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpkit.study.check import read_results_csv, study_problems

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


# the finished studies, and those being rerun from new sources (``rerun/``: partial until they finish)
STUDIES = ["sw", "sw-below-1089k", "mlearn", "mlearn-below-1089k",
           *sorted(f"rerun/{path.parent.name}" for path in (RESULTS / "rerun").glob("*/results.json"))]


@pytest.mark.parametrize("name", STUDIES)
def test_a_committed_study_is_current_and_its_report_shows_its_csv(name, request):
    if "mlearn" in name:
        request.getfixturevalue("mlearn_dir")  # its keys are made from the DFT files: skipped where they are not
    folder = RESULTS / name
    assert study_problems(folder) == []
    rows = read_results_csv(folder / "results.csv")
    if not name.startswith("rerun/"):  # finished: both curves and the report (a rerun gets them at its end)
        assert {row["init"] for row in rows} == {"scratch", "transfer"} and (folder / "report.html").exists()
    assert {row["init"] for row in rows} <= {"scratch", "transfer"} and {row["seed"] for row in rows} <= {0, 1, 2}
    assert all(0 < row["force_mae_ev_per_a"] < 1 for row in rows)  # eV/Å: trained models, not a unit slip


def test_the_claims_benchmark_prints_the_committed_curves_and_verdicts():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_claims.py"
    result = subprocess.run([sys.executable, str(script), "--study", str(RESULTS / "sw")], capture_output=True, text=True, check=True)
    assert "| 5 | 3 / 3 |" in result.stdout and "current" in result.stdout.splitlines()[0]
    assert "1. transfer below scratch at every N ≤ 50" in result.stdout
