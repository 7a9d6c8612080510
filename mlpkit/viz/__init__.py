"""Interactive pieces of the tutorials: Run/Stop panels, live plotly figures, an nglview structure view.

The logic lives in plain functions and classes (``Job``, the ``record_*`` figure updates,
``colour_bins``) so that it is tested without a browser or kernel; the notebooks
only put them together.
"""

from mlpkit.viz.active_runs import compare_selection, selection_table
from mlpkit.viz.figures import (LiveFigure, active_learning_figure, add_parity, learning_curves_figure, md_figure, parity_figure, record_epoch,
                                record_md_frame, record_round, set_learning_curves, set_stability_map, stability_map_figure, start_run, training_figure)
from mlpkit.viz.jobs import Job
from mlpkit.viz.md_runs import compare_md, force_error_per_atom
from mlpkit.viz.panel import RunPanel
from mlpkit.viz.settings import PRETRAINED_SI, TutorialConfig, mode_line, pretrained_si, quick_mode, tutorial_config
from mlpkit.viz.structure import StructureView, colour_bins
from mlpkit.viz.training_runs import (DEFAULT_TRANSFER, SELECTION_OPTIONS, TRANSFER_OPTIONS, compare_inits, epoch_callback,
                                      force_predictions, learning_curve, recipes, rows_on_test_set, with_selection)

__all__ = [
    "DEFAULT_TRANSFER", "Job", "LiveFigure", "PRETRAINED_SI", "RunPanel", "SELECTION_OPTIONS", "StructureView", "TRANSFER_OPTIONS", "TutorialConfig", "active_learning_figure", "add_parity", "colour_bins",
    "compare_inits", "compare_md", "compare_selection", "epoch_callback", "force_error_per_atom", "force_predictions",
    "learning_curve", "learning_curves_figure", "md_figure", "mode_line", "parity_figure", "pretrained_si", "quick_mode", "record_epoch",
    "recipes", "record_md_frame", "record_round", "selection_table", "rows_on_test_set", "set_learning_curves", "set_stability_map", "stability_map_figure",
    "start_run", "tutorial_config", "training_figure", "with_selection",
]
