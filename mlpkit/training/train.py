"""Training: Adam with warm-up and exponential decay, EMA weights, early stopping, ensembles by vmap.

An ensemble of K members trains as one compiled program: parameters, optimiser state and EMA
weights carry a leading axis K and the update step is ``jax.vmap``-ed over it. Members differ only
in their initialisation seed; all see the same batches (in an order set by ``data_seed``), so member
k of an ensemble reproduces a run with ``seeds=(k,)`` alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mlpkit.checkpoint import Checkpoint, save_checkpoint
from mlpkit.data.dataset import ATOM_FIELDS, FRAME_FIELDS, Dataset
from mlpkit.data.outliers import describe, outlier_report
from mlpkit.errors import MlpkitError, TrainingError
from mlpkit.models import BLOCKS, ModelConfig, init_params, parameter_blocks, params_mismatch
from mlpkit.members import over_members
from mlpkit.models.energy import Normalisation, cast_params, fit_normalisation, neighbor_cutoff_a, normalised_energy_fn
from mlpkit.models.graph import ElementTable
from mlpkit.training.batches import BatchPlan
from mlpkit.training.evaluate import member_metrics, member_sums_program
from mlpkit.training.loss import LossWeights, batch_loss, predict_batch, weighted_validation_loss
from mlpkit.training.memory import available_memory_bytes, check_step_memory
from mlpkit.training.resume import (
    TrainingState, fingerprint, load_resume_state, remove_resume_state, resume_path, save_resume_state,
)

MONITOR = "force_mae_ev_per_a"  # validation metric for early stopping and the best checkpoint
# a loss (eV², per atom and per component) no real data set reaches: 1e3 eV/Å force errors, or cells in other units
LOSS_LIMIT = 1e6
OPTIMISERS = {"adam": optax.scale_by_adam, "amsgrad": optax.scale_by_amsgrad}
SCHEDULES = ("decay", "plateau")
RECIPE_FIELDS = ("optimiser", "weight_decay", "schedule", "plateau_factor", "plateau_patience_epochs", "late_learning_rate")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. ``quick()`` is the preset for tests and CPU tutorials."""

    model: ModelConfig = ModelConfig()
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    batch_size: int = 8
    max_epochs: int = 300
    learning_rate: float = 2e-3
    warmup_epochs: int = 5
    final_learning_rate: float = 2e-5
    gradient_clip: float = 10.0
    weights: LossWeights = LossWeights()
    ema_decay: float = 0.99
    patience_epochs: int = 50
    frozen_blocks: tuple[str, ...] = ()  # subset of mlpkit.models.BLOCKS kept fixed (fine-tuning)
    float64: bool = False
    # a late stage with other loss weights (MACE's recipe: energies weighted up once the forces are learnt); it
    # takes the last ``late_fraction`` of max_epochs, and the best state is chosen within it
    late_weights: LossWeights | None = None
    late_fraction: float = 0.2
    # MACE's training recipe, each part off until measured (benchmarks/accuracy.py): AMSGrad instead of Adam; an L2
    # weight decay added to the gradients; a rate held constant after the warm-up and multiplied by plateau_factor
    # whenever the validation score has not improved for more than plateau_patience_epochs; a late stage at a
    # constant rate of its own (None: the schedule goes on through it)
    optimiser: str = "adam"  # "adam" or "amsgrad"
    weight_decay: float = 0.0
    schedule: str = "decay"  # "decay": exponential from learning_rate to final_learning_rate; "plateau"
    plateau_factor: float = 0.8
    plateau_patience_epochs: int = 10
    late_learning_rate: float | None = None

    def __post_init__(self):
        problems = [name for name, bad in (
            ("seeds", not self.seeds), ("batch_size", self.batch_size < 1), ("max_epochs", self.max_epochs < 1),
            ("patience_epochs", self.patience_epochs < 1), ("warmup_epochs", self.warmup_epochs < 0),
            ("learning_rate", not 0 < self.learning_rate < math.inf),
            ("final_learning_rate", not 0 < self.final_learning_rate < math.inf),
            ("gradient_clip", not 0 < self.gradient_clip < math.inf), ("ema_decay", not 0 <= self.ema_decay < 1),
            ("late_fraction", not 0 < self.late_fraction < 1), ("optimiser", self.optimiser not in OPTIMISERS),
            ("weight_decay", not 0 <= self.weight_decay < math.inf), ("schedule", self.schedule not in SCHEDULES),
            ("plateau_factor", not 0 < self.plateau_factor < 1), ("plateau_patience_epochs", self.plateau_patience_epochs < 1),
            ("late_learning_rate", self.late_learning_rate is not None and not 0 < self.late_learning_rate < math.inf),
        ) if bad]
        if problems:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in problems)
            raise MlpkitError(f"invalid training settings: {values} (sizes and epochs ≥ 1, rates finite and > 0, "
                              f"0 ≤ ema_decay < 1, 0 < late_fraction < 1, 0 < plateau_factor < 1, weight_decay ≥ 0, "
                              f"optimiser one of {list(OPTIMISERS)}, schedule one of {list(SCHEDULES)})")
        unknown = sorted(set(self.frozen_blocks) - set(BLOCKS))
        if unknown:
            raise MlpkitError(f"unknown blocks to freeze {unknown}; choose from {list(BLOCKS)}")

    def quick(self) -> TrainConfig:
        return dataclasses.replace(self, model=self.model.quick(), max_epochs=40, warmup_epochs=2, patience_epochs=15)

    def mace_recipe(self) -> TrainConfig:
        """mace-torch's training recipe: AMSGrad at a constant 1e-2 reduced on plateaus, weight decay 5e-7, batch 4,
        energies : forces : virials weighted 1 : 100 : 1, and a last quarter at 1e-3 with energies weighted 1000.
        On mlearn Ge it gave 0.73× the test force error and 0.37× the energy error of the defaults in 0.84× the
        time (benchmarks/RESULTS.md, accuracy §10). ``mlpkit train`` uses it for MACE unless told otherwise; the
        defaults of this class stay as they were, so that committed results keep their keys."""
        return dataclasses.replace(
            self, optimiser="amsgrad", weight_decay=5e-7, schedule="plateau", learning_rate=1e-2, batch_size=4,
            weights=LossWeights(energy=1.0, forces=100.0, virial=1.0),
            late_weights=LossWeights(energy=1000.0, forces=100.0, virial=1.0), late_fraction=0.25, late_learning_rate=1e-3)

    def key_fields(self) -> dict:
        """The settings as a dict for keys and fingerprints: the recipe fields added after results were committed
        are left out while they hold their defaults (which reproduce the earlier training exactly), so those
        results keep their keys."""
        values, defaults = dataclasses.asdict(self), dataclasses.asdict(TrainConfig())
        values["model"] = self.model.to_dict()  # likewise for the model's later settings
        return {name: value for name, value in values.items() if name not in RECIPE_FIELDS or value != defaults[name]}

    @property
    def late_start_epoch(self) -> int | None:
        """The first epoch of the late stage (None: no late stage)."""
        if self.late_weights is None:
            return None
        return max(1, self.max_epochs - math.floor(self.late_fraction * self.max_epochs) + 1)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint  # best EMA weights of each member (lowest validation force MAE, or late-stage loss)
    history: list[dict]  # one dict of metrics per epoch
    best_epoch: np.ndarray  # [K]
    wall_s: float


