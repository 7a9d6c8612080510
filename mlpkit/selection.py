"""Which target configurations to label first: rankings of an unlabelled pool by the transferred model.

A model trained on Si, remapped to Ge (:func:`mlpkit.transfer.transferred`), sees every unlabelled Ge
configuration before any Ge label exists. Two rankings use it:

- *active* (:func:`force_disagreement`): where the members of a source ensemble disagree most, the
  transferred model knows least. It tends to pick only the hottest, most distorted frames.
- *diverse* (:func:`structure_descriptors`, :func:`farthest_point_order`): each frame is described by the
  mean and spread over its atoms of the model's own per-atom invariant features, and frames are taken
  greedily farthest from those already taken, so that N frames cover the pool's kinds of environment
  in proportion to the groups the pool declares.

Ranking the pool once and taking its first N frames keeps the selections nested (N = 10 ⊂ N = 25), as
for random subsets. benchmarks/RESULTS.md compares both with random selection.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.checkpoint import Checkpoint
from mlpkit.data.dataset import Dataset
from mlpkit.errors import MlpkitError
from mlpkit.models import ModelConfig
from mlpkit.models.energy import atom_features_fn, cast_params
from mlpkit.models.graph import ElementTable
from mlpkit.training.evaluate import evaluation_plan, predict_members


def force_disagreement(checkpoint: Checkpoint, dataset: Dataset) -> np.ndarray:
    """[F] eV/Å: per frame, the mean over atoms of the members' force spread √(Σ_xyz Var_k F_i)."""
    if checkpoint.ensemble_size < 2:
        raise MlpkitError("active selection needs an ensemble of at least two members to measure disagreement")
    _, forces = predict_members(checkpoint, dataset)  # [K, ΣN, 3]
    spread = np.sqrt(np.sum(np.var(forces, axis=0), axis=-1))  # [ΣN]
    frame_of_atom = np.repeat(np.arange(len(dataset)), dataset.n_atoms)
    return np.bincount(frame_of_atom, weights=spread, minlength=len(dataset)) / dataset.n_atoms


def ranked_by_disagreement(disagreement: np.ndarray) -> np.ndarray:
    """Frame indices, most disputed first (ties keep their pool order): ``order[:n]`` are nested selections."""
    return np.argsort(-np.asarray(disagreement), kind="stable")


def disputed_and_diverse(disagreement: np.ndarray, descriptors: np.ndarray, n: int, labelled: np.ndarray | None = None) -> np.ndarray:
    """A batch of ``n`` pool indices chosen greedily by disagreement × distance to the nearest structure already
    chosen or labelled (``labelled``: [L, D] their descriptors), in descriptor space standardised over the pool.

    The most disputed frames of a pool often come in clusters (snapshots of one hot run); the distance factor
    makes each pick pay for resembling what the batch or the training set already holds, so a batch of five is
    not five copies of one environment. With nothing labelled, the first pick is the most disputed frame.
    """
    disagreement = np.asarray(disagreement, dtype=np.float64)
    if not 0 < n <= len(disagreement):
        raise MlpkitError(f"cannot choose {n} frames from a pool of {len(disagreement)}")
    pool = np.asarray(descriptors, dtype=np.float64)
    centre, scale = pool.mean(axis=0), np.where(pool.std(axis=0) > 0, pool.std(axis=0), 1.0)
    x = (pool - centre) / scale
    known = np.zeros((0, x.shape[1])) if labelled is None else (np.asarray(labelled, dtype=np.float64) - centre) / scale
    nearest = np.min(np.linalg.norm(x[:, None] - known[None], axis=-1), axis=1) if len(known) else np.ones(len(x))
    chosen = []
    for _ in range(n):
        score = np.where(np.isin(np.arange(len(x)), chosen), -np.inf, disagreement * nearest)
        pick = int(np.argmax(score))
        chosen.append(pick)
        gap = np.linalg.norm(x - x[pick], axis=1)
        nearest = gap if len(chosen) == 1 and not len(known) else np.minimum(nearest, gap)
    return np.array(chosen)



def structure_descriptors(checkpoint: Checkpoint, dataset: Dataset, batch_size: int = 8) -> np.ndarray:
    """[F, 2C]: per frame, the mean and the standard deviation over its atoms of the first member's per-atom
    invariant features (:func:`~mlpkit.models.energy.atom_features_fn`); one compiled program for the pool."""
    program = _descriptor_program(checkpoint.config, checkpoint.table)
    arrays = checkpoint.normalisation.arrays(np.float32)
    params = cast_params(jax.tree.map(lambda stacked: stacked[0], checkpoint.params), np.float32)
    descriptors = None
    for frames, batch in evaluation_plan(checkpoint, dataset, batch_size).indexed_batches():
        values = jax.device_get(program(params, arrays, batch))[:len(frames)]  # [B, 2C]
        descriptors = np.zeros((len(dataset), values.shape[1])) if descriptors is None else descriptors
        descriptors[frames] = values
    return descriptors


@functools.lru_cache(maxsize=8)
def _descriptor_program(config: ModelConfig, table: ElementTable):
    features = atom_features_fn(config, table)

    def describe(params, normalisation, positions_a, cell_a, species, neighbors):
        per_atom = features(params, normalisation, positions_a, cell_a, species, neighbors)  # [N, C]
        mask = (species > 0)[:, None]
        n_atoms = jnp.maximum(jnp.sum(mask), 1)
        mean = jnp.sum(per_atom, axis=0) / n_atoms
        spread = jnp.sqrt(jnp.sum(jnp.where(mask, (per_atom - mean) ** 2, 0.0), axis=0) / n_atoms)
        return jnp.concatenate([mean, spread])

    def batched(params, normalisation, batch):
        return jax.vmap(lambda *frame: describe(params, normalisation, *frame))(
            batch.positions_a, batch.cell_a, batch.species, batch.neighbors)

    return jax.jit(batched)


def farthest_point_order(descriptors: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """A ranking of the pool (frame indices, best first) by greedy farthest-point sampling.

    Descriptor columns are standardised; the first frame is the one farthest along a random direction
    drawn from ``seed``, and each next frame the one farthest (Euclidean) from every frame taken so far.
    With ``groups`` ([F] labels), each step first chooses the group furthest below its share of the pool,
    so that the first N frames hold the groups in proportion. Permuting the pool permutes the ranking
    (up to exact ties, which take the earlier frame); ``order[:n]`` are nested selections.
    """
    x = np.asarray(descriptors, dtype=np.float64)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    labels = np.zeros(len(x), dtype=int) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    totals = np.bincount(labels)
    remaining, share = totals.copy(), totals / len(x)
    taken = np.zeros(len(x), dtype=bool)
    squared = np.einsum("ij,ij->i", x, x)
    distance = x @ np.random.default_rng(seed).normal(size=x.shape[1])  # the first pick is the largest projection
    order = np.empty(len(x), dtype=int)
    for step in range(len(x)):
        deficit = np.where(remaining > 0, share * (step + 1) - (totals - remaining), -np.inf)
        pick = int(np.argmax(np.where(taken | (labels != np.argmax(deficit)), -np.inf, distance)))
        order[step], taken[pick] = pick, True
        remaining[labels[pick]] -= 1
        gap = np.sqrt(np.maximum(squared + squared[pick] - 2.0 * (x @ x[pick]), 0.0))  # |x_i − x_pick|, one matrix-vector product
        distance = gap if step == 0 else np.minimum(distance, gap)
    return order
