"""Errors that mlpkit raises on bad input, each naming where the problem is."""

from __future__ import annotations


class MlpkitError(Exception):
    """Base class of every error mlpkit raises on purpose."""


class DataError(MlpkitError, ValueError):
    """Bad input data, located by file, frame and field.

    Example: ``DataError("bad value", path="Si.xyz", frame=3, field="REF_forces")`` reads
    ``Si.xyz, frame 3, field 'REF_forces': bad value``.
    """

    def __init__(self, message: str, *, path=None, frame: int | None = None, field: str | None = None):
        self.path, self.frame, self.field, self.reason = path, frame, field, message
        where = [str(path)] if path is not None else []
        if frame is not None:
            where.append(f"frame {frame}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class TrainingError(MlpkitError):
    """Training cannot go on: for example a loss that became NaN or infinite."""
