"""Smoke run of the benchmark scripts, so they never rot (the real numbers are taken by hand).

Each script runs in its own process, mostly on one core; the selected tests' scripts start together, two at a
time, the longest first, and each test reads its own script's output."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# script → its arguments, "OUT" standing for a fresh folder; the longest first (seconds on 2 cores: 56, 35, 30, 29, 22)
SMOKES = {
    "models.py": ["--smoke"], "md.py": ["--smoke"], "huge_pages.py": ["--smoke"], "pareto.py": ["--smoke", "--out", "OUT"],
    "accuracy.py": ["--smoke", "--out", "OUT"], "active_learning.py": ["--smoke"], "oracle_cost.py": ["--smoke"],
    "sw_energy_forces.py": ["--smoke"], "peer_mace.py": ["--smoke", "--out", "OUT"], "install_size.py": [],
}
RUNS_TWICE = {"accuracy.py"}  # run again on its own output, to check it reads its results back


@dataclasses.dataclass(frozen=True)
class Smoke:
    runs: list[subprocess.CompletedProcess]  # in order
    out: Path  # the folder "OUT" stood for


def _run_smoke(script: str, out: Path) -> Smoke:
    command = [sys.executable, str(BENCHMARKS / script), *(str(out) if arg == "OUT" else arg for arg in SMOKES[script])]
    runs = [subprocess.run(command, capture_output=True, text=True, cwd=BENCHMARKS) for _ in range(1 + (script in RUNS_TWICE))]
    return Smoke(runs, out)


@pytest.fixture(scope="module")
def started(request, tmp_path_factory):
    """script → the future of its :class:`Smoke`, for every script a selected test of this module marks."""
    marks = (item.get_closest_marker("benchmark") for item in request.session.items if item.path == request.path)
    wanted = {mark.args[0] for mark in marks if mark is not None}
    with ThreadPoolExecutor(2) as lanes:
        yield {script: lanes.submit(_run_smoke, script, tmp_path_factory.mktemp(Path(script).stem))
               for script in SMOKES if script in wanted}


@pytest.fixture
def smoke(request, started) -> Smoke:
    """The finished runs of the script named by the test's ``benchmark`` mark; a failed run fails with its stderr."""
    finished = started[request.node.get_closest_marker("benchmark").args[0]].result()
    for run in finished.runs:
        assert run.returncode == 0, run.stderr[-4000:]
    return finished


@pytest.mark.benchmark("sw_energy_forces.py")
def test_sw_benchmark_smoke_prints_a_table_with_agreeing_energies(smoke):
    (result,) = smoke.runs
    row = [line for line in result.stdout.splitlines() if line.startswith("| 64 |")]
    assert len(row) == 1, result.stdout
    relative_difference = float(row[0].strip("|").split("|")[-1])
    assert relative_difference < 1e-5


@pytest.mark.benchmark("models.py")
def test_model_benchmark_smoke_times_painn_and_both_maces_and_counts_their_flops(smoke):
    (result,) = smoke.runs
    rows = [line for line in result.stdout.splitlines() if line.startswith("| mlpkit")]
    assert len(rows) == 3, result.stdout
    for row in rows:
        cells = row.split("|")
        force_ms, per_atom_us, step_ms = float(cells[3].split()[0]), float(cells[4]), float(cells[6].split()[0])
        assert 0 < force_ms < step_ms and per_atom_us == pytest.approx(force_ms * 1e3 / 64, rel=0.01, abs=0.06)
    mace_mflop, symmetric_mflop = (float(row.split("|")[10]) for row in rows[1:])
    assert 100 < mace_mflop < 400, rows[1]  # quick MACE on 64 atoms: 312 MFLOP with a scalars-only last layer (433 before)
    assert symmetric_mflop < 0.5 * mace_mflop, rows[2]  # MACE's contraction: 101 MFLOP


@pytest.mark.benchmark("md.py")
def test_md_benchmark_smoke_times_every_potential_against_jax_md(smoke):
    (result,) = smoke.runs
    rows = {line.split("|")[1].strip(): line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"jax-md SW", "mlpkit SW", "mlpkit PaiNN"} <= set(rows), result.stdout
    for name in ("mlpkit SW", "mlpkit PaiNN"):
        rate, memory_mib = float(rows[name][3].split()[0].replace(",", "")), float(rows[name][7])
        assert rate > 0 and memory_mib > 0