def _schedule(config: TrainConfig, steps_per_epoch: int):
    """The rate by optimiser step: a linear warm-up to ``learning_rate``, then an exponential decay to
    ``final_learning_rate`` at the last epoch, or with the plateau schedule the peak rate held (see
    :func:`epoch_rates` for its reductions)."""
    warmup = max(config.warmup_epochs * steps_per_epoch, 1)
    decay_steps = max((config.max_epochs - config.warmup_epochs) * steps_per_epoch, 1)
    after = (optax.constant_schedule(config.learning_rate) if config.schedule == "plateau" else
             optax.exponential_decay(config.learning_rate, decay_steps, config.final_learning_rate / config.learning_rate))
    return optax.join_schedules([optax.linear_schedule(config.learning_rate / 100, config.learning_rate, warmup), after], [warmup])


def plateau_reductions(scores, patience_epochs: int, threshold: float = 1e-4) -> int:
    """How often a rate held on plateaus has been reduced after epochs of validation ``scores`` (epoch 0's
    first): once whenever more than ``patience_epochs`` epochs in a row have not improved on the best by the
    relative ``threshold``, counting afresh after each reduction."""
    best, stale, reductions = math.inf, 0, 0
    for score in scores:
        if score < best * (1 - threshold):
            best, stale = score, 0
        else:
            stale += 1
            if stale > patience_epochs:
                reductions, stale = reductions + 1, 0
    return reductions


