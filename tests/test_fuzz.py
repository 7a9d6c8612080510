"""Every reader, fed damaged or adversarial input, either returns valid data or raises mlpkit's own error
naming the file (and the frame and field where there is one): never a bare numpy/JSON/KeyError
traceback, a hang, NaN passed on, or a file written.

``MLPKIT_FUZZ_EXAMPLES`` sets the examples per reader (30 in the normal suite); the dedicated mode is
``MLPKIT_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlpkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mlpkit.data import load_npz, read_extxyz, read_mlearn, save_npz, validate
from mlpkit.reference import label
from mlpkit.errors import DataError, MlpkitError
from mlpkit.study import StudyConfig
from mlpkit.structures import diamond, rattled
from conftest import random_checkpoint

EXAMPLES = int(os.environ.get("MLPKIT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=60), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

GOOD_EXTXYZ = """2
Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-8.5 REF_stress="0.01 0 0 0 0.01 0 0 0 0.01" temperature_k=300 pbc="T T T"
Si 0.0 0.0 0.0 0.1 0.0 0.0
Si 1.3575 1.3575 1.3575 -0.1 0.0 0.0
"""
NASTY_TOKENS = ["nan", "NaN", "inf", "-inf", "1e308", "1e400", "-1", "0", "99999999999", "-99999999999", "", "Xx", "T",
                "F", "é☃\u202e", "\x00", '"', "=", "0x10", "1e-320", "Lattice=", "[[1]]", "𝟙"]
NASTY_JSON = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(-3, 3) | st.floats(), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([[[0, 0, 0]] * 3, [[1e9, 0, 0], [0, 1e9, 0], [0, 0, 1e9]], [[0.0] * 3] * 2]),
)


def small_dataset():
    return label([rattled(diamond("Si"), 0.05, 0), diamond("Si")], "Elastic")


def check_outcome(read, path: Path, error_type=DataError):
    """``read(path)`` gives valid data or an ``error_type`` naming the file; the folder is left as it was."""
    before = sorted(path.parent.iterdir())
    try:
        result = read(path)
    except error_type as error:
        assert path.name in str(error), f"the message does not name the file: {error}"
        result = None
    assert sorted(path.parent.iterdir()) == before, "a reader wrote a file"
    return result


def assert_valid_dataset(dataset):
    validate(dataset)
    for name in ("positions_a", "forces_ev_per_a", "energy_ev", "cell_a"):
        assert np.isfinite(getattr(dataset, name)).all(), name


def mutated_bytes(good: bytes):
    """Truncations, bit flips and spliced-in garbage of ``good``."""
    size = len(good)

    def flip(flips):
        payload = bytearray(good)
        for position, bit in flips:
            payload[position] ^= 1 << bit
        return bytes(payload)

    return st.one_of(
        st.integers(0, size - 1).map(lambda n: good[:n]),
        st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), min_size=1, max_size=8).map(flip),
        st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=40) | st.text(min_size=1, max_size=20).map(str.encode))
        .map(lambda cut: good[:cut[0]] + cut[1] + good[cut[0]:]),
    )


def replaced_token(text: str):
    tokens = text.split(" ")
    return st.tuples(st.integers(0, len(tokens) - 1), st.sampled_from(NASTY_TOKENS) | st.text(max_size=6)).map(
        lambda change: " ".join(tokens[:change[0]] + [change[1]] + tokens[change[0] + 1:])
    )


EXTXYZ_EDITS = st.sampled_from([
    lambda t: t.replace("1.3575 1.3575 1.3575", "0.0 0.0 0.0"),  # overlapping atoms
    lambda t: t.replace("5.43 0 0 0 5.43 0 0 0 5.43", "5.43 0 0 5.43 0 0 0 0 5.43"),  # zero volume
    lambda t: t.replace("5.43 0 0 0 5.43 0 0 0 5.43", "0.2 0 0 0 0.2 0 0 0 0.2"),  # cell far too small
    lambda t: t.replace("2\n", "99999999999\n", 1),
    lambda t: t.replace("2\n", "-2\n", 1),
    lambda t: t.replace("2\n", "1\n", 1),
    lambda t: t.replace("temperature_k=300", "temperature_k=abc"),
    lambda t: t.replace("temperature_k=300", "temperature_k=-inf"),
    lambda t: t.replace("REF_energy=-8.5", "REF_energy=[1,2]"),
    lambda t: t.replace('REF_stress="0.01 0 0 0 0.01 0 0 0 0.01"', 'REF_stress="1 2"'),
    lambda t: t.replace("REF_forces:R:3", "REF_forces:R:2"),
    lambda t: t.replace("REF_forces:R:3", "REF_forces:S:3"),
])


@FUZZ
@given(text=st.one_of(
    replaced_token(GOOD_EXTXYZ * 2),
    EXTXYZ_EDITS.map(lambda edit: GOOD_EXTXYZ + edit(GOOD_EXTXYZ)),
    mutated_bytes((GOOD_EXTXYZ * 2).encode()).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
))
def test_extxyz_reader_refuses_damage_clearly(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.xyz"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        dataset = check_outcome(read_extxyz, path)
        if dataset is not None:
            assert_valid_dataset(dataset)


def mlearn_entries() -> list:
    entries = []
    dataset = small_dataset()
    for index in range(len(dataset)):
        atoms = dataset.atoms(index)
        entries.append({
            "structure": {"lattice": {"matrix": atoms.cell.array.tolist()},
                          "sites": [{"species": [{"element": s, "occu": 1}], "xyz": p.tolist()}
                                    for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)]},
            "outputs": {"energy": float(atoms.calc.results["energy"]), "forces": atoms.calc.results["forces"].tolist(),
                        "virial_stress": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]},
            "group": "Elastic", "description": "Si at 300 K",
        })
    return entries


def paths_of(node, prefix=()):
    """Every path into a JSON tree (dict keys and list indices)."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from paths_of(child, prefix + (key,))