@pytest.mark.benchmark("pareto.py")
def test_pareto_benchmark_smoke_reads_each_epoch_and_writes_the_front(smoke):
    (result,), out = smoke.runs, smoke.out
    row = next(line for line in result.stdout.splitlines() if line.startswith("| PaiNN"))
    best, wall_min, test = row.split("|")[-4], row.split("|")[-3], float(row.split("|")[-2])
    assert 0 < float(best.split()[0]) < 5 and 0 < float(wall_min.split()[0]) and 0 < test < 5
    assert len(list(out.glob("*/run*/metrics.json"))) == 2  # two repeats of the one configuration
    assert "Pareto front" in (out / "pareto.html").read_text()


@pytest.mark.benchmark("accuracy.py")
def test_accuracy_benchmark_smoke_trains_two_variants_and_reads_them_back(smoke):
    first, again = smoke.runs
    rows = [line for line in first.stdout.splitlines() if line.startswith(("| baseline", "| forces-x10"))]
    assert len(rows) == 4  # each row as it is measured, then the table
    assert rows[-2].split("|")[3].strip() == "1.00"  # the baseline's ratio to itself
    assert 0 < float(rows[-1].split("|")[2]) < 5  # a force MAE in eV/Å
    assert len(list(smoke.out.glob("*/*/*.csv"))) == 2  # one history per variant
    assert again.stdout.splitlines()[-2:] == first.stdout.splitlines()[-2:]  # read back, not retrained


@pytest.mark.benchmark("peer_mace.py")
def test_peer_benchmark_smoke_writes_the_split_and_reads_mace_torch_logs(smoke):
    (run,) = smoke.runs
    report = json.loads(run.stdout.splitlines()[-1])
    frames = report["frames"]
    assert frames["train"] + frames["valid"] == 10 and frames["valid"] >= 2 and frames["test"] == 3  # 20 % per group
    assert report["test"] == {"energy_mae_mev_per_atom": 0.0, "force_mae_ev_per_a": 0.0}  # the truth against itself
    assert [(row["epoch"], row["elapsed_s"], row["val_force_mae_ev_per_a"]) for row in report["epochs"]] == [
        (0, 30.5, pytest.approx(0.85588)), (1, 90.5, pytest.approx(0.081))]


@pytest.mark.benchmark("huge_pages.py")
def test_huge_pages_benchmark_smoke_trains_under_both_allocator_settings(smoke):
    (result,) = smoke.runs
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| glibc") or line.startswith("| huge")]
    assert len(rows) == 2, result.stdout
    for row in rows:
        assert float(row[2].split()[0]) > 0 and float(row[6].split()[0]) > 0  # wall time, page faults


@pytest.mark.benchmark("install_size.py")
def test_install_size_benchmark_counts_the_runtime_closure_and_each_extra(smoke):
    (result,) = smoke.runs
    sizes = dict(re.findall(r"^(runtime[^:]*): \d+ distributions, (\d+) MiB$", result.stdout, flags=re.M))
    assert {"runtime", "runtime + notebooks", "runtime + test"} <= set(sizes)
    assert 0 < int(sizes["runtime"]) < int(sizes["runtime + test"])  # an extra only adds


@pytest.mark.benchmark("oracle_cost.py")
def test_oracle_cost_smoke_times_one_label_beside_its_estimate(smoke):
    (run,) = smoke.runs
    (row,) = [line for line in run.stdout.splitlines() if line.startswith("| 8 |")]
    seconds, estimate, net_force = (float(cell) for cell in row.split("|")[2:5])
    assert 0 < seconds < 300 and estimate > 0 and net_force < 1e-3  # eV/Å: converged forces


@pytest.mark.benchmark("active_learning.py")
def test_active_learning_benchmark_smoke_prints_both_curves_from_one_start(smoke):
    (result,) = smoke.runs
    rows = [line.split("|") for line in result.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(row[1]) for row in rows] == [0, 1], result.stdout  # one round of one label
    first_active, first_random = (float(cell.split("±")[0]) for cell in rows[0][2:4])
    assert first_active == first_random and float(rows[0][4]) == 1.0  # the same committee before any label
    assert all(0 < float(cell.split("±")[0]) < 3 for row in rows for cell in row[2:4])


def test_mace_product_benchmark_smoke_gives_the_dense_numbers_with_fewer_flops(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import mace_product

    mace_product.main(["--smoke"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| A")
            or line.startswith("| (A")]
    assert len(rows) == 2, rows
    for row in rows:
        dense_mflop, sparse_mflop, difference = float(row[7]), float(row[8]), float(row[10])
        assert sparse_mflop < 0.25 * dense_mflop and difference < 1e-5  # the same products, a fraction of the work
