"""jax-md's NequIP as a reference peer for mlpkit's benchmarks.

``nequip_small`` builds jax-md's own NequIP (``jax_md.energy.nequip_neighbor_list``) in a "small" setting:
jax-md's default config with 3 interaction layers, one species and the default hidden irreps scaled by 3/8
(``48x0e + 24x1e + 4x2e``, about 119k parameters), on a periodic orthorhombic cell. ``models.py`` times it.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from ase.neighborlist import neighbor_list
from jax_md import energy, space
from jax_md._nn import nequip

warnings.filterwarnings("ignore", message="Explicitly requested dtype")  # jax-md asks for float64 under float32


def nequip_small(atoms, cutoff_a: float = 5.0, skin_a: float = 0.0):
    """Return ``(energy_fn, params, neighbor, neighbor_fn)`` for jax-md's NequIP, 3 layers, ~119k parameters, on ``atoms``.

    ``energy_fn(params, positions_a, neighbor)`` is the float32 scalar energy; ``positions_a`` are Cartesian
    positions in Å, shape (n_atoms, 3), wrapped or not (minimum-image displacements). It is jit-able and
    differentiable w.r.t. positions and params. The cell must be orthorhombic with every side longer than
    ``2 * (cutoff_a + skin_a)``; all atoms are treated as one species. ``neighbor`` is allocated here for the positions
    of ``atoms``. With ``skin_a == 0`` it has no spare capacity (no padded edges) and is meant to be reused as
    is; with a skin it is MD's list: ``neighbor.update(positions)`` keeps it valid until an atom moves
    ``skin_a / 2`` (25 % spare capacity, the overflow flag tells when that was not enough).
    """
    cell = np.asarray(atoms.cell.array)
    box = np.diag(cell)
    if not (np.allclose(cell, np.diag(box)) and all(atoms.pbc) and box.min() > 2 * (cutoff_a + skin_a)):
        raise ValueError("needs a fully periodic orthorhombic cell with sides longer than twice the cutoff plus skin")
    cfg = nequip.default_config()
    cfg.graph_net_steps = 3
    cfg.n_elements = 1
    cfg.hidden_irreps = "48x0e + 24x1e + 4x2e"
    cfg.r_max = cutoff_a
    cfg.n_neighbors = len(neighbor_list("i", atoms, cutoff_a)) / len(atoms)
    cfg.shift, cfg.scale = 0.0, 1.0
    displacement, _ = space.periodic(jnp.asarray(box, jnp.float32))
    species = jnp.ones((len(atoms), 1), jnp.float32)
    neighbor_fn, init_fn, energy_fn = energy.nequip_neighbor_list(
        displacement, box, cfg, atoms=species, capacity_multiplier=1.25 if skin_a else 1.0, dr_threshold=skin_a
    )
    positions = jnp.asarray(atoms.positions, jnp.float32)
    neighbor = neighbor_fn.allocate(positions)
    params = init_fn(jax.random.PRNGKey(0), positions, neighbor)
    return energy_fn, params, neighbor, neighbor_fn

