"""The project's own files: pinned versions agree, the CLI answers, the quick start is two commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mlpkit import cli
from mlpkit.runtime import with_huge_pages

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)")


def pins(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())}


def test_constraints_environment_and_binder_pin_the_same_versions_within_the_ranges():
    locked = pins(REPO / "constraints.txt")
    assert pins(REPO / "environment.yml") == locked == pins(REPO / "binder" / "environment.yml")
    assert locked["nglview"].startswith("3.")  # nglview 4.x does not render in JupyterLab 4
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    tested = [Requirement(text) for text in project["dependencies"] + extras["notebooks"] + extras["test"]]
    for requirement in tested:
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{name} has no tested version in constraints.txt"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} is outside {requirement.specifier}"
    assert {r.name.lower().replace("_", "-") for r in tested} == set(locked)  # nothing locked that is not used


def test_every_runtime_dependency_is_imported_by_mlpkit():
    source = "\n".join(path.read_text() for path in (REPO / "mlpkit").rglob("*.py"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        module = {"jaxlib": "jax", "e3nn-jax": "e3nn_jax"}.get(requirement.name, requirement.name)
        assert re.search(rf"^\s*(import|from) {module}\b", source, flags=re.M), f"nothing in mlpkit imports {requirement.name}"


def test_the_wheel_carries_the_data_and_works_outside_the_checkout(tmp_path):
    # build the wheel, install it alone into a fresh environment (its dependencies seen from this one), and
    # train and load the shipped model from a folder that is not the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").glob("mlpkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"mlpkit/data/sw/Si/training.extxyz", "mlpkit/data/sw/README.md", "mlpkit/pretrained/README.md",
            "mlpkit/pretrained/si_painn_quick/model.npz"} <= names
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    site, = fresh.glob("lib/python*/site-packages")
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the fresh site-packages
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = lambda *args: subprocess.run(args, cwd=work, capture_output=True, text=True, check=True,
                                       env={**os.environ, "PYTHONPATH": ""})
    where, loaded = run(str(fresh / "bin" / "python"), "-c",
                        "import mlpkit.viz; print(mlpkit.__file__); print(mlpkit.viz.pretrained_si().table.symbols)").stdout.splitlines()
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's
    assert "Si" in loaded
    run(str(fresh / "bin" / "mlpkit"), "train", "--data", "sw:Si", "--model", "painn", "--features", "8", "--layers", "1",
        "--max-frames", "8", "--epochs", "1", "--out", "run", "--no-progress")
    assert (work / "run" / "model.npz").exists()


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
        [sys.executable, "-m", "mlpkit.cli", "data", "info", str(REPO / "mlpkit" / "data" / "sw" / element / "test.extxyz")],
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
