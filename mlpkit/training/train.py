"""Training: Adam with warm-up and exponential decay, EMA weights, early stopping, ensembles by vmap.

An ensemble of K members trains as one compiled program: parameters, optimiser state and EMA
weights carry a leading axis K and the update step is ``jax.vmap``-ed over it. Members differ only
in their initialisation seed; all see the same batches (in an order set by ``data_seed``), so member
k of an ensemble reproduces a run with ``seeds=(k,)`` alone.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mlpkit.checkpoint import Checkpoint, save_checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.models import BLOCKS, ModelConfig, init_params, parameter_blocks, params_mismatch
from mlpkit.models.energy import Normalisation, cast_params, fit_normalisation, member_energy_fn, over_members
from mlpkit.models.graph import ElementTable
from mlpkit.training.batches import BatchPlan
from mlpkit.training.evaluate import member_metrics
from mlpkit.training.loss import LossWeights, batch_loss, error_sums, predict_batch

MONITOR = "force_mae_ev_per_a"  # validation metric for early stopping and the best checkpoint


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

    def __post_init__(self):
        if (not self.seeds or min(self.batch_size, self.max_epochs, self.patience_epochs) < 1
                or self.warmup_epochs < 0 or self.learning_rate <= 0 or not 0 <= self.ema_decay < 1):
            raise MlpkitError(f"invalid training settings: {self}")
        unknown = sorted(set(self.frozen_blocks) - set(BLOCKS))
        if unknown:
            raise MlpkitError(f"unknown blocks to freeze {unknown}; choose from {list(BLOCKS)}")

    def quick(self) -> TrainConfig:
        return dataclasses.replace(self, model=self.model.quick(), max_epochs=40, warmup_epochs=2, patience_epochs=15)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint  # best (lowest validation force MAE) EMA weights of each member
    history: list[dict]  # one dict of metrics per epoch
    best_epoch: np.ndarray  # [K]
    wall_s: float


def _schedule(config: TrainConfig, steps_per_epoch: int):
    warmup = max(config.warmup_epochs * steps_per_epoch, 1)
    decay_steps = max((config.max_epochs - config.warmup_epochs) * steps_per_epoch, 1)
    return optax.join_schedules(
        [
            optax.linear_schedule(config.learning_rate / 100, config.learning_rate, warmup),
            optax.exponential_decay(config.learning_rate, decay_steps, config.final_learning_rate / config.learning_rate),
        ],
        [warmup],
    )


def _optimizer(config: TrainConfig, schedule):
    """Adam after global-norm clipping on the trainable blocks; frozen blocks get zero updates."""
    adam = optax.chain(optax.clip_by_global_norm(config.gradient_clip), optax.adam(schedule))
    if not config.frozen_blocks:
        return adam

    def labels(params):
        return jax.tree_util.tree_map(lambda block: "frozen" if block in config.frozen_blocks else "train", parameter_blocks(params))

    return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, labels)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def training_programs(config: TrainConfig, energy_fn, optimizer):
    """The jit-compiled, member-vmapped training step and validation sums."""

    def loss(params, batch):
        return batch_loss(predict_batch(energy_fn, params, batch), batch, config.weights)

    def step(params, opt_state, ema, count, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        decay = jnp.minimum(config.ema_decay, (1.0 + count) / (10.0 + count))  # short memory at the start
        ema = jax.tree_util.tree_map(lambda e, p: e + (1 - decay) * (p - e), ema, params)  # exact where p = e
        return params, opt_state, ema, value

    def sums(params, batch):
        return error_sums(predict_batch(energy_fn, params, batch), batch)

    return jax.jit(over_members(step, (0, 0, 0, None, None))), jax.jit(over_members(sums, (0, None)))


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


def train(
    train_set: Dataset,
    validation_set: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    table: ElementTable | None = None,
    initial_params=None,
    normalisation: Normalisation | None = None,
    callback: Callable[[int, dict], None] | None = None,
    checkpoint_path=None,
    progress: bool = True,
) -> TrainResult:
    """Train ``len(config.seeds)`` members on ``train_set``, keeping each one's best validation state.

    ``initial_params`` (a stacked tree, e.g. a Si checkpoint's) replaces random initialisation: that is
    transfer learning. ``callback(epoch, metrics)`` runs after every epoch (epoch 0 = before training);
    metrics hold the learning rate, the training loss and the validation metrics averaged over members.
    With ``checkpoint_path`` the best state so far is saved there (atomically) whenever it improves, so
    an interrupted run keeps its best model.
    """
    start = time.perf_counter()
    if len(train_set) == 0 or len(validation_set) == 0:
        raise MlpkitError("training needs at least one training and one validation frame")
    table = table or ElementTable.from_species(train_set.species)
    table.check(train_set.species, "the training set")
    table.check(validation_set.species, "the validation set")
    normalisation = normalisation or fit_normalisation(train_set, table)
    dtype = np.float64 if config.float64 else np.float32
    with jax.enable_x64(config.float64):
        train_plan = BatchPlan(train_set, config.model.cutoff_a, config.batch_size, dtype)
        validation_plan = BatchPlan(validation_set, config.model.cutoff_a, config.batch_size, dtype)
        if initial_params is None:
            initial_params = _stack([init_params(config.model, len(table), seed) for seed in config.seeds])
        problem = params_mismatch(initial_params, config.model, len(table))
        if problem:
            raise MlpkitError(f"the initial parameters do not fit {config.model} with {len(table)} element(s): {problem}")
        params = cast_params(initial_params, dtype)
        n_members = len(jax.tree_util.tree_leaves(params)[0])
        if n_members != len(config.seeds):
            raise MlpkitError(f"initial parameters hold {n_members} members, config.seeds {len(config.seeds)}")
        schedule = _schedule(config, len(train_plan))
        optimizer = _optimizer(config, schedule)
        step, sums = training_programs(config, member_energy_fn(config.model, table, normalisation), optimizer)
        opt_state = jax.vmap(optimizer.init)(params)
        ema = params
        best = jax.device_get(params)
        best_score = np.full(n_members, np.inf)
        best_epoch = np.zeros(n_members, int)
        history: list[dict] = []
        rng = np.random.default_rng(config.data_seed)
        count = 0

        def best_checkpoint(epochs_run: int) -> Checkpoint:
            metadata = {
                "train_config": dataclasses.asdict(config),
                "best_epoch": best_epoch.tolist(),
                "best_validation_force_mae_ev_per_a": best_score.tolist(),
                "training_frames": len(train_set),
                "validation_frames": len(validation_set),
                "epochs_run": epochs_run,
            }
            return Checkpoint(config.model, table, normalisation, best, metadata)

        bar = tqdm(range(config.max_epochs + 1), desc="training", unit="epoch", disable=not progress)
        for epoch in bar:
            losses = []
            if epoch > 0:
                for batch in train_plan.batches(rng):
                    params, opt_state, ema, value = step(params, opt_state, ema, jnp.asarray(count, dtype), batch)
                    losses.append(value)
                    count += 1
            members = member_metrics(sums, ema, validation_plan)
            scores = np.array([m[MONITOR] for m in members])
            best, best_score, best_epoch, improved = update_best(
                best, best_score, best_epoch, jax.device_get(ema), scores, epoch, config.patience_epochs
            )
            if improved.any():
                if checkpoint_path is not None:
                    save_checkpoint(best_checkpoint(epoch), checkpoint_path)
            metrics = _summary(epoch, members, losses, float(schedule(count)), time.perf_counter() - start)
            history.append(metrics)
            bar.set_postfix(force_mae=f"{metrics[MONITOR]:.4f}", loss=f"{metrics['train_loss']:.3g}")
            if callback is not None:
                callback(epoch, metrics)
            if not (epoch - best_epoch < config.patience_epochs).any():
                break
        bar.close()
    checkpoint = best_checkpoint(epoch)
    if checkpoint_path is not None:
        save_checkpoint(checkpoint, checkpoint_path)
    return TrainResult(checkpoint, history, best_epoch, time.perf_counter() - start)


def _summary(epoch: int, members: list[dict], losses: list, learning_rate: float, elapsed_s: float) -> dict:
    summary = {key: float(np.mean([m[key] for m in members])) for key in members[0]}
    loss = float(np.mean(jax.device_get(jnp.stack(losses)))) if losses else float("nan")
    return {"epoch": epoch, "train_loss": loss, "learning_rate": learning_rate, "elapsed_s": elapsed_s, **summary}

