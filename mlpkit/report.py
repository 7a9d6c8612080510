"""The study's figures and report under their earlier module name; they live in :mod:`mlpkit.study.report`."""

from mlpkit.study.report import (
    breakdown_figure, breakdown_table, curve, efficiency_factor, learning_curve_figure, parity_figure, summary_table, write_report,
)

__all__ = ["breakdown_figure", "breakdown_table", "curve", "efficiency_factor", "learning_curve_figure", "parity_figure",
           "summary_table", "write_report"]