def epoch_rates(config: TrainConfig, schedule, epoch: int, history: list[dict]) -> Callable[[int], float]:
    """The rate of each optimiser step (by its count) within ``epoch``, the epochs before it being ``history``:
    the late stage's own rate, or the schedule's, reduced by ``plateau_factor`` per :func:`plateau_reductions`
    with the plateau schedule (counted once per epoch). A function of the history, so a resumed run takes the
    same steps."""
    if config.late_learning_rate is not None and config.late_weights is not None and epoch >= config.late_start_epoch:
        return lambda count: config.late_learning_rate
    factor = 1.0
    if config.schedule == "plateau":
        factor = config.plateau_factor ** plateau_reductions([m[MONITOR] for m in history], config.plateau_patience_epochs)
    return lambda count: float(schedule(count)) * factor


def _optimiser(config: TrainConfig):
    """Adam's (or AMSGrad's) direction after global-norm clipping, with ``weight_decay`` × parameters added to
    the gradient, on the trainable blocks; frozen blocks get zero updates.

    The step size is not part of it: the learning rate is an argument of the compiled step, so one
    program serves every schedule (every training-set size of a study).
    """
    decay = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay else []
    adam = optax.chain(optax.clip_by_global_norm(config.gradient_clip), *decay, OPTIMISERS[config.optimiser]())
    if not config.frozen_blocks:
        return adam

    def labels(params):
        return jax.tree_util.tree_map(lambda block: "frozen" if block in config.frozen_blocks else "train", parameter_blocks(params))

    return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, labels)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def training_programs(config: TrainConfig, table: ElementTable, weights: LossWeights | None = None):
    """(step, validation sums, optimiser): the jit-compiled, member-vmapped programs of ``config`` (with the
    loss ``weights``, default ``config.weights``).

    ``step(params, opt_state, ema, count, learning_rate, normalisation_arrays, batch)``. Cached on what
    shapes the program (model, table, loss weights, EMA, clipping, frozen blocks): the learning rate and
    the normalisation are arguments, so every run of a study with the same model reuses one compilation.
    """
    return _programs(config.model, table, weights or config.weights, config.ema_decay, config.gradient_clip, config.frozen_blocks,
                     config.optimiser, config.weight_decay)


@functools.lru_cache(maxsize=8)
def _programs(model: ModelConfig, table: ElementTable, weights: LossWeights, ema_decay: float, gradient_clip: float,
              frozen_blocks: tuple[str, ...], optimiser: str, weight_decay: float):
    config = TrainConfig(model=model, weights=weights, ema_decay=ema_decay, gradient_clip=gradient_clip, frozen_blocks=frozen_blocks,
                         optimiser=optimiser, weight_decay=weight_decay)
    energy_fn = normalised_energy_fn(model, table)
    optimiser = _optimiser(config)

    def loss(params, normalisation, batch):
        return batch_loss(predict_batch(lambda p, *args: energy_fn(p, normalisation, *args), params, batch), batch, weights)

    def step(params, opt_state, ema, count, learning_rate, normalisation, batch):
        value, grads = jax.value_and_grad(loss)(params, normalisation, batch)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: -learning_rate * u, updates))
        decay = jnp.minimum(ema_decay, (1.0 + count) / (10.0 + count))  # short memory at the start
        ema = jax.tree_util.tree_map(lambda e, p: e + (1 - decay) * (p - e), ema, params)  # exact where p = e
        return params, opt_state, ema, value

    return jax.jit(over_members(step, (0, 0, 0, None, None, None, None))), member_sums_program(model, table), optimiser


def update_best(best, best_score, best_epoch, candidate, scores, epoch: int, patience_epochs: int):
    """Per member, take ``candidate`` where its score beats the best and the member's patience lasts.

    A member whose last improvement is more than ``patience_epochs`` ago is frozen: it keeps its best
    even if a later epoch would score better, exactly as if it had stopped alone.
    Returns (best, best_score [K], best_epoch [K], improved [K]).
    """
    improved = (epoch - best_epoch <= patience_epochs) & (scores < best_score)
    best = jax.tree_util.tree_map(
        lambda b, c: np.where(improved.reshape((-1,) + (1,) * (np.ndim(b) - 1)), c, b), best, candidate
    )
    return best, np.where(improved, scores, best_score), np.where(improved, epoch, best_epoch), improved


