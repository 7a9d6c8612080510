"""How a Ge model of the study starts, and which Ge frames it sees: a :class:`Recipe`, parsed in one place.

An initialisation name is ``<start>[-<selection>]``: ``scratch`` (random initialisation), ``transfer``
(from the Si source with the study's :class:`~mlpkit.transfer.TransferConfig`, lengths scaled by
a_Si / a_Ge by default) or ``transfer-plain`` (the paper's protocol: copy everything, train everything,
no scaling). A suffix chooses the Ge frames instead of a random subset (:mod:`mlpkit.selection`):
``-active``, the frames the Si ensemble disagrees on most; ``-diverse``, farthest-point sampling in the
transferred model's feature space, stratified over the pool's groups.
"""

from __future__ import annotations

import dataclasses

from mlpkit.errors import MlpkitError
from mlpkit.transfer import TransferConfig

SELECTIONS = ("random", "active", "diverse")  # "random": the nested random order of the pool; the others rank it
INITS = ("scratch", "transfer", "transfer-plain", "scratch-active", "transfer-active", "scratch-diverse", "transfer-diverse")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One initialisation: its name, the transfer protocol (None: from scratch) and the frame selection."""

    name: str
    transfer: TransferConfig | None = None
    selection: str = "random"

    @property
    def needs_source(self) -> bool:
        """True when the recipe reads the Si source: to transfer from it, or to rank frames by it."""
        return self.transfer is not None or self.selection != "random"


def parse_init(init: str, transfer: TransferConfig = TransferConfig(), data: str = "sw", rescale_lengths: bool = True) -> Recipe:
    """The recipe named ``init`` (see the module's docstring). ``transfer`` is the study's protocol for
    ``transfer``, length-scaled with the lattice constants of ``data`` when ``rescale_lengths``."""
    if init not in INITS:
        raise MlpkitError(f"unknown initialisation {init!r}: choose from {list(INITS)}")
    start, selection = _start_and_selection(init)
    if start == "scratch":
        return Recipe(init, None, selection)
    if start == "transfer-plain":
        return Recipe(init, TransferConfig.plain(), selection)
    return Recipe(init, transfer.with_length_scaling(data) if rescale_lengths else transfer, selection)


def _start_and_selection(init: str) -> tuple[str, str]:
    for selection in SELECTIONS[1:]:
        if init.endswith(f"-{selection}"):
            return init.removesuffix(f"-{selection}"), selection
    return init, "random"
