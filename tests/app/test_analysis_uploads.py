"""Upload parsing: every accepted format, and clear UploadErrors for bad input."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from crystalframer.data.formats import sniff_format as guess_format
from crystalframer.app.uploads import (APP_MAX_ATOMS, UploadError, parse_dataset,
                                            parse_structure_bytes, parse_structure_text, select_target,
                                            split_indices)
from crystalframer.examples import get_example, list_examples


@pytest.fixture(scope="module")
def rutile():
    return get_example("TiO2 (rutile)")


def _extxyz(structures, labels=None) -> str:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for k, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        if labels is not None:
            atoms.info["volume_per_atom"] = labels[k]
            atoms.info["id"] = f"s{k}"
        frames.append(atoms)
    buf = io.StringIO()
    write(buf, frames, format="extxyz")
    return buf.getvalue()


def test_cif_poscar_extxyz_json_round_trip(rutile):
    texts = {
        "x.cif": str(CifWriter(rutile)),
        "POSCAR": Poscar(rutile).get_str(),
        "x.vasp": Poscar(rutile).get_str(),
        "x.extxyz": _extxyz([rutile]),
        "x.json": json.dumps(rutile.as_dict()),
    }
    for name, text in texts.items():
        s = parse_structure_bytes(text.encode(), name)
        assert s.composition.reduced_formula == "TiO2", name
        assert s.lattice.volume == pytest.approx(rutile.lattice.volume, rel=1e-4), name


def test_format_guessing_from_content(rutile):
    assert guess_format(str(CifWriter(rutile))) == "cif"
    assert guess_format(Poscar(rutile).get_str()) == "poscar"
    assert guess_format(_extxyz([rutile])) == "extxyz"
    assert guess_format(json.dumps(rutile.as_dict())) == "json"
    assert parse_structure_text(str(CifWriter(rutile))).composition.reduced_formula == "TiO2"


@pytest.mark.parametrize("data, name, fragment", [
    (b"data_broken\n_cell_length_a 3\nthis is not a cif\n", "bad.cif", "could not read"),
    (b"", "empty.cif", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image.png", "wrong file type"),
    (b"\x00\x01\x02binary", "blob", "binary"),
    (b"PK\x03\x04", "archive.zip", "wrong file type"),
    (b"hello world\n", "notes.txt", "could not read"),
])
def test_bad_structure_uploads(data, name, fragment):
    with pytest.raises(UploadError) as info:
        parse_structure_bytes(data, name)
    assert fragment in str(info.value).lower()


def test_huge_cell_is_rejected():
    big = get_example("SrTiO3 (cubic perovskite)") * (5, 5, 5)
    assert len(big) > APP_MAX_ATOMS
    with pytest.raises(UploadError, match="at most"):
        parse_structure_bytes(str(CifWriter(big)).encode(), "big.cif")


def test_overlapping_atoms_are_rejected():
    text = """Si2
1.0
5 0 0
0 5 0
0 0 5
Si
2
direct
0 0 0
0.001 0 0
"""
    with pytest.raises(UploadError, match="cannot be used"):
        parse_structure_text(text, fmt="poscar")


def _csv(structures, values, extra_cols=None) -> bytes:
    df = pd.DataFrame({"material_id": [f"m{k}" for k in range(len(structures))],
                       "cif": [str(CifWriter(s)) for s in structures], "target": values})
    for k, v in (extra_cols or {}).items():
        df[k] = v
    return df.to_csv(index=False).encode()


def test_csv_dataset_with_nan_labels_and_bad_rows():
    structures = [get_example(n) for n in list_examples()[:5]]
    values = [1.0, np.nan, 3.0, 4.0, 5.0]
    raw = pd.read_csv(io.BytesIO(_csv(structures, values)))
    raw.loc[len(raw)] = ["broken", "data_x\n_garbage", 6.0]
    data = parse_dataset(raw.to_csv(index=False).encode(), "set.csv")
    assert len(data) == 5 and data.targets == ["target"]
    assert any("skipped 1" in w for w in data.warnings)
    structs, y, ids, notes = select_target(data, "target")
    assert len(structs) == 4 and np.all(np.isfinite(y))
    assert "m1" not in ids and notes and "NaN" in notes[0]


def test_csv_without_numeric_column():
    structures = [get_example(n) for n in list_examples()[:3]]
    text = _csv(structures, ["a", "b", "c"])
    with pytest.raises(UploadError, match="no numeric target column"):
        parse_dataset(text, "set.csv")


def test_csv_without_structures():
    with pytest.raises(UploadError, match="no structure column"):
        parse_dataset(b"a,b\n1,2\n3,4\n", "set.csv")


def test_all_nan_target():
    structures = [get_example(n) for n in list_examples()[:3]]
    data = parse_dataset(_csv(structures, [1.0, 2.0, 3.0], {"empty": [np.nan, np.nan, 1.0]}), "set.csv")
    with pytest.raises(UploadError, match="usable"):
        select_target(data, "empty")


def test_zip_with_id_prop():
    structures = [get_example(n) for n in list_examples()[:4]]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, s in enumerate(structures):
            zf.writestr(f"data/s{k}.cif", str(CifWriter(s)))
        zf.writestr("data/id_prop.csv", "\n".join(f"s{k},{k * 0.5}" for k in range(5)))  # s4 has no file
    data = parse_dataset(buf.getvalue(), "set.zip")
    assert len(data) == 4 and data.ids == ["s0", "s1", "s2", "s3"]
    assert any("no structure file for 's4'" in w for w in data.warnings)
    with pytest.raises(UploadError, match="id_prop"):
        empty = io.BytesIO()
        with zipfile.ZipFile(empty, "w") as zf:
            zf.writestr("a.cif", str(CifWriter(structures[0])))
        parse_dataset(empty.getvalue(), "noprop.zip")


def test_extxyz_dataset():
    structures = [get_example(n) for n in list_examples()[:3]]
    text = _extxyz(structures, labels=[s.volume / len(s) for s in structures])
    data = parse_dataset(text.encode(), "set.extxyz")
    assert "volume_per_atom" in data.targets
    _, y, _, _ = select_target(data, "volume_per_atom")
    assert y == pytest.approx([s.volume / len(s) for s in structures], rel=1e-6)


def test_wrong_dataset_type():
    with pytest.raises(UploadError, match="wrong file type"):
        parse_dataset(b"whatever", "model.safetensors")


def test_split_indices():
    train, val = split_indices(10, 0.2, seed=1)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    train, val = split_indices(2, 0.01)
    assert len(train) == 1 and len(val) == 1
    with pytest.raises(UploadError):
        split_indices(1, 0.2)