def _checked_table(train_set: Dataset, validation_set: Dataset, table: ElementTable | None) -> ElementTable:
    if len(train_set) == 0 or len(validation_set) == 0:
        raise MlpkitError("training needs at least one training and one validation frame")
    table = table or ElementTable.from_species(train_set.species)
    table.check(train_set.species, "the training set")
    table.check(validation_set.species, "the validation set")
    return table


def _resumed(state: TrainingState, resume_file, run_fingerprint: str, callback) -> TrainingState:
    """The saved state of this run where ``resume_file`` holds one, else ``state``; its epochs replayed to ``callback``."""
    if resume_file is not None:
        state = load_resume_state(resume_file, state, run_fingerprint) or state
    for epoch, metrics in enumerate(state.history):
        if callback is not None:
            callback(epoch, metrics)
    return state


def train(
    train_set: Dataset,
    validation_set: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    table: ElementTable | None = None,
    initial_params=None,
    normalisation: Normalisation | None = None,
    callback: Callable[[int, dict], bool | None] | None = None,
    checkpoint_path=None,
    progress: bool = True,
    check_outliers: bool = True,
) -> TrainResult:
    """Train ``len(config.seeds)`` members on ``train_set``, keeping each one's best validation state.

    ``initial_params`` (a stacked tree, e.g. a Si checkpoint's) replaces random initialisation: that is
    transfer learning. ``callback(epoch, metrics)`` runs after every epoch (epoch 0 = before training);
    metrics hold the learning rate, the training loss and the validation metrics averaged over members.
    A callback that returns True stops training after that epoch; the best state so far is returned.
    With ``checkpoint_path`` the best state so far is saved there (atomically) whenever it improves, and
    the whole training state after every epoch beside it (see :mod:`mlpkit.training.resume`): a call
    with the same settings and data after an interruption resumes and gives the uninterrupted result.
    Resumed epochs are replayed to ``callback`` first. A NaN or infinite loss raises
    :class:`~mlpkit.errors.TrainingError` naming the epoch and the batch's frames. Suspicious frames
    (:func:`~mlpkit.data.outlier_report`) are warned about unless ``check_outliers`` is False, for labels of a
    trusted code whose totals lie outside the unit-slip window (a pseudopotential code's ~−100 eV/atom). With
    ``config.late_weights`` the epochs from ``config.late_start_epoch`` on train with those loss weights
    and the best state is the best of them (a run whose patience ends earlier stops without that stage).
    """
    start = time.perf_counter()
    table = _checked_table(train_set, validation_set, table)
    normalisation = normalisation or fit_normalisation(train_set, table)
    if check_outliers:
        _warn_about_outliers(train_set, validation_set, config.model.cutoff_a)
    dtype = np.float64 if config.float64 else np.float32
    with jax.enable_x64(config.float64):
        cutoff_a = neighbor_cutoff_a(config.model, normalisation)
        train_plan = BatchPlan(train_set, cutoff_a, config.batch_size, dtype)
        validation_plan = BatchPlan(validation_set, cutoff_a, config.batch_size, dtype)
        check_step_memory(config, train_plan, available_memory_bytes())
        params = _checked_params(config, len(table), initial_params, dtype)
        schedule = _schedule(config, len(train_plan))
        step_for, sums, optimiser = _epoch_programs(config, table, schedule, normalisation.arrays(dtype), dtype)
        state = _fresh_state(config, params, optimiser)
        resume_file = resume_path(checkpoint_path) if checkpoint_path is not None else None
        run_fingerprint = _run_fingerprint(config, table, normalisation, params, train_set, validation_set)
        state = _resumed(state, resume_file, run_fingerprint, callback)
        start -= state.elapsed_s

        def best_checkpoint(state: TrainingState) -> Checkpoint:
            return _best_checkpoint(state, config, table, normalisation, len(train_set), len(validation_set))

        bar = tqdm(total=config.max_epochs + 1, initial=state.epoch + 1, desc="training", unit="epoch", disable=not progress)
        stopped = False
        while not stopped and state.epoch < config.max_epochs and _patience_left(state, config.patience_epochs):
            if state.epoch + 1 == config.late_start_epoch:
                state = _entering_late_stage(state, config.late_start_epoch)
            state, improved = _epoch(state, *step_for(state.epoch + 1, state.history), sums, train_plan, validation_plan, config, start)
            if improved.any() and checkpoint_path is not None:
                save_checkpoint(best_checkpoint(state), checkpoint_path)
            metrics = state.history[-1]
            bar.update()
            bar.set_postfix(force_mae=f"{metrics[MONITOR]:.4f}", loss=f"{metrics['train_loss']:.3g}")
            stopped = callback is not None and callback(state.epoch, metrics) is True
            if resume_file is not None:
                save_resume_state(resume_file, state, run_fingerprint)
        bar.close()
    checkpoint = best_checkpoint(state)
    if checkpoint_path is not None:
        save_checkpoint(checkpoint, checkpoint_path)
        remove_resume_state(resume_file)
    return TrainResult(checkpoint, state.history, state.best_epoch, time.perf_counter() - start)


