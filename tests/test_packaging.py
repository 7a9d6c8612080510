"""The project's own files: pinned versions agree, the CLI answers, the quick start is two commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlpkit import cli
from mlpkit.runtime import with_huge_pages

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)")


def pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())}


def test_pyproject_environment_and_binder_pin_the_same_versions():
    runtime = pins(REPO / "pyproject.toml")
    assert {"jax", "flax", "ase", "nglview"} <= set(runtime)
    assert runtime["nglview"].startswith("3.")  # nglview 4.x does not render in JupyterLab 4
    assert pins(REPO / "environment.yml") == pins(REPO / "binder" / "environment.yml")
    conda = pins(REPO / "environment.yml")
    assert conda == {name: version for name, version in runtime.items() if name in conda}
    assert set(conda) >= set(runtime) - {"pytest", "nbval", "nbformat", "nbclient", "jupyter-client", "hypothesis", "playwright"}


def test_readme_quick_start_is_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(bash tasks\.sh \w+)\s*$", quick_start, flags=re.M)
    assert commands == ["bash tasks.sh lab", "bash tasks.sh test"]
    assert "exec bash tasks.sh test" in (REPO / ".ci" / "run").read_text()


def test_cli_help_and_clear_errors(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlpkit.cli", *args], capture_output=True, text=True)
    assert "data" in run("--help").stdout
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\nnot an extxyz comment\nSi 0 0 0\n")
    result = run("data", "info", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("mlpkit: error:") and "bad.xyz" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("element", ["Si", "Ge"])
def test_cli_data_info_summarises_the_shipped_set(element):
    result = subprocess.run(
        [sys.executable, "-m", "mlpkit.cli", "data", "info", str(REPO / "data" / "sw" / element / "test.extxyz")],
        capture_output=True, text=True, check=True,
    )
    assert f"elements ['{element}']" in result.stdout and "Elastic" in result.stdout


def test_huge_pages_are_added_to_the_glibc_tunables_unless_already_chosen():
    assert with_huge_pages({"HOME": "/x"}) == {"HOME": "/x", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == (
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
    assert with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}


def test_the_mlpkit_command_reexecutes_itself_once_with_huge_pages(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "argv", ["mlpkit", "md", "--help"])
    monkeypatch.setattr(os, "execvpe", lambda path, argv, env: calls.append((argv, env)))
    monkeypatch.setattr(cli, "main", lambda: "main ran")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    cli.entry()
    (argv, env), = calls
    assert argv[1:] == ["-m", "mlpkit", "md", "--help"] and env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    monkeypatch.setenv("GLIBC_TUNABLES", env["GLIBC_TUNABLES"])  # the re-executed process
    assert cli.entry() == "main ran" and len(calls) == 1


def test_the_runtime_module_runs_a_program_with_huge_pages():
    environment = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    result = subprocess.run(
        [sys.executable, "-m", "mlpkit.runtime", sys.executable, "-c", "import os; print(os.environ['GLIBC_TUNABLES'])"],
        env=environment, capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == "glibc.malloc.hugetlb=1"
