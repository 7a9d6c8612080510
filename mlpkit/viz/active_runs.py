"""Active against random selection for a panel: both loops of :func:`mlpkit.active.active_learning` run a round
each in turn, from the same candidates, plotted as they go, with each structure the oracle labels on view."""

from __future__ import annotations

import html
import itertools

import numpy as np

from mlpkit.active import STRATEGIES, ActiveConfig, Round, compare_strategies
from mlpkit.checkpoint import Checkpoint
from mlpkit.transfer import TransferConfig
from mlpkit.viz.figures import record_round
from mlpkit.viz.jobs import Job


def compare_selection(source: Checkpoint, oracle, config: ActiveConfig, figure, job: Job, view=None, seed: int = 0,
                      transfer: TransferConfig = TransferConfig().with_length_scaling("mlearn")) -> dict[str, list[Round]]:
    """:func:`mlpkit.active.compare_strategies`, plotted as it goes. ``view`` (a
    :class:`~mlpkit.viz.structure.StructureView` of an 8-atom cell) shows each structure as the oracle returns it,
    coloured by its DFT force magnitude. Returns each strategy's rounds."""
    counter = itertools.count(1)

    def show(atoms, seconds: float) -> None:
        note = f"DFT label {next(counter)}: {atoms.info.get('group', '')}, {seconds:.1f} s"
        if view is not None:
            view.update(atoms.positions, np.linalg.norm(atoms.get_forces(), axis=1), note=note)
        job.report(note)

    job.report(f"proposing {config.pool_size} candidates by MD of the transferred model, then labelling "
               f"{config.test_frames} test structures")
    rounds: dict[str, list[Round]] = {strategy: [] for strategy in STRATEGIES}
    for strategy, round_ in compare_strategies(source, oracle, config, seed, transfer, lambda: job.stop_requested, show):
        rounds[strategy].append(round_)
        record_round(figure, strategy, round_)
        job.report(f"{strategy}: {round_.labels} labels, test force MAE {round_.force_mae_ev_per_a:.3f} eV/Å")
    return rounds


def selection_table(rounds: dict[str, list[Round]]) -> str:
    """HTML: test force MAE and mean disagreement per label count, active beside random."""
    counts = sorted({r.labels for runs in rounds.values() for r in runs})
    by_count = {strategy: {r.labels: r for r in runs} for strategy, runs in rounds.items()}

    def cell(strategy: str, labels: int) -> str:
        found = by_count.get(strategy, {}).get(labels)
        return "–" if found is None else f"{found.force_mae_ev_per_a:.3f} ({np.mean(found.disagreement_ev_per_a):.3f})"

    header = "".join(f"<th>{html.escape(s)}: force MAE (disagreement), eV/Å</th>" for s in rounds)
    body = "".join(f"<tr><td>{n}</td>{''.join(f'<td>{cell(s, n)}</td>' for s in rounds)}</tr>" for n in counts)
    return f"<table><tr><th>labels</th>{header}</tr>{body}</table>"
