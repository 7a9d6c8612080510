#!/usr/bin/env bash
# mlpkit's entry points; each creates (or reuses) the virtual environment in .venv: pyproject.toml's
# ranges with the notebook and test extras, at the exact versions of constraints.txt.
#   bash tasks.sh lab       set up, then start JupyterLab on notebooks/ with the quick settings (MLPKIT_QUICK=1)
#   bash tasks.sh lab-full  the same with the full tutorial settings (minutes per training on a laptop CPU)
#   bash tasks.sh test      set up, then run the whole test suite, notebooks in quick mode, a test file per core (what CI runs)
#   bash tasks.sh setup     only set up
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=$(command -v python3.11 || command -v python3)

setup() {
    local stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --constraint constraints.txt --editable ".[notebooks,test]"
        touch "$stamp"
    fi
}

# mlpkit.runtime: JupyterLab (hence its kernels) and the tests run with huge pages for XLA's buffers
HUGE_PAGES="$VENV/bin/python -m mlpkit.runtime"

case "${1:-}" in
    setup) setup ;;
    lab) setup; MLPKIT_QUICK=1 exec $HUGE_PAGES "$VENV/bin/jupyter" lab --notebook-dir=notebooks ;;
    lab-full) setup; exec $HUGE_PAGES "$VENV/bin/jupyter" lab --notebook-dir=notebooks ;;
    test) setup; MLPKIT_QUICK=1 exec $HUGE_PAGES "$VENV/bin/python" -m pytest --numprocesses auto --maxprocesses 4 --dist loadfile ;;
    *) echo "usage: bash tasks.sh {lab|lab-full|test|setup}" >&2; exit 2 ;;
esac
