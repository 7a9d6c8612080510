"""Whether a study folder on disk is what the current code makes of its configuration: committed results are
checked before they are shown, so a stale one is flagged rather than presented as current.

:func:`study_problems` compares ``results.csv`` with ``results.json``, every row's run folder with the key
the code computes for that cell today (data checksums, source, training settings, mlpkit version), each
run against its own record, and the report's table with the CSV.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mlpkit.checkpoint import checkpoint_path, load_checkpoint
from mlpkit.errors import MlpkitError
from mlpkit.fileio import sha256_of
from mlpkit.study.cache import finished_record, run_key
from mlpkit.study.cells import ranked_order, recipe_of, source_payload, target_payload
from mlpkit.study.config import StudyConfig, data_checksums, load_study_data
from mlpkit.study.report import summary_table
from mlpkit.study.results import RESULT_COLUMNS

NUMERIC = {"size", "seed", "energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_ev_per_a",
           "force_rmse_ev_per_a", "stress_mae_gpa", "train_frames", "wall_s"}


def read_results_csv(path) -> list[dict]:
    """The rows of a study's ``results.csv``, numbers as numbers (NaN where empty)."""
    with open(path, newline="") as stream:
        table = list(csv.DictReader(stream))
    rows = []
    for line, row in enumerate(table, start=2):  # line 1 is the header
        try:
            rows.append({key: (_number(row[key]) if key in NUMERIC else row[key]) for key in RESULT_COLUMNS})
        except (KeyError, TypeError, ValueError):
            raise MlpkitError(f"{path}, line {line}: not a row of a study's results table (columns "
                              f"{', '.join(RESULT_COLUMNS)}; cut short, or a number that is not one)") from None
    return rows


def _number(text: str):
    value = float(text) if text not in ("", "nan") else float("nan")
    return int(value) if value.is_integer() and "." not in text else value


def planned_folders(config: StudyConfig, out: Path) -> dict[tuple[int, str, int], Path]:
    """(frames, init, seed) → the run folder the current code would use for that row of ``config``'s study."""
    planned = {}
    for draw in config.draws():
        data, checksums = load_study_data(draw), data_checksums(draw)
        source = _source(draw, checksums, out)
        inits = [init for init in draw.inits if source is not None or not recipe_of(draw, init).needs_source]
        for selection in sorted({recipe_of(draw, init).selection for init in inits} - {"random"}):
            data = data.with_ranking(selection, ranked_order(selection, draw, data, source, checksums, out))
        for size in draw.sizes:
            for init in inits:  # without the source it would train, a transfer's row cannot be current
                payload, n_frames, _ = target_payload(draw, data, checksums, source and source["sha256"], size, init)
                for seed in draw.seeds:
                    planned[(n_frames, init, seed)] = out / "runs" / run_key(payload)
    return planned


def _source(config: StudyConfig, checksums: dict, out: Path) -> dict | None:
    """The study's Si source as :func:`~mlpkit.study.cells.source_model` gives it, without training one (None:
    the study has not trained it)."""
    if config.source is not None:
        path = checkpoint_path(config.source)
    else:
        path = out / "runs" / run_key(source_payload(config, checksums)) / "model.npz"
        if not (path.parent / "done.json").exists():
            return None
        finished_record(path.parent)
    return {"checkpoint": load_checkpoint(path), "sha256": sha256_of(path)}


def study_problems(out) -> list[str]:
    """Everything in the study folder ``out`` that is not current: [] when its results, runs and report are
    exactly what this mlpkit makes of the configuration in ``results.json`` (a study still running may lack
    rows and its report; what it has must be current)."""
    out = Path(out)
    document = json.loads((out / "results.json").read_text())
    config = StudyConfig.from_dict(document["config"])
    rows = read_results_csv(out / "results.csv")
    problems = []
    stored = [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in document["rows"]]
    if len(stored) != len(rows) or any(not _same_row(a, b) for a, b in zip(rows, stored)):
        problems.append("results.csv and results.json hold different rows")
    planned = planned_folders(config, out)
    for row in rows:
        folder = planned.get((row["size"], row["init"], row["seed"]))
        if folder is None or out / row["checkpoint"] != folder / "model.npz":
            problems.append(f"stale row (N = {row['size']}, {row['init']}, seed {row['seed']}): {row['checkpoint']} is not "
                            "the run this mlpkit would make of the study's configuration")
            continue
        try:
            finished_record(folder)
        except MlpkitError as error:
            problems.append(str(error))
    report = out / "report.html"
    if report.exists() and summary_table(rows) not in report.read_text():
        problems.append("report.html does not show the numbers of results.csv")
    return problems


def _same_row(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] or (k in NUMERIC and np.isclose(float(a[k]), float(b[k]), rtol=1e-12, equal_nan=True))
               for k in RESULT_COLUMNS)