def _checked_params(config: TrainConfig, n_elements: int, initial_params, dtype):
    """The members' starting parameters: ``initial_params`` if given (checked against the model), else random."""
    if initial_params is None:
        initial_params = _stack([init_params(config.model, n_elements, seed) for seed in config.seeds])
    problem = params_mismatch(initial_params, config.model, n_elements)
    if problem:
        raise MlpkitError(f"the initial parameters do not fit {config.model} with {n_elements} element(s): {problem}")
    n_members = len(jax.tree_util.tree_leaves(initial_params)[0])
    if n_members != len(config.seeds):
        raise MlpkitError(f"initial parameters hold {n_members} members, config.seeds {len(config.seeds)}")
    return cast_params(initial_params, dtype)


def _epoch_programs(config: TrainConfig, table: ElementTable, schedule, arrays, dtype):
    """(step_for(epoch, history) -> (the optimiser step of that epoch, its rate by step count), validation sums,
    optimiser), bound to the learning rate (:func:`epoch_rates`) and the normalisation ``arrays``; the late
    stage's epochs get its loss weights."""
    step, member_sums, optimiser = training_programs(config, table)
    late = training_programs(config, table, config.late_weights)[0] if config.late_weights else None

    def step_for(epoch: int, history: list[dict]):
        program = late if late is not None and epoch >= config.late_start_epoch else step
        rate = epoch_rates(config, schedule, epoch, history)

        def run_step(params, opt_state, ema, count: int, batch):
            return program(params, opt_state, ema, jnp.asarray(count, dtype), jnp.asarray(rate(count), dtype), arrays, batch)
        return run_step, rate

    return step_for, (lambda params, batch: member_sums(params, arrays, batch)), optimiser


def _fresh_state(config: TrainConfig, params, optimiser) -> TrainingState:
    n_members = len(config.seeds)
    return TrainingState(
        epoch=-1, count=0, params=params, opt_state=jax.vmap(optimiser.init)(params), ema=params,
        best=jax.device_get(params), best_score=np.full(n_members, np.inf), best_force_mae=np.full(n_members, np.nan),
        best_epoch=np.zeros(n_members, int),
        rng_state=np.random.default_rng(config.data_seed).bit_generator.state, history=[], elapsed_s=0.0,
    )


def _entering_late_stage(state: TrainingState, first_epoch: int) -> TrainingState:
    """The late stage chooses its own best state, with fresh patience from its first epoch."""
    n_members = len(state.best_score)
    return dataclasses.replace(state, best_score=np.full(n_members, np.inf), best_epoch=np.full(n_members, first_epoch))


def _best_checkpoint(state: TrainingState, config: TrainConfig, table: ElementTable, normalisation: Normalisation,
                     training_frames: int, validation_frames: int) -> Checkpoint:
    metadata = {
        "train_config": dataclasses.asdict(config),
        "best_epoch": state.best_epoch.tolist(),
        "best_validation_force_mae_ev_per_a": state.best_force_mae.tolist(),
        "best_chosen_by": "late-stage weighted validation loss" if config.late_weights else MONITOR,
        "training_frames": training_frames,
        "validation_frames": validation_frames,
        "epochs_run": state.epoch,
    }
    return Checkpoint(config.model, table, normalisation, state.best, metadata)


