"""Message-passing models: one configuration, three architectures, one interface.

Every model maps ``(params, graph) -> [N] per-atom energies``; :mod:`mlpkit.models.energy` adds the
per-element shift and scale and turns it into a :class:`~mlpkit.potentials.Potential`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlpkit.errors import MlpkitError
from mlpkit.models.dimenet import DimeNetPP
from mlpkit.models.graph import ElementTable, Graph, build_graph
from mlpkit.models.painn import PaiNN

ARCHITECTURES = ("painn", "dimenet++", "mace")
PRODUCTS = ("dense", "symmetric")
# settings added after results were committed: left out of run keys and of a checkpoint's model record while they
# hold these values, which reproduce the earlier models exactly (ModelConfig.to_dict, TrainConfig.key_fields)
LATER_FIELDS = {"product": "dense"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and size. ``angular_basis``, ``triplet_features`` and ``basis_features`` are DimeNet++ only;
    ``average_neighbors``, ``radial_hidden`` and ``vector_messages`` are MACE only: its message sums are divided by
    the square root of the first (diamond within 5 Å has 28 neighbours), the second is the width of its per-edge
    radial network, and the third makes messages carry the neighbours' vectors as well as their scalars."""

    architecture: str = "mace"  # the most accurate per CPU-second (benchmarks/RESULTS.md)
    cutoff_a: float = 5.0
    features: int = 64
    layers: int = 3
    radial_basis: int = 8
    envelope_exponent: int = 6
    angular_basis: int = 7
    triplet_features: int = 32
    basis_features: int = 8
    average_neighbors: float = 28.0
    radial_hidden: int = 16  # the shipped MACE sources' width; 64 measures better (benchmarks/RESULTS.md)
    vector_messages: bool = False
    product: str = "dense"  # MACE's products: "dense" or "symmetric" (mlpkit.models.mace)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise MlpkitError(f"unknown architecture {self.architecture!r}; choose one of {sorted(ARCHITECTURES)}")
        if self.product not in PRODUCTS:
            raise MlpkitError(f"unknown product {self.product!r}; choose one of {list(PRODUCTS)}")
        if self.product != "dense" and self.architecture != "mace":
            raise MlpkitError(f"product={self.product!r} is a MACE setting; the {self.architecture} model has no products")
        sizes = {"features": (1, 4096), "layers": (1, 64), "radial_basis": (1, 256), "envelope_exponent": (1, 32),
                 "angular_basis": (1, 64), "triplet_features": (1, 4096), "basis_features": (1, 1024),
                 "radial_hidden": (1, 4096)}
        wrong = [f"{name}={getattr(self, name)!r} (allowed {low} … {high})" for name, (low, high) in sizes.items()
                 if not low <= getattr(self, name) <= high]
        if not 0 < self.cutoff_a <= 100:
            wrong.append(f"cutoff_a={self.cutoff_a!r} (allowed 0 … 100 Å)")
        if not 0 < self.average_neighbors < 1e6:
            wrong.append(f"average_neighbors={self.average_neighbors!r} (allowed 0 … 1e6)")
        if wrong:
            raise MlpkitError(f"model settings out of range: {', '.join(wrong)}")

    def quick(self) -> ModelConfig:
        """A small model of the same architecture, for tests and CPU tutorials."""
        return dataclasses.replace(self, features=32, layers=2, triplet_features=16)

    def to_dict(self) -> dict:
        """The settings, less those of :data:`LATER_FIELDS` at their earlier values (keys and files stay as they were)."""
        return {name: value for name, value in dataclasses.asdict(self).items()
                if name not in LATER_FIELDS or value != LATER_FIELDS[name]}


def build_model(config: ModelConfig, n_elements: int):
    """The Flax module of ``config`` for a table of ``n_elements`` elements."""
    common = dict(
        n_elements=n_elements, cutoff_a=config.cutoff_a, features=config.features, layers=config.layers,
        radial_basis=config.radial_basis, envelope_exponent=config.envelope_exponent,
    )
    if config.architecture == "dimenet++":
        common.update(
            angular_basis=config.angular_basis, triplet_features=config.triplet_features,
            basis_features=config.basis_features,
        )
    if config.architecture == "mace":
        common.update(average_neighbors=config.average_neighbors, radial_hidden=config.radial_hidden,
                      vector_messages=config.vector_messages, product=config.product)
    return _module_class(config.architecture)(**common)