GOOD_MLEARN = mlearn_entries()
MLEARN_PATHS = [p for p in paths_of(GOOD_MLEARN) if p]


def edited(tree, path, value, delete: bool):
    tree = json.loads(json.dumps(tree))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


@FUZZ
@given(text=st.one_of(
    st.tuples(st.sampled_from(MLEARN_PATHS), NASTY_JSON, st.booleans()).map(lambda c: json.dumps(edited(GOOD_MLEARN, *c))),
    mutated_bytes(json.dumps(GOOD_MLEARN).encode()).map(lambda b: b.decode("latin-1")),
    NASTY_JSON.map(json.dumps),
))
def test_mlearn_reader_refuses_damage_clearly(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.json"
        path.write_bytes(text.encode("latin-1", errors="replace") if not text.isascii() else text.encode())
        dataset = check_outcome(read_mlearn, path)
        if dataset is not None:
            assert_valid_dataset(dataset)


def npz_bytes(arrays: dict) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def cache_arrays() -> dict:
    """The arrays of a data cache as save_npz writes it (metadata, checksum and all)."""
    with tempfile.TemporaryDirectory() as folder:
        save_npz(small_dataset(), Path(folder) / "cache.npz")
        with np.load(Path(folder) / "cache.npz") as archive:
            return {name: archive[name] for name in archive.files}


GOOD_ARRAYS = cache_arrays()
NASTY_ARRAYS = st.one_of(
    st.sampled_from([np.zeros(0), np.asarray(np.nan), np.asarray(-5), np.asarray(2**62), np.asarray("é☃"), np.zeros((2, 2, 2)),
                     np.ones(3, bool), np.ones(2, complex), np.full(2, 2**40), np.array([-16, 32]), np.array(["", "x"])]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=6).map(np.array),
)


def resealed(arrays: dict) -> bytes:
    """An archive (a checkpoint, a data cache) whose checksum fits its (damaged) content, so the checks behind the
    checksum are reached."""
    from mlpkit.fileio import archive_checksum

    arrays = {name: value for name, value in arrays.items() if name != "sha256"}
    meta = arrays.get("meta.json", np.zeros(0, np.uint8)).tobytes()
    arrays["sha256"] = np.frombuffer(archive_checksum(meta, arrays).encode(), np.uint8)
    return npz_bytes(arrays)


def damaged_array(name, replacement, mode):
    arrays = dict(GOOD_ARRAYS)
    if mode == "drop":
        del arrays[name]
    elif mode == "poison" and arrays[name].dtype.kind == "f":
        poisoned = arrays[name].copy()
        poisoned.flat[0] = np.inf if np.isnan(poisoned.flat[0]) else np.nan
        arrays[name] = poisoned
    else:
        arrays[name] = replacement
    return resealed(arrays)


@FUZZ
@given(payload=st.one_of(
    st.tuples(st.sampled_from(sorted(GOOD_ARRAYS)), NASTY_ARRAYS, st.sampled_from(["replace", "drop", "poison"])).map(lambda c: damaged_array(*c)),
    mutated_bytes(resealed(GOOD_ARRAYS)),
))
@example(payload=damaged_array("n_atoms", np.array(np.nan), "replace"))  # found at 1000 examples: a 0-d count
def test_npz_cache_reader_refuses_damage_clearly(payload):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.npz"
        path.write_bytes(payload)
        dataset = check_outcome(load_npz, path)
        if dataset is not None:
            assert_valid_dataset(dataset)


def checkpoint_arrays() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(random_checkpoint("painn"), Path(folder) / "model.npz")
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}


