"""Out-of-target properties of a finished study's Ge models beside the truth: claim 5 of the paper.

:func:`study_property_table` measures, with one :func:`~mlpkit.analysis.property_table`, the first draw's
scratch and transferred models at chosen sizes beside the truth (SW Ge, or the DFT elastic fit of the mlearn
Ge data), and writes ``properties_table.json`` / ``.md`` into the study's folder, where its report shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlpkit.analysis import PropertyTable, dft_reference, property_table
from mlpkit.errors import MlpkitError
from mlpkit.study.check import read_results_csv


def truth_column(config: dict):
    """The reference a study's Ge models are measured against: SW Ge itself, or for the DFT data the elastic
    fit of the mlearn Ge set's own Elastic group (:func:`~mlpkit.analysis.dft_reference`)."""
    if config["data"] == "mlearn":
        return dft_reference("Ge", config["mlearn_dir"])
    return "sw:Ge"


def study_property_table(study_dir, sizes=(10, 25, 0), inits=("scratch", "transfer"), seed: int = 0,
                         quick: bool = True) -> PropertyTable:
    """The property table of the study in ``study_dir``: "truth" and one column per (init, size) of seed ``seed``
    (size 0: the largest set of the study), written to ``study_dir/properties_table.{json,md}``."""
    study_dir = Path(study_dir)
    config = json.loads((study_dir / "results.json").read_text())["config"]
    rows = [row for row in read_results_csv(study_dir / "results.csv") if row["seed"] == seed and row["init"] in inits]
    largest = max((row["size"] for row in rows), default=0)
    wanted = {largest if size == 0 else size for size in sizes}
    potentials = {"truth": truth_column(config)}
    for row in sorted(rows, key=lambda r: (r["size"], r["init"])):
        if row["size"] in wanted:
            potentials[f"{row['init']}, N = {row['size']}"] = str(study_dir / row["checkpoint"])
    missing = wanted - {row["size"] for row in rows}
    if missing:
        raise MlpkitError(f"{study_dir}/results.csv has no runs of seed {seed} at sizes {sorted(missing)}")
    return property_table(potentials, "truth", "Ge", quick=quick, out=study_dir)