def _module_class(architecture: str):
    if architecture == "mace":  # imported where one is built: e3nn-jax takes a third of mlpkit's import time
        from mlpkit.models.mace import MACE

        return MACE
    return {"painn": PaiNN, "dimenet++": DimeNetPP}[architecture]


def _placeholder_graph() -> Graph:
    """A one-atom graph with one masked edge: parameter shapes do not depend on N or M."""
    return Graph(
        vectors_a=jnp.zeros((1, 1, 3)), distances_a=jnp.ones((1, 1)), edge_mask=jnp.zeros((1, 1), bool),
        neighbor_index=jnp.zeros((1, 1), jnp.int32), slot=jnp.zeros(1, jnp.int32), atom_mask=jnp.ones(1, bool),
    )


def init_params(config: ModelConfig, n_elements: int, seed: int):
    """Fresh float32 parameters of ``config`` from ``seed``."""
    return build_model(config, n_elements).init(jax.random.PRNGKey(seed), _placeholder_graph())


BLOCKS = ("embedding", "interactions", "readout")  # what transfer learning can freeze


def parameter_blocks(params):
    """The tree of ``params`` with each leaf replaced by its block: "embedding", "interactions" or "readout".

    Modules are named by role in every architecture (``embedding*``, ``message_k``/``update_k`` or
    ``interaction_k``, ``readout*``); works on single and stacked (ensemble) trees alike.
    """

    def block(path, _leaf):
        name = path[1].key  # path: ("params", module, ...)
        if name.startswith("embedding"):
            return "embedding"
        return "readout" if name.startswith("readout") else "interactions"

    return jax.tree_util.tree_map_with_path(block, params)


@functools.lru_cache(maxsize=16)
def parameter_shapes(config: ModelConfig, n_elements: int) -> dict:
    """Shape and dtype of each parameter of ``config``'s model by its "params/module/.../name", without computing
    any: jax.eval_shape traces the initialisation only (running it op by op compiles every operation of a MACE
    model on its own, about 20 s on a laptop core, for each checkpoint loaded)."""
    from flax import traverse_util

    return traverse_util.flatten_dict(jax.eval_shape(lambda: init_params(config, n_elements, 0)), sep="/")


def current_layout(stacked_params, config: ModelConfig, n_elements: int):
    """``stacked_params`` in the layout of today's ``config`` model. A MACE checkpoint made while the last layer
    still computed vector features, which nothing read, holds the weights of those outputs: they are dropped
    (the energies are unchanged). Any other difference is left for :func:`params_mismatch` to report."""
    from flax import traverse_util

    if config.architecture != "mace":
        return stacked_params
    template = parameter_shapes(config, n_elements)
    stored = traverse_util.flatten_dict(dict(stacked_params), sep="/")
    last = f"params/interaction_{config.layers - 1}/"
    retired = {name for name in stored if name not in template and name.startswith(last)
               and name.split("/")[2] in ("product_mix", "self_connection") and name.endswith("x1o")}
    if not retired:
        return stacked_params
    return traverse_util.unflatten_dict({name: leaf for name, leaf in stored.items() if name not in retired}, sep="/")


def params_mismatch(stacked_params, config: ModelConfig, n_elements: int) -> str | None:
    """Why ``stacked_params`` (leading member axis) cannot be parameters of ``config``; None if they can."""
    from flax import traverse_util

    template = parameter_shapes(config, n_elements)
    stored = traverse_util.flatten_dict(dict(stacked_params), sep="/")
    if set(template) != set(stored):
        return f"parameter names differ (e.g. {sorted(set(template) ^ set(stored))[:3]})"
    wrong = [name for name in template if np.shape(stored[name])[1:] != template[name].shape]
    if wrong:
        return f"array shapes differ at {wrong[:3]}"
    if len({np.shape(leaf)[0] for leaf in stored.values()}) != 1:
        return "members disagree in number across arrays"
    return None


def parameter_count(params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


__all__ = [
    "ARCHITECTURES", "BLOCKS", "ModelConfig", "ElementTable", "Graph", "build_graph", "build_model", "current_layout",
    "init_params", "parameter_blocks", "parameter_count", "parameter_shapes", "params_mismatch",
]
