"""Active learning of a transferred potential with a first-principles oracle.

The loop of :func:`active_learning`: a Si model remapped to Ge (:func:`mlpkit.transfer.transferred`) proposes
candidate structures by short MD at chosen temperatures and strains (:func:`propose`); a committee of members
that start from the transferred weights, each slightly perturbed (:func:`mlpkit.transfer.member_starts`), ranks
the candidates by how much its members disagree on the forces; the next batch is the most disputed candidates
that are also unlike each other and unlike what is labelled already
(:func:`mlpkit.selection.disputed_and_diverse`); the oracle (:class:`mlpkit.oracle.DFTOracle`) labels them; the
committee is fine-tuned from the transferred start on every label so far; repeat. ``strategy="random"`` takes
the same number of candidates at random instead, the baseline that active selection has to beat.

The transfer here crosses two gaps at once: from Si to Ge, and from the source's level of theory (PBE or
Stillinger–Weber) to the oracle's (LDA in a minimal basis). Forces transfer as they are; total energies do not:
each code puts its zero elsewhere (pseudopotentials, basis, functional), so the per-atom reference energy E0 is
refitted from the oracle's first labels. Before any label the model's energies are on the source's scale, and
their error against the oracle means nothing: rounds without labels report it as NaN.

The candidates are proposed once, by the transferred model before any label, so that both strategies choose
from the same pool; the test set is drawn the same way from MD runs of other seeds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterator

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset, concatenate, from_frames, unlabelled
from mlpkit.errors import MlpkitError
from mlpkit.md.sampling import sample_configurations
from mlpkit.selection import disputed_and_diverse, force_disagreement, structure_descriptors
from mlpkit.training.evaluate import evaluate
from mlpkit.training.train import TrainConfig
from mlpkit.transfer import TransferConfig, fine_tune, member_starts, transferred

STRATEGIES = ("active", "random")
# the committee's weight average follows the last ~10 optimiser steps: a fine-tune of a few hundred steps on a
# handful of labels would otherwise keep much of the untrained start in its average (0.99 remembers ~100 steps)
EMA_DECAY = 0.9
GE_LATTICE_A = 5.658  # the measured diamond lattice constant of Ge at room temperature; the strains are about it


@dataclasses.dataclass(frozen=True)
class ActiveConfig:
    """What one active-learning run does. Candidates: ``snapshots`` MD snapshots of the cubic 8-atom Ge cell
    repeated ``cell_repeats`` times per (temperature, linear strain) condition, ``interval_fs`` apart after
    ``equilibration_fs``. Each round labels ``labels_per_round`` of them; the committee of ``members`` is
    fine-tuned for ``steps`` optimiser steps (batches of up to 4 frames) from starts spread by ``member_spread``.
    ``test_frames`` candidates of other MD seeds, labelled once, measure the error. ``quick()``: the tutorial's
    small preset."""

    temperatures_k: tuple[float, ...] = (600.0, 1200.0)
    strains: tuple[float, ...] = (-0.02, 0.0, 0.02)
    snapshots: int = 6
    interval_fs: float = 40.0
    equilibration_fs: float = 200.0
    lattice_a: float = GE_LATTICE_A
    cell_repeats: tuple[int, int, int] = (1, 1, 1)
    labels_per_round: int = 2
    rounds: int = 10
    members: int = 3
    member_spread: float = 0.05
    steps: int = 200
    test_frames: int = 12

    def __post_init__(self):
        problems = [name for name, bad in (
            ("temperatures_k", not self.temperatures_k or not all(0 < t < math.inf for t in self.temperatures_k)),
            ("strains", not self.strains or not all(-0.2 < e < 0.2 for e in self.strains)),
            ("snapshots", self.snapshots < 1), ("interval_fs", not 0 < self.interval_fs < math.inf),
            ("equilibration_fs", not 0 <= self.equilibration_fs < math.inf), ("lattice_a", not 3 < self.lattice_a < 8),
            ("cell_repeats", len(self.cell_repeats) != 3 or min(self.cell_repeats) < 1),
            ("labels_per_round", self.labels_per_round < 1), ("rounds", self.rounds < 1), ("members", self.members < 2),
            ("member_spread", not 0 < self.member_spread < 1), ("steps", self.steps < 1), ("test_frames", self.test_frames < 1),
        ) if bad]
        if problems:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in problems)
            raise MlpkitError(f"invalid active-learning settings: {values} (temperatures > 0 K, |strain| < 0.2, "
                              f"3 Å < lattice_a < 8 Å, at least 2 members, 0 < member_spread < 1, counts ≥ 1)")
        if self.labels_per_round * self.rounds > self.pool_size:
            raise MlpkitError(f"{self.rounds} rounds of {self.labels_per_round} labels need {self.labels_per_round * self.rounds} "
                              f"candidates, and the pool holds {self.pool_size}: add snapshots or conditions")

    @property
    def conditions(self) -> list[tuple[float, float]]:
        """(temperature K, strain) of each MD run that proposes candidates."""
        return [(t, e) for t in self.temperatures_k for e in self.strains]

    @property
    def pool_size(self) -> int:
        return self.snapshots * len(self.conditions)

    def quick(self) -> ActiveConfig:
        return dataclasses.replace(self, temperatures_k=(900.0,), strains=(-0.03, 0.0, 0.03), snapshots=2, interval_fs=20.0,
                                   equilibration_fs=60.0, labels_per_round=1, rounds=2, members=2, steps=60, test_frames=2)


@dataclasses.dataclass(frozen=True)
class Round:
    """The committee after ``labels`` labels: its test errors (ensemble mean), its force disagreement on every
    candidate [P] (eV/Å), and the candidates labelled next (pool indices, with the oracle's wall time)."""

    labels: int
    force_mae_ev_per_a: float
    energy_mae_mev_per_atom: float  # NaN before any label: E0 is not known yet
    disagreement_ev_per_a: np.ndarray
    chosen: tuple[int, ...] = ()
    oracle_s: float = 0.0


def propose(potential, config: ActiveConfig, seed: int) -> list[Atoms]:
    """Candidate structures: MD snapshots of ``potential`` (Langevin) under each of ``config.conditions``, each
    run with its own seed derived from ``seed``; ``info`` holds the temperature and a group naming the condition."""
    candidates = []
    for index, (temperature_k, strain) in enumerate(config.conditions):
        cell = bulk("Ge", "diamond", a=config.lattice_a * (1.0 + strain), cubic=True).repeat(config.cell_repeats)
        for snapshot in sample_configurations(potential, cell, temperature_k, config.snapshots, seed=seed * 1000 + index,
                                              interval_fs=config.interval_fs, equilibration_fs=config.equilibration_fs,
                                              progress=False):
            snapshot.info["group"] = f"{temperature_k:.0f} K, strain {strain:+.0%}"
            candidates.append(snapshot)
    return candidates


Labelled = Callable[[Atoms, float], None]  # called with each structure the oracle has labelled and its wall time (s)


def label(oracle, structures: list[Atoms], on_labelled: Labelled | None = None) -> Dataset:
    """``structures`` labelled by ``oracle`` (an ASE calculator: energy and forces), as a Dataset. Each frame keeps
    its own labels: an ASE calculator holds only the results of the structure it saw last."""
    labelled = []
    for atoms in structures:
        atoms = atoms.copy()
        start = time.perf_counter()
        atoms.calc = oracle
        atoms.get_forces()
        labels = {name: np.array(value, dtype=float) for name, value in oracle.results.items()
                  if name in ("energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **labels)  # the stress too where the oracle gives one (SW does)
        if on_labelled is not None:
            on_labelled(atoms, time.perf_counter() - start)
        labelled.append(atoms)
    return from_frames(labelled)


def committee(source: Checkpoint, labelled: Dataset | None, config: ActiveConfig, transfer: TransferConfig, seed: int) -> Checkpoint:
    """The committee trained on ``labelled`` (fine-tuned from the transferred source, all frames also serving as
    the validation frames that choose the best state), or before any label the transferred starts themselves."""
    if labelled is None or len(labelled) == 0:
        start = transferred(source, transfer)
        return dataclasses.replace(start, params=member_starts(start.params, range(config.members), config.member_spread, seed))
    batch_size = min(4, len(labelled))
    epochs = math.ceil(config.steps / math.ceil(len(labelled) / batch_size))
    train_config = TrainConfig(model=source.config, seeds=tuple(range(config.members)), data_seed=seed, batch_size=batch_size,
                               max_epochs=epochs, warmup_epochs=min(2, epochs - 1), patience_epochs=epochs,
                               ema_decay=EMA_DECAY)
    # the oracle's totals count valence electrons over pseudopotentials (about −106 eV/atom for Ge), outside the
    # window that flags unit slips in data files: these labels come from a code, not a file, so no warning
    return fine_tune(source, labelled, labelled, train_config, transfer, spread=config.member_spread, progress=False,
                     check_outliers=False).checkpoint


def labelled_test_set(potential, oracle, config: ActiveConfig, seed: int, on_labelled: Labelled | None = None) -> Dataset:
    """``config.test_frames`` candidates drawn at random from MD runs of seed ``10_000 + seed``, labelled."""
    candidates = propose(potential, config, 10_000 + seed)
    chosen = np.random.default_rng(seed).choice(len(candidates), size=min(config.test_frames, len(candidates)), replace=False)
    return label(oracle, [candidates[i] for i in sorted(chosen)], on_labelled)


def active_learning(
    source: Checkpoint,
    oracle,
    candidates: list[Atoms],
    test: Dataset,
    config: ActiveConfig = ActiveConfig(),
    strategy: str = "active",
    seed: int = 0,
    transfer: TransferConfig = TransferConfig().with_length_scaling("mlearn"),
    stop: Callable[[], bool] = lambda: False,
    on_labelled: Labelled | None = None,
) -> Iterator[Round]:
    """Yield a :class:`Round` for the committee before any label and after each round of labelling; ``stop()``
    is asked between rounds, ``on_labelled`` after each label. The last round's ``chosen`` is empty."""
    if strategy not in STRATEGIES:
        raise MlpkitError(f"unknown selection strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    pool = unlabelled(candidates)
    rng = np.random.default_rng(seed)
    taken: list[int] = []
    labelled: Dataset | None = None
    for round_index in range(config.rounds + 1):
        model = committee(source, labelled, config, transfer, seed)
        errors = evaluate(model, test)
        disagreement = force_disagreement(model, pool)
        energy_mae = errors["energy_mae_mev_per_atom"] if labelled is not None else math.nan
        if round_index == config.rounds or stop():
            yield Round(len(taken), errors["force_mae_ev_per_a"], energy_mae, disagreement)
            return
        chosen = _choose(model, pool, disagreement, taken, config.labels_per_round, strategy, rng)
        start = time.perf_counter()
        new = label(oracle, [candidates[i] for i in chosen], on_labelled)
        yield Round(len(taken), errors["force_mae_ev_per_a"], energy_mae, disagreement, tuple(chosen), time.perf_counter() - start)
        taken.extend(chosen)
        labelled = new if labelled is None else concatenate([labelled, new])


def compare_strategies(source: Checkpoint, oracle, config: ActiveConfig = ActiveConfig(), seed: int = 0,
                       transfer: TransferConfig = TransferConfig().with_length_scaling("mlearn"),
                       stop: Callable[[], bool] = lambda: False, on_labelled: Labelled | None = None) -> Iterator[tuple[str, Round]]:
    """Candidates proposed by the transferred ``source``, a test set labelled, then every strategy of
    :data:`STRATEGIES` from the same candidates, a round each in turn: yields (strategy, :class:`Round`)."""
    potential = transferred(source, transfer).potential()
    candidates = propose(potential, config, seed)
    test = labelled_test_set(potential, oracle, config, seed, on_labelled)
    loops = {strategy: active_learning(source, oracle, candidates, test, config, strategy, seed, transfer, stop, on_labelled)
             for strategy in STRATEGIES}
    while loops:
        for strategy, loop in list(loops.items()):
            round_ = next(loop, None)
            if round_ is None:
                del loops[strategy]
            else:
                yield strategy, round_


def _choose(model: Checkpoint, pool: Dataset, disagreement: np.ndarray, taken: list[int], n: int, strategy: str,
            rng: np.random.Generator) -> list[int]:
    free = np.setdiff1d(np.arange(len(pool)), taken)
    if strategy == "random":
        return [int(i) for i in rng.choice(free, size=n, replace=False)]
    descriptors = structure_descriptors(model, pool)
    picks = disputed_and_diverse(disagreement[free], descriptors[free], n, descriptors[taken] if taken else None)
    return [int(free[i]) for i in picks]
