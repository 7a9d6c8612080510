"""Functions over the leading ensemble axis of stacked parameters, shared by models, training and MD."""

from __future__ import annotations

import jax


def over_members(fn, in_axes: tuple):
    """``jax.vmap(fn, in_axes)`` over the ensemble axis; an ensemble of one is squeezed instead.

    XLA on CPU runs size-1 batched gathers several times slower than unbatched ones, and most models
    are single members, so K = 1 takes the plain path (same numbers, no vmap).
    """
    vmapped = jax.vmap(fn, in_axes=in_axes)

    def call(*args):
        mapped = [a for a, axis in zip(args, in_axes) if axis is not None]
        if jax.tree_util.tree_leaves(mapped)[0].shape[0] != 1:
            return vmapped(*args)
        squeezed = [a if axis is None else jax.tree_util.tree_map(lambda leaf: leaf[0], a) for a, axis in zip(args, in_axes)]
        return jax.tree_util.tree_map(lambda leaf: leaf[None], fn(*squeezed))

    return call
