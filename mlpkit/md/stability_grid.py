"""The stability map of a study: how long MD survives as a function of temperature and of the Ge set
size, for every initialisation.

Every (size, init) cell of a finished study (its ensemble checkpoint, as ``results.csv`` names it) runs
NVT Langevin MD from the perfect 64-atom crystal at every temperature, ``replicas`` seeds each, all
as one vmapped batch under the stability monitor (:func:`~mlpkit.md.replicas.run_replicas`). A cell
is written to ``<study>/stability/`` when it finishes and read back on a rerun with the same settings,
so an interrupted map recomputes only its unfinished cells; ``stability.csv`` holds the table.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from mlpkit.calculator import load_potential
from mlpkit.errors import MlpkitError
from mlpkit.fileio import csv_text, sha256_of, write_text_atomic
from mlpkit.md.replicas import run_replicas, stability_summary
from mlpkit.md.run import MDConfig
from mlpkit.md.stability import StabilityLimits
from mlpkit.structures import diamond

STABILITY_COLUMNS = ("size", "init", "temperature_k", "fraction_stable", "mean_time_to_failure_fs", "replicas")
GE_MELTING_K = 1211.0  # germanium's melting point
# 300 K to 1.5 × the melting point, on the temperature ladder of the Ge data (SCIENCE.md)
DEFAULT_TEMPERATURES_K = (300.0, 605.0, 1089.0, 1.5 * GE_MELTING_K)
MAP_MD = MDConfig(temperature_k=300.0, float64=False)  # each replica's temperature replaces this one


@dataclasses.dataclass(frozen=True)
class MapSettings:
    """What one map computes: a finished cell is reused only under the same settings."""

    temperatures_k: tuple[float, ...] = DEFAULT_TEMPERATURES_K
    duration_fs: float = 10_000.0
    replicas: int = 4
    md: MDConfig = MAP_MD
    limits: StabilityLimits = StabilityLimits()

    def __post_init__(self):
        if not self.temperatures_k or min(self.temperatures_k) <= 0 or not 0 < self.duration_fs < 1e9 or self.replicas < 1:
            raise MlpkitError(f"a stability map needs temperatures > 0 K, a duration > 0 fs and ≥ 1 replica, got "
                              f"{list(self.temperatures_k)}, {self.duration_fs} fs, {self.replicas}")

    @classmethod
    def quick(cls) -> MapSettings:
        """Two temperatures (below and far above melting), two replicas, 0.25 ps."""
        return cls(temperatures_k=(605.0, 1.5 * GE_MELTING_K), duration_fs=250.0, replicas=2)


def study_cells(study_dir, sizes=None, inits=None) -> dict[tuple[int, str], list[Path]]:
    """(size, init) → the checkpoints of that cell (one per draw of the Ge data, or one ensemble), from
    ``<study_dir>/results.csv``; optionally only the given sizes and initialisations (:func:`chosen_cells`). Every
    run is checked against its record (:func:`~mlpkit.study.cache.finished_record`): a swapped or edited model is
    refused."""
    from mlpkit.study.cache import finished_record  # the study's own check; imported here, as the study imports this module

    study_dir = Path(study_dir)
    path = study_dir / "results.csv"
    if not path.is_file():
        raise MlpkitError(f"{path} not found: the stability map reads a study written by `mlpkit study`")
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    cells: dict[tuple[int, str], list[Path]] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            checkpoints = cells.setdefault((int(row["size"]), row["init"]), [])
            if study_dir / row["checkpoint"] not in checkpoints:
                checkpoints.append(study_dir / row["checkpoint"])
        except (KeyError, TypeError, ValueError):
            raise MlpkitError(f"{path}, line {line}: not a row of a study's results table (it needs a size, an init and a "
                              "checkpoint: cut short, or a size that is not a number); run the study again to rewrite it") from None
    _check_row_count(path, len(rows))
    chosen = chosen_cells(path, cells, sizes, inits)
    for checkpoints in chosen.values():
        for checkpoint in checkpoints:
            finished_record(checkpoint.parent)
    return chosen


def chosen_cells(path: Path, cells: dict, sizes=None, inits=None) -> dict:
    """The cells of ``cells`` (of the study table ``path``) with the given Ge set sizes, 0 standing for the study's
    largest (as in ``mlpkit study --sizes``), and initialisations; a size the study does not have is refused
    instead of silently skipped."""
    present = {size for size, _ in cells}
    wanted = None if sizes is None else {max(present, default=0) if size == 0 else size for size in sizes}
    missing = sorted((wanted or set()) - present)
    if missing:
        raise MlpkitError(f"{path} has no runs with {missing} Ge frames; its sizes are {sorted(present)} (0: the largest)")
    chosen = {(size, init): checkpoints for (size, init), checkpoints in cells.items()
              if (wanted is None or size in wanted) and (inits is None or init in inits)}
    if not chosen:
        raise MlpkitError(f"{path} has no cell with sizes {wanted} and inits {inits}")
    return chosen


def _check_row_count(path: Path, count: int) -> None:
    """A ``results.csv`` cut at a row's end reads as a smaller study: its ``results.json`` says how many rows it has."""
    document = path.with_name("results.json")
    try:
        expected = len(json.loads(document.read_text())["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # a table without its record (written by hand, say) is taken as it is
    if expected != count:
        raise MlpkitError(f"{path} holds {count} rows where {document.name} records {expected}: the table was cut or "
                          "edited; run the study again to rewrite it")


def stability_map(study_dir, temperatures_k=DEFAULT_TEMPERATURES_K, duration_fs: float = 10_000.0, replicas: int = 4,
                  sizes=None, inits=None, settings: MapSettings | None = None, out=None, on_row=None,
                  progress: bool = True, stop_requested=None) -> list[dict]:
    """Rows with :data:`STABILITY_COLUMNS`, one per (size, init, temperature), for the cells of the study in
    ``study_dir`` (see :func:`study_cells`); also written to ``<out>/stability.csv`` (``out``: the study's
    folder unless given), with each finished model's runs in ``<out>/stability/``.

    ``sizes`` and ``inits`` choose the cells to compute; the map also keeps every other cell already finished in
    ``<out>/stability/`` under the same settings, so passes over parts of a study (a core each) add up to its map.
    ``settings`` replaces ``temperatures_k``, ``duration_fs`` and ``replicas`` when given. ``on_row(row)`` is
    called as each row becomes available (live maps); once ``stop_requested()`` is true no further model
    starts, and the rows so far are returned. A cell of several draws runs ``replicas`` seeds on each
    draw's model and pools them. ``mean_time_to_failure_fs`` counts a run that survived as the whole duration,
    so it is a lower bound wherever some survived.
    """
    settings = settings or MapSettings(tuple(float(t) for t in temperatures_k), float(duration_fs), int(replicas))
    out = Path(study_dir if out is None else out)
    cells = study_cells(study_dir)
    chosen = chosen_cells(Path(study_dir) / "results.csv", cells, sizes, inits)
    rows = []
    for cell, checkpoints in cells.items():
        draws = []
        for k, checkpoint in enumerate(checkpoints):
            record = _cell_record(checkpoint, settings)
            draws.append(_stored_rows(cell, k, record, out / "stability"))
            if cell in chosen and draws[-1] is None:
                if stop_requested is not None and stop_requested():
                    return rows
                draws[-1] = _computed_rows(cell, k, checkpoint, settings, record, out / "stability", progress)
        if any(draw is None for draw in draws):
            continue  # a cell not chosen and not finished
        for row in pooled_rows(draws):
            rows.append(row)
            if on_row is not None:
                on_row(row)
        write_stability_csv(out / "stability.csv", rows)
    return rows


def pooled_rows(draws: list[list[dict]]) -> list[dict]:
    """One row per temperature from the rows of each draw's model: the fractions and times averaged with the
    replicas as weights, the replicas summed."""
    pooled = []
    for same_temperature in zip(*draws):
        runs = sum(row["replicas"] for row in same_temperature)
        mean = {key: sum(row[key] * row["replicas"] for row in same_temperature) / runs
                for key in ("fraction_stable", "mean_time_to_failure_fs")}
        pooled.append({**same_temperature[0], **mean, "replicas": runs})
    return pooled


def potential_stability(potential, settings: MapSettings, progress: bool = False) -> list[dict]:
    """Per temperature: ``temperature_k``, ``runs``, ``fraction_stable``, ``mean_time_to_failure_fs`` of
    ``potential`` (a :class:`~mlpkit.potentials.Potential`) from its element's 64-atom diamond crystal."""
    crystal = diamond(potential.elements[0])
    runs = run_replicas(potential, crystal, settings.temperatures_k, range(settings.replicas), settings.duration_fs,
                        settings.md, settings.limits, progress)
    return stability_summary(runs)


def _cell_path(folder: Path, size: int, init: str, draw: int) -> Path:
    return folder / (f"{init}_N{size}.json" if draw == 0 else f"{init}_N{size}_draw{draw}.json")


def _cell_record(checkpoint: Path, settings: MapSettings) -> dict:
    """What a finished cell's file must record to be reused: its model and the map's settings."""
    return {"checkpoint_sha256": sha256_of(checkpoint), "settings": json.loads(json.dumps(dataclasses.asdict(settings)))}


def _stored_rows(cell: tuple[int, str], draw: int, record: dict, folder: Path) -> list[dict] | None:
    """The rows of a draw's model finished before under ``record`` (:func:`_cell_record`); None if there are none."""
    stored = _stored_cell(_cell_path(folder, *cell, draw))
    return stored["rows"] if {key: stored.get(key) for key in record} == record else None


def _computed_rows(cell: tuple[int, str], draw: int, checkpoint: Path, settings: MapSettings, record: dict, folder: Path,
                   progress: bool) -> list[dict]:
    """Run the draw's model under ``settings`` and write its rows beside their ``record`` (:func:`_cell_record`)."""
    size, init = cell
    summary = potential_stability(load_potential(checkpoint), settings, progress)
    rows = [{"size": size, "init": init, "temperature_k": s["temperature_k"], "fraction_stable": s["fraction_stable"],
             "mean_time_to_failure_fs": s["mean_time_to_failure_fs"], "replicas": s["runs"]} for s in summary]
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(_cell_path(folder, size, init, draw), json.dumps({**record, "rows": rows}, indent=1))
    return rows


def _stored_cell(path: Path) -> dict:
    """A finished cell's record, or {} where there is none or it cannot be read (then it is computed again)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) and isinstance(stored.get("rows"), list) else {}


def write_stability_csv(path, rows: list[dict]) -> None:
    write_text_atomic(path, csv_text(rows, STABILITY_COLUMNS))


def read_stability_csv(path) -> list[dict]:
    """The rows of a ``stability.csv``, numbers as numbers; [] when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        table = list(csv.DictReader(stream))
    try:
        return [{"size": int(row["size"]), "init": row["init"], "temperature_k": float(row["temperature_k"]),
                 "fraction_stable": float(row["fraction_stable"]),
                 "mean_time_to_failure_fs": float(row["mean_time_to_failure_fs"]), "replicas": int(row["replicas"])}
                for row in table]
    except (KeyError, TypeError, ValueError) as error:
        raise MlpkitError(f"{path}: not a stability table (columns {', '.join(STABILITY_COLUMNS)}): {error!r}") from error