GOOD_CHECKPOINT = checkpoint_arrays()
GOOD_META = json.loads(GOOD_CHECKPOINT["meta.json"].tobytes())
META_PATHS = [p for p in paths_of(GOOD_META) if p]


def damaged_meta(path, value, delete):
    arrays = dict(GOOD_CHECKPOINT)
    arrays["meta.json"] = np.frombuffer(json.dumps(edited(GOOD_META, path, value, delete)).encode(), np.uint8)
    return resealed(arrays)


def damaged_param(index, replacement):
    arrays = dict(GOOD_CHECKPOINT)
    name = sorted(n for n in arrays if n.startswith("params/"))[index % 8]
    arrays[name] = replacement if replacement is not None else np.full_like(arrays[name], np.nan)
    return resealed(arrays)


@FUZZ
@given(payload=st.one_of(
    st.tuples(st.sampled_from(META_PATHS), NASTY_JSON, st.booleans()).map(lambda c: damaged_meta(*c)),
    st.tuples(st.integers(0, 7), st.none() | NASTY_ARRAYS).map(lambda c: damaged_param(*c)),
    mutated_bytes(npz_bytes(GOOD_CHECKPOINT)),
))
@example(payload=damaged_meta(("model", "envelope_exponent"), 46340, False))  # found at 1000: an overflowing power
def test_checkpoint_reader_refuses_damage_clearly(payload):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.npz"
        path.write_bytes(payload)
        checkpoint = check_outcome(load_checkpoint, path, CheckpointError)
        if checkpoint is not None:
            import jax

            assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(checkpoint.params))


GOOD_STUDY = json.loads(json.dumps(dataclasses.asdict(StudyConfig())))
STUDY_PATHS = [p for p in paths_of(GOOD_STUDY) if p]


@FUZZ
@given(change=st.tuples(st.sampled_from(STUDY_PATHS), NASTY_JSON, st.booleans()))
def test_study_configuration_is_validated_field_by_field(change):
    values = edited(GOOD_STUDY, *change)
    try:
        config = StudyConfig.from_dict(values)
    except MlpkitError as error:
        assert "study configuration" in str(error)
    else:
        assert StudyConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


def test_a_readable_study_configuration_round_trips():
    config = StudyConfig(sizes=(5, 10), seeds=(0,), inits=("scratch",))
    assert StudyConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(MlpkitError, match=r"study configuration.train.learning_rate: nan is not a finite number"):
        StudyConfig.from_dict({"train": {"learning_rate": float("nan")}})


def test_the_unmodified_inputs_are_read():
    """The fuzzers start from valid files: without damage, each reader accepts them."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "good.xyz").write_text(GOOD_EXTXYZ)
        (folder / "good.json").write_text(json.dumps(GOOD_MLEARN))
        (folder / "good.npz").write_bytes(resealed(GOOD_ARRAYS))
        (folder / "model.npz").write_bytes(resealed(GOOD_CHECKPOINT))
        assert len(read_extxyz(folder / "good.xyz")) == 1 and len(read_mlearn(folder / "good.json")) == 2
        assert load_npz(folder / "good.npz") == small_dataset()
        assert load_checkpoint(folder / "model.npz").config == random_checkpoint("painn").config
        save_npz(small_dataset(), folder / "again.npz")
        with zipfile.ZipFile(folder / "again.npz") as archive:
            assert "format_version.npy" in archive.namelist()
