"""Data sets: the mlearn reader, extxyz/npz round trips, splits, and clear errors on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ase import units

from mlpkit.data import (
    concatenate,
    download_mlearn,
    load_dataset,
    load_npz,
    read_extxyz,
    read_mlearn,
    save_npz,
    select_where,
    shuffled,
    train_val_split,
    write_extxyz,
)
from mlpkit.reference import label
from mlpkit.errors import DataError
from mlpkit.fileio import archive_bytes
from mlpkit.structures import diamond, rattled

MLEARN_COUNTS = {  # the published mlearn sets: group → (training, test)
    "Si": {"Elastic": (55, 6), "AIMD-NVT": (90, 10), "Vacancy": (57, 7), "Surface": (12, 2)},
    "Ge": {"Elastic": (55, 6), "AIMD-NVT": (90, 10), "Vacancy": (72, 8), "Surface": (11, 1)},
}


def frame_keys(dataset) -> set[bytes]:
    """One key per frame (its positions and cell), to test that splits share no frame."""
    offsets = dataset.offsets
    return {dataset.positions_a[offsets[i]:offsets[i + 1]].tobytes() + dataset.cell_a[i].tobytes() for i in range(len(dataset))}


@pytest.fixture
def small_dataset():
    frames = [rattled(diamond("Si"), 0.05, seed) for seed in range(4)]
    dataset = label(frames, "AIMD-NVT")
    return concatenate([dataset, label([diamond("Si")], "Elastic")])


@pytest.mark.parametrize("element", ["Si", "Ge"])
def test_mlearn_reader_counts_shapes_and_temperatures(mlearn_dir, element):
    for split_index, split in enumerate(("training", "test")):
        dataset = read_mlearn(mlearn_dir / element / f"{split}.json")
        counts = {group: int((dataset.group == group).sum()) for group in np.unique(dataset.group)}
        assert counts == {group: pair[split_index] for group, pair in MLEARN_COUNTS[element].items()}
        assert dataset.forces_ev_per_a.shape == (dataset.n_atoms.sum(), 3)
        assert dataset.has_stress.all() and dataset.elements == [element]
        assert set(dataset.n_atoms[dataset.group == "Elastic"]) == {64}
        hot = dataset.temperature_k[dataset.group == "AIMD-NVT"]
        assert np.isfinite(hot).all() and hot.max() == {"Si": 3374, "Ge": 2422}[element]


def test_mlearn_ground_states_match_the_published_dft_values(mlearn_dir):
    for element, a_angstrom, energy in (("Si", 5.4687, -5.42532), ("Ge", 5.7542, -4.49252)):
        dataset = read_mlearn(mlearn_dir / element / "training.json")
        per_atom = dataset.energy_ev / dataset.n_atoms
        ground = int(np.argmin(np.where(dataset.group == "Elastic", per_atom, np.inf)))
        assert per_atom[ground] == pytest.approx(energy, abs=2e-5)
        assert dataset.cell_a[ground][0, 0] / 2 == pytest.approx(a_angstrom, abs=1e-3)


def test_mlearn_stress_conversion_gives_the_known_si_c11(mlearn_dir):
    """C11 ≈ 153 GPa from the ±2 % xx strains: checks sign, Voigt order and the kBar conversion."""
    dataset = read_mlearn(mlearn_dir / "Si" / "training.json")
    elastic = np.flatnonzero(dataset.group == "Elastic")
    ground_cell = dataset.cell_a[elastic][np.argmin(dataset.energy_ev[elastic])]
    strain_xx = {round(dataset.cell_a[i][0, 0] / ground_cell[0, 0] - 1, 3): i for i in elastic
                 if np.allclose(dataset.cell_a[i][1:], ground_cell[1:])}
    sigma_xx_gpa = {s: dataset.stress_ev_per_a3[i][0] / units.GPa for s, i in strain_xx.items()}
    c11_gpa = (sigma_xx_gpa[0.02] - sigma_xx_gpa[-0.02]) / 0.04
    assert c11_gpa == pytest.approx(153, abs=8)


def test_extxyz_round_trip_is_exact(mlearn_dir, tmp_path):
    first, second = tmp_path / "a.xyz", tmp_path / "b.xyz"
    write_extxyz(read_mlearn(mlearn_dir / "Ge" / "test.json"), first)
    dataset = read_extxyz(first)
    write_extxyz(dataset, second)
    assert first.read_bytes() == second.read_bytes()
    assert read_extxyz(second) == dataset


def test_extxyz_config_type_is_read_as_the_group(small_dataset, tmp_path):
    # MACE and NequIP files name the group config_type
    write_extxyz(small_dataset, tmp_path / "frames.xyz")
    text = (tmp_path / "frames.xyz").read_text()
    assert "group=" in text
    (tmp_path / "mace.xyz").write_text(text.replace("group=", "config_type="))
    assert list(read_extxyz(tmp_path / "mace.xyz").group) == list(small_dataset.group)
    both = text.replace("group=", "config_type=other group=")
    (tmp_path / "both.xyz").write_text(both)
    assert list(read_extxyz(tmp_path / "both.xyz").group) == list(small_dataset.group)  # group wins


def test_extxyz_label_keys_are_configurable(small_dataset, tmp_path):
    from mlpkit.data import LabelKeys

    keys = LabelKeys(energy="dft_energy", forces="dft_forces", stress="dft_stress")
    write_extxyz(small_dataset, tmp_path / "custom.xyz", keys)
    write_extxyz(small_dataset, tmp_path / "default.xyz")
    assert "dft_energy=" in (tmp_path / "custom.xyz").read_text()
    custom = read_extxyz(tmp_path / "custom.xyz", keys)
    assert custom == read_extxyz(tmp_path / "default.xyz")
    assert np.array_equal(custom.energy_ev, small_dataset.energy_ev)
    assert np.abs(custom.positions_a - small_dataset.positions_a).max() <= 5e-9  # written to 1e-8 Å
    with pytest.raises(DataError, match="field 'REF_energy': missing"):
        read_extxyz(tmp_path / "custom.xyz")


def test_shipped_sw_set_round_trips_and_splits_without_the_mlearn_files(tmp_path):
    from mlpkit.data import sw_data_path

    dataset = read_extxyz(sw_data_path("Si", "test"))
    write_extxyz(dataset, tmp_path / "copy.xyz")
    assert (tmp_path / "copy.xyz").read_bytes() == sw_data_path("Si", "test").read_bytes()
    train, val = train_val_split(dataset, 0.2, seed=1)
    assert len(train) + len(val) == len(dataset) and not frame_keys(train) & frame_keys(val)
    assert set(np.unique(val.group)) == {"AIMD-NVT", "Elastic", "Vacancy"}  # strata with ≥ 2 frames


def test_select_takes_masks_and_negative_indices_and_refuses_out_of_range(small_dataset):
    last = small_dataset.select([-1])
    assert last == small_dataset.select([len(small_dataset) - 1]) and last.group[0] == "Elastic"
    mask = small_dataset.group == "Elastic"
    assert small_dataset.select(mask) == last
    assert select_where(small_dataset, groups="Elastic") == last
    with pytest.raises(IndexError):
        small_dataset.select([len(small_dataset)])


def test_npz_cache_round_trip_and_refuses_damage(small_dataset, tmp_path):
    path = tmp_path / "cache.npz"
    save_npz(small_dataset, path)
    assert load_npz(path) == small_dataset
    assert load_dataset(path) == small_dataset
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="cache.npz"):
        load_npz(path)
    arrays = {name: getattr(small_dataset, name) for name in ("n_atoms", "positions_a", "species", "cell_a", "energy_ev",
                                                             "forces_ev_per_a", "stress_ev_per_a3", "group", "temperature_k")}
    # integer periodicity behind a checksum that fits it: the type check behind the checksum refuses it
    (tmp_path / "ints.npz").write_bytes(archive_bytes({}, {"pbc": small_dataset.pbc.astype(int), **arrays}, 1, checksum=True))
    with pytest.raises(DataError, match="ints.npz, field 'pbc': unexpected data type"):
        load_npz(tmp_path / "ints.npz")


def test_splits_are_seeded_disjoint_stratified_and_nested(mlearn_dir):
    dataset = read_mlearn(mlearn_dir / "Ge" / "training.json")
    train, val = train_val_split(dataset, 0.1, seed=0)
    again, _ = train_val_split(dataset, 0.1, seed=0)
    assert train == again and len(train) + len(val) == len(dataset)
    assert set(np.unique(val.group)) == set(np.unique(dataset.group))
    assert not frame_keys(train) & frame_keys(val)
    ordered = shuffled(train, seed=3)
    assert ordered.first(5) == ordered.first(10).first(5)
    cold = select_where(dataset, groups=["AIMD-NVT"], max_temperature_k=1089)
    assert len(cold) == 54 and cold.temperature_k.max() == 1089


def test_mlearn_downloader_verifies_checksums(mlearn_dir, tmp_path):
    mirror = f"file://{mlearn_dir}"
    download_mlearn(tmp_path / "ok", elements=["Ge"], base_url=mirror)
    assert (tmp_path / "ok" / "Ge" / "test.json").read_bytes() == (mlearn_dir / "Ge" / "test.json").read_bytes()
    tampered = tmp_path / "tampered"
    (tampered / "Ge").mkdir(parents=True)
    for split in ("training", "test"):
        (tampered / "Ge" / f"{split}.json").write_bytes((mlearn_dir / "Ge" / f"{split}.json").read_bytes() + b" ")
    with pytest.raises(DataError, match="does not match"):
        download_mlearn(tmp_path / "refused", elements=["Ge"], base_url=f"file://{tampered}")
    assert not (tmp_path / "refused" / "Ge" / "training.json").exists()


GOOD_FRAME = """2
Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-8.5 pbc="T T T"
Si 0.0 0.0 0.0 0.1 0.0 0.0
Si 1.3575 1.3575 1.3575 -0.1 0.0 0.0
"""


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda t: t.replace("Properties=species:S:1:pos:R:3:REF_forces:R:3", "Properties=species:S:1:pos:R:3"), "REF_forces"),
        (lambda t: t.replace(" REF_energy=-8.5", ""), "REF_energy"),
        (lambda t: t.replace("Si 1.3575", "Xq 1.3575"), None),
        (lambda t: t.replace("1.3575 1.3575 1.3575", "1.3575 1.3575 nan"), "positions"),
        (lambda t: t.replace("-0.1 0.0 0.0", "-0.1 inf 0.0"), "forces"),
        (lambda t: t.replace("1.3575 1.3575 1.3575", "30.0 1.3575 1.3575"), "positions"),
        (lambda t: t.replace("5.43 0 0 0 5.43 0 0 0 5.43", "5.43 0 0 5.43 0 0 0 0 5.43"), "cell"),
        (lambda t: t.replace("1.3575 1.3575 1.3575", "0.1 0.1 0.1"), "positions"),
        (lambda t: t.replace("5.43 0 0 0 5.43 0 0 0 5.43", "0.3 0 0 0 5.43 0 0 0 5.43"), "positions"),
        (lambda t: t.replace("Si 1.3575 1.3575 1.3575 -0.1 0.0 0.0\n", ""), None),
    ],
    ids=["no forces", "no energy", "unknown element", "nan position", "inf force", "outside cell",
         "zero volume", "overlap", "cell too small", "truncated"],
)
def test_bad_extxyz_names_file_frame_and_field(tmp_path, edit, field):
    path = tmp_path / "bad.xyz"
    path.write_text(GOOD_FRAME + edit(GOOD_FRAME))
    with pytest.raises(DataError) as caught:
        read_extxyz(path)
    message = str(caught.value)
    assert "bad.xyz" in message and "frame 1" in message, message
    if field is not None:
        assert f"field '{field}'" in message, message
    assert len(read_extxyz(_good(tmp_path))) == 1


def _good(tmp_path) -> Path:
    path = tmp_path / "good.xyz"
    path.write_text(GOOD_FRAME)
    return path


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e["outputs"].pop("forces"), "outputs.forces"),
        (lambda e: e["outputs"].update(energy="abc"), "outputs.energy"),
        (lambda e: e["structure"]["sites"][0]["species"][0].update(element="Qq"), "structure.sites.species"),
        (lambda e: e["outputs"]["forces"].pop(), "outputs.forces"),
        (lambda e: e["outputs"].update(virial_stress=[0, 0, 0]), "outputs.virial_stress"),
    ],
    ids=["no forces", "energy not a number", "unknown element", "forces short", "stress short"],
)
def test_bad_mlearn_json_names_file_frame_and_field(mlearn_dir, tmp_path, mutate, field):
    import json

    entries = json.loads((mlearn_dir / "Ge" / "test.json").read_text())[:3]
    mutate(entries[2])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=re.escape(f"broken.json, frame 2, field '{field}'")):
        read_mlearn(path)
    path.write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_mlearn(path)


def test_failed_write_leaves_nothing_behind(tmp_path, small_dataset):
    from mlpkit.fileio import atomic_path

    target = tmp_path / "out.xyz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    write_extxyz(small_dataset, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.xyz"]
