#!/usr/bin/env bash
# mlpkit's entry points; each creates (or reuses) the virtual environment in .venv from pyproject.toml.
#   bash tasks.sh lab     set up, then start JupyterLab on notebooks/
#   bash tasks.sh test    set up, then run the whole test suite, notebooks in quick mode (what CI runs)
#   bash tasks.sh setup   only set up
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=$(command -v python3.11 || command -v python3)

setup() {
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --editable ".[test]"
        touch "$stamp"
    fi
}

# glibc: transparent huge pages for XLA's large per-call buffers (see mlpkit/runtime.py); kept if already set
case "${GLIBC_TUNABLES:-}" in
    *glibc.malloc.hugetlb*) ;;
    *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac

case "${1:-}" in
    setup) setup ;;
    lab) setup; exec "$VENV/bin/jupyter" lab --notebook-dir=notebooks ;;
    test) setup; MLPKIT_QUICK=1 exec "$VENV/bin/python" -m pytest ;;
    *) echo "usage: bash tasks.sh {lab|test|setup}" >&2; exit 2 ;;
esac