def _warn_about_outliers(train_set: Dataset, validation_set: Dataset, cutoff_a: float) -> None:
    for name, dataset in (("training", train_set), ("validation", validation_set)):
        outliers = outlier_report(dataset, cutoff_a)
        if outliers:
            warnings.warn(f"the {name} set: {describe(outliers)}; training goes on (see mlpkit.data.outlier_report)", stacklevel=3)


def _patience_left(state: TrainingState, patience_epochs: int) -> bool:
    """True before the first epoch and while some member improved within its patience."""
    return state.epoch < 0 or bool((state.epoch - state.best_epoch < patience_epochs).any())


def _epoch(state: TrainingState, step, rate, sums, train_plan: BatchPlan, validation_plan: BatchPlan, config: TrainConfig,
           start: float) -> tuple[TrainingState, np.ndarray]:
    """One epoch (epoch 0: validation only): the next state and which members improved [K]."""
    epoch, count = state.epoch + 1, state.count
    params, opt_state, ema = state.params, state.opt_state, state.ema
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    losses, frames = [], []
    if epoch > 0:
        for indices, batch in train_plan.indexed_batches(rng):
            params, opt_state, ema, value = step(params, opt_state, ema, count, batch)
            losses.append(value)
            frames.append(indices)
            count += 1
        _check_finite(np.asarray(jax.device_get(losses)), frames, epoch)  # host stack: no compile per batch count
    members = member_metrics(sums, ema, validation_plan)
    force_mae = np.array([m[MONITOR] for m in members])
    if not np.isfinite(force_mae).all():
        raise TrainingError(f"the validation force MAE is {force_mae.tolist()} at epoch {epoch}: the parameters are no longer "
                            "finite; lower the learning rate or inspect the data (mlpkit.data.outlier_report)")
    best, best_score, best_epoch, improved = update_best(
        state.best, state.best_score, state.best_epoch, jax.device_get(ema), _scores(members, epoch, config), epoch,
        config.patience_epochs
    )
    best_force_mae = np.where(improved, force_mae, state.best_force_mae)
    metrics = _summary(epoch, members, losses, rate(count), time.perf_counter() - start)
    next_state = TrainingState(epoch, count, params, opt_state, ema, best, best_score, best_force_mae, best_epoch,
                               rng.bit_generator.state, state.history + [metrics], metrics["elapsed_s"])
    return next_state, improved


def _scores(members: list[dict], epoch: int, config: TrainConfig) -> np.ndarray:
    """What each member's best state is chosen by [K]: the validation force MAE, or within a late stage the
    stage's own weighted validation loss (it trades some force accuracy for energy accuracy)."""
    late = config.late_weights is not None and epoch >= config.late_start_epoch
    return np.array([weighted_validation_loss(m, config.late_weights) if late else m[MONITOR] for m in members])


def _check_finite(losses: np.ndarray, frames: list[np.ndarray], epoch: int) -> None:
    """Refuse a loss ``losses`` [batches, K] that is NaN, infinite or absurd, naming the first bad batch and its frames."""
    bad = np.flatnonzero(~(np.abs(losses) < LOSS_LIMIT).all(axis=1))  # NaN fails the comparison too
    if bad.size:
        first = int(bad[0])
        raise TrainingError(
            f"the training loss is {losses[first].tolist()} at epoch {epoch}, batch {first + 1} of {len(losses)} "
            f"(training frames {sorted(map(int, frames[first]))}); lower the learning rate or inspect those frames "
            "(mlpkit.data.outlier_report)"
        )


def _run_fingerprint(config, table, normalisation, params, train_set: Dataset, validation_set: Dataset) -> str:
    data = [getattr(d, name) for d in (train_set, validation_set) for name in FRAME_FIELDS + ATOM_FIELDS]
    return fingerprint(config.key_fields(), table.symbols, dataclasses.asdict(normalisation),
                       *jax.tree_util.tree_leaves(params), *data)


def _summary(epoch: int, members: list[dict], losses: list, learning_rate: float, elapsed_s: float) -> dict:
    summary = {key: float(np.mean([m[key] for m in members])) for key in members[0]}
    loss = float(np.mean(jax.device_get(losses))) if losses else float("nan")  # no jnp.stack: one compile per length
    return {"epoch": epoch, "train_loss": loss, "learning_rate": learning_rate, "elapsed_s": elapsed_s, **summary}

