"""Process settings that make XLA on CPU faster: transparent huge pages for the large buffers it allocates.

XLA on CPU allocates a program's temporary buffer afresh at every call (hundreds of MiB for one training
step). glibc's malloc serves such a request with a fresh ``mmap``, and the kernel then maps it in on first
touch, one 4 KiB page at a time, which costs a large share of the CPU time in the kernel. glibc's tunable
``glibc.malloc.hugetlb=1`` (glibc ≥ 2.35; elsewhere it is ignored) makes malloc ask for transparent huge
pages of 2 MiB on the memory it maps, so the same buffer costs up to 512 times fewer faults
(measured by ``benchmarks/huge_pages.py``; the numbers are in ``benchmarks/RESULTS.md``).

A tunable is read when the process starts, so it cannot be switched on from inside Python. The
``mlpkit`` command therefore re-executes itself once with it (:func:`mlpkit.cli.entry`), and
``python -m mlpkit.runtime PROGRAM [ARGS]`` runs any program with it: ``tasks.sh`` starts JupyterLab
(and so its kernels) and the tests that way, ``binder/start`` Binder's Jupyter. A ``GLIBC_TUNABLES``
that already names the tunable (``glibc.malloc.hugetlb=0`` to opt out) is left as it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import NoReturn

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"


def with_huge_pages(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` with ``glibc.malloc.hugetlb=1`` added to ``GLIBC_TUNABLES``, unless it already sets it."""
    tunables = environment.get("GLIBC_TUNABLES", "")
    if HUGE_PAGES_TUNABLE in tunables:
        return dict(environment)
    return {**environment, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, f"{HUGE_PAGES_TUNABLE}=1"]))}


def run_with_huge_pages(argv: list[str]) -> NoReturn:
    """Replace this process by ``argv`` (a program, looked up on PATH, and its arguments) with huge pages on."""
    os.execvpe(argv[0], argv, with_huge_pages(os.environ))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m mlpkit.runtime PROGRAM [ARGS...]")
    run_with_huge_pages(sys.argv[1:])
