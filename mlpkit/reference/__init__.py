"""Reference data made by the toolkit's own code: Stillinger–Weber-labelled data sets and MD snapshots.

This layer runs MD and the SW calculator to make data, so it sits above both and the data layer stays
pure reading and writing: :func:`generate_sw_dataset` / :func:`write_sw_dataset` (``mlpkit data generate``),
:func:`label`, :func:`sw_snapshots`.
"""

from mlpkit.reference.sw_data import (
    MLEARN_TEMPERATURES_K, PREMELT_K, SWDataSpec, generate_sw_dataset, label, sw_snapshots, write_sw_dataset,
)

__all__ = ["MLEARN_TEMPERATURES_K", "PREMELT_K", "SWDataSpec", "generate_sw_dataset", "label", "sw_snapshots", "write_sw_dataset"]
