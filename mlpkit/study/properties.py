"""Out-of-target properties of a finished study's Ge models beside the truth: claim 5 of the paper.

:func:`study_property_table` measures, with one :func:`~mlpkit.analysis.property_table`, the first draw's
scratch and transferred models at chosen sizes and the SW Ge reference, and writes
``properties_table.json`` / ``.md`` into the study's folder, where its report shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlpkit.analysis import PropertyTable, property_table
from mlpkit.errors import MlpkitError
from mlpkit.study.check import read_results_csv

TRUTH = {"sw": "sw:Ge"}  # the reference each data type's Ge models are measured against


def study_property_table(study_dir, sizes=(10, 25, 0), inits=("scratch", "transfer"), seed: int = 0,
                         quick: bool = True) -> PropertyTable:
    """The property table of the study in ``study_dir``: "truth" and one column per (init, size) of seed ``seed``
    (size 0: the largest set of the study), written to ``study_dir/properties_table.{json,md}``."""
    study_dir = Path(study_dir)
    data = json.loads((study_dir / "results.json").read_text())["config"]["data"]
    if data not in TRUTH:
        raise MlpkitError(f"{study_dir}: no reference to measure {data!r} Ge models against (the DFT table needs the "
                          f"mlearn data's own reference); have: {sorted(TRUTH)}")
    rows = [row for row in read_results_csv(study_dir / "results.csv") if row["seed"] == seed and row["init"] in inits]
    largest = max((row["size"] for row in rows), default=0)
    wanted = {largest if size == 0 else size for size in sizes}
    potentials = {"truth": TRUTH[data]}
    for row in sorted(rows, key=lambda r: (r["size"], r["init"])):
        if row["size"] in wanted:
            potentials[f"{row['init']}, N = {row['size']}"] = str(study_dir / row["checkpoint"])
    missing = wanted - {row["size"] for row in rows}
    if missing:
        raise MlpkitError(f"{study_dir}/results.csv has no runs of seed {seed} at sizes {sorted(missing)}")
    return property_table(potentials, "truth", "Ge", quick=quick, out=study_dir)
