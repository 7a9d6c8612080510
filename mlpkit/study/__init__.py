"""The learning-curve study: Ge models trained from scratch or transferred from Si, over training-set sizes.

One call (:func:`run_study`, behind ``mlpkit study``) trains the Si source model, then for every Ge
training-set size and every initialisation (a :class:`Recipe`) trains an ensemble (one member per seed,
vmapped) and evaluates each member on the Ge test set. The widgets of the tutorials train their cells
with the same :func:`train_cell` and report them in the same rows (:func:`result_rows`).

- :mod:`~mlpkit.study.config`: :class:`StudyConfig`, the data (:class:`StudyData`, :func:`load_study_data`);
- :mod:`~mlpkit.study.recipe`: initialisation names parsed into recipes;
- :mod:`~mlpkit.study.cache`: one folder per run, resumable and checked;
- :mod:`~mlpkit.study.cells`: the source model, the rankings of the Ge pool, one cell;
- :mod:`~mlpkit.study.run`: the sweep over processes and devices;
- :mod:`~mlpkit.study.results` and :mod:`~mlpkit.study.report`: rows, files, figures and ``report.html``.
"""

from mlpkit.study.cells import pool_order, recipe_of, train_cell
from mlpkit.study.config import QUICK_STUDY_EPOCHS, StudyConfig, StudyData, data_checksums, load_study_data
from mlpkit.study.recipe import INITS, Recipe, parse_init
from mlpkit.study.report import curve, efficiency_factor, learning_curve_figure, parity_figure, summary_table, write_report
from mlpkit.study.results import RESULT_COLUMNS, result_rows, write_results
from mlpkit.study.run import claim_order, run_study

__all__ = [
    "INITS", "QUICK_STUDY_EPOCHS", "RESULT_COLUMNS", "Recipe", "StudyConfig", "StudyData", "curve", "data_checksums",
    "efficiency_factor", "learning_curve_figure", "load_study_data", "parity_figure", "parse_init", "pool_order", "recipe_of",
    "result_rows", "run_study", "summary_table", "train_cell", "write_report", "write_results",
]
