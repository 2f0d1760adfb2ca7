"""Dataset readers (crystalframer.data.records): every format on small fixtures, plus bad-input messages."""

from __future__ import annotations

import gzip
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalframer.data import (
    DataError, DataWarning, RecordList, data_root, read_csv_cif, read_extxyz, read_id_prop_folder,
    read_jarvis_dft3d, read_mp_megnet, read_structure_files,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFRAMER_CACHE", str(tmp_path / "cache"))


def shared(*parts: str) -> Path:
    root = data_root()
    path = root.joinpath(*parts) if root else None
    if path is None or not path.exists():
        pytest.skip(f"shared dataset {'/'.join(parts)} not available")
    return path


def small_structures() -> list[Structure]:
    return [
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]]),
        Structure(Lattice.hexagonal(2.5, 4.1), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
        Structure(Lattice.tetragonal(4.6, 2.95), ["Ti", "Ti", "O", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]]),
    ]


def write_csv(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False, compression="gzip" if path.suffix == ".gz" else None)
    return path


def labelled_rows() -> list[dict]:
    return [{"material_id": f"x-{k}", "energy": -1.0 - k, "gap": 0.5 * k, "formula": s.composition.reduced_formula,
             "cif": s.to(fmt="cif")} for k, s in enumerate(small_structures())]


# ----- CSV with a CIF column ---------------------------------------------------------------------------------------
def test_read_csv_cif_gz_defaults(tmp_path):
    path = write_csv(tmp_path / "d.csv.gz", labelled_rows())
    records = read_csv_cif(path, progress=False)
    assert isinstance(records, RecordList)
    assert records.idents == ["x-0", "x-1", "x-2", "x-3"]
    assert records.target_names == ["energy", "gap"]  # numeric columns only; the text column 'formula' is not one
    assert records[3].targets == {"energy": -4.0, "gap": 1.5}
    for record, structure in zip(records, small_structures()):
        assert len(record.structure) == len(structure)
        assert np.allclose(record.structure.lattice.matrix, structure.lattice.matrix, atol=1e-6)
    assert records.errors == [] and records.dropped_nan == 0


def test_read_csv_cif_explicit_columns_and_text_labels(tmp_path):
    rows = labelled_rows()
    for row in rows:
        row["name"], row["text_label"] = row.pop("material_id"), str(row["gap"])
    rows[1]["text_label"] = "na"
    path = write_csv(tmp_path / "d.csv", rows)
    records = read_csv_cif(path, id_column="name", target_columns=["text_label"], nan_policy="keep",
                           progress=False)
    assert records.idents == ["x-0", "x-1", "x-2", "x-3"]
    assert math.isnan(records[1].targets["text_label"]) and records[2].targets["text_label"] == 1.0
    unlabelled = read_csv_cif(path, target_columns=[], progress=False)
    assert unlabelled[0].targets == {} and unlabelled.idents[0] == "x-0"  # 'name' found as the id column


def test_read_csv_cif_bad_rows_are_skipped_and_reported(tmp_path):
    rows = labelled_rows()
    rows[1]["cif"] = "data_broken\n_cell_length_a 3\nthis is not a CIF"
    rows[2]["energy"] = float("nan")
    rows[3]["material_id"] = "x-0"  # duplicate id
    rows.append(dict(labelled_rows()[0], material_id=""))
    path = write_csv(tmp_path / "d.csv", rows)
    with pytest.warns(DataWarning) as caught:
        records = read_csv_cif(path, progress=False)
    assert records.idents == ["x-0"]
    assert [e[0] for e in records.errors] == ["x-1", "row4", "x-0"]
    assert "row 1" in records.errors[0][1] and "CIF" in records.errors[0][1]
    assert "empty id in column 'material_id'" in records.errors[1][1]
    assert "duplicate id" in records.errors[2][1]
    assert records.dropped_nan == 1
    text = " ".join(str(w.message) for w in caught)
    assert "skipped 3 bad rows" in text and "dropped 1 rows with missing (NaN) labels" in text
    with pytest.raises(DataError, match=r"row 1 \(x-1\)"):
        read_csv_cif(path, on_error="raise", progress=False, cache=False)
    rows[1]["cif"] = labelled_rows()[1]["cif"]
    rows[3]["material_id"] = "x-3"
    rows.pop()
    write_csv(path, rows)
    with pytest.raises(DataError, match=r"row 2 \(x-2\): missing \(NaN\) label \['energy'\]"):
        read_csv_cif(path, nan_policy="raise", progress=False)


@pytest.mark.parametrize("content, columns, message", [
    ({"id": ["a"], "structure": ["x"], "y": [1.0]}, {}, r"no CIF column 'cif'"),
    ({"id": ["a"], "cif": ["x"], "y": [1.0]}, {"target_columns": ["z"]}, r"no label column 'z'"),
    ({"id": ["a"], "cif": ["x"], "y": [1.0]}, {"id_column": "mpid"}, r"no id column 'mpid'"),
    ({"id": ["a"], "cif": ["x"], "y": ["text"]}, {}, r"no numeric label column"),
])
def test_read_csv_cif_whole_file_errors(tmp_path, content, columns, message):
    path = tmp_path / "bad.csv"
    pd.DataFrame(content).to_csv(path, index=False)
    with pytest.raises(DataError, match=message) as info:
        read_csv_cif(path, progress=False, **columns)
    assert str(path) in str(info.value)


def test_read_csv_cif_unreadable_or_wrong_type(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_csv_cif(tmp_path / "missing.csv")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match="blob.csv"):
        read_csv_cif(binary, progress=False)
    cif = tmp_path / "x.cif"
    cif.write_text(small_structures()[0].to(fmt="cif"))
    with pytest.raises(DataError, match="structure file, not a CSV"):
        read_csv_cif(cif)


def test_read_csv_cif_all_rows_bad_raises(tmp_path):
    rows = labelled_rows()[:2]
    for row in rows:
        row["cif"] = "garbage"
    path = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(DataError, match="no valid structures; 2 bad rows"):
        read_csv_cif(path, progress=False)


def test_read_csv_cif_on_mp_sample():
    path = shared("mp_megnet", "mp_sample.csv.gz")
    records = read_csv_cif(path, limit=30, progress=False)
    assert len(records) == 30 and records.target_names == ["formation_energy_per_atom", "band_gap"]
    assert all(r.ident.startswith("mp-") for r in records)


# ----- MP MEGNet --------------------------------------------------------------------------------------------------
def test_read_mp_megnet_first_rows():
    path = shared("mp_megnet", "mp_megnet_trainval.csv.gz")
    records, split_of = read_mp_megnet(path, limit=50, progress=False)
    raw = pd.read_csv(path, nrows=50)
    expected = raw[raw.split.isin(["train", "val"])]
    assert records.idents == expected.material_id.tolist()
    assert set(split_of.values()) <= {"train", "val"} and set(split_of) == set(records.idents)
    assert records.target_names == ["megnet_e_form"]
    assert np.allclose([r.targets["megnet_e_form"] for r in records], expected.megnet_e_form)
    small, _ = read_mp_megnet(path, target=["megnet_e_form", "band_gap"], splits=("train",), limit=50,
                              max_sites=8, progress=False)
    assert 0 < len(small) < len(records)
    assert all(len(r.structure) <= 8 and split_of[r.ident] == "train" for r in small)
    assert set(small[0].targets) == {"megnet_e_form", "band_gap"}
    with pytest.raises(DataError, match="parsed rows pass the filters"):
        read_mp_megnet(path, limit=50, max_sites=0, progress=False)
    with pytest.raises(DataError, match="unknown split"):
        read_mp_megnet(path, splits=("test",), limit=5, progress=False)


def test_read_mp_megnet_drops_large_formation_energies(tmp_path):
    rows = labelled_rows()
    for k, row in enumerate(rows):
        row.update(split=["train", "train", "val", "extra"][k], megnet_e_form=row["energy"],
                   formation_energy_per_atom=row["energy"])
    rows[0]["formation_energy_per_atom"] = -9.7  # an MP artefact in train
    path = write_csv(tmp_path / "mp.csv.gz", rows)
    records, split_of = read_mp_megnet(path, progress=False)
    assert records.idents == ["x-1", "x-2"] and split_of == {"x-1": "train", "x-2": "val"}
    kept, _ = read_mp_megnet(path, max_abs_eform=None, splits=("train", "val", "extra"), progress=False)
    assert kept.idents == ["x-0", "x-1", "x-2", "x-3"]


# ----- id_prop.csv folders -----------------------------------------------------------------------------------------
def test_read_id_prop_folder_jarvis_sample():
    folder = shared("jarvis_sample")
    records = read_id_prop_folder(folder, progress=False)
    assert len(records) == 50 and records.errors == []
    assert records.target_names == ["target"]
    first = (folder / "id_prop.csv").read_text().splitlines()[0].split(",")
    assert records[0].ident == first[0].removesuffix(".vasp")
    assert records[0].targets["target"] == pytest.approx(float(first[1]))


def test_read_id_prop_folder_mixed_formats_and_missing_files(tmp_path):
    s = small_structures()
    (tmp_path / "a.cif").write_text(s[0].to(fmt="cif"))
    (tmp_path / "POSCAR-b").write_text(s[1].to(fmt="poscar"))
    (tmp_path / "c.vasp").write_text(s[2].to(fmt="poscar"))
    (tmp_path / "d").write_text(s[3].to(fmt="cif"))  # no extension: content sniffed
    (tmp_path / "id_prop.csv").write_text("a,1.0,2\nb,2.0,3\nc.vasp,3.0,4\nd,4.0,5\nmissing,5.0,6\n")
    with pytest.warns(DataWarning, match="skipped 1 bad rows"):
        records = read_id_prop_folder(tmp_path, target_names=["u", "v"], progress=False)
    assert records.idents == ["a", "b", "c", "d"]
    assert [len(r.structure) for r in records] == [2, 1, 2, 6]
    assert records[2].targets == {"u": 3.0, "v": 4.0}
    assert records.errors[0][0] == "missing" and "no structure file for 'missing'" in records.errors[0][1]
    with pytest.raises(DataError, match="2 value column"):
        read_id_prop_folder(tmp_path, target_names=["u"], progress=False)


def test_read_id_prop_folder_header_and_errors(tmp_path):
    (tmp_path / "a.cif").write_text(small_structures()[0].to(fmt="cif"))
    (tmp_path / "b.cif").write_text("loop_\n_atom_site_label\nnothing here\n")
    (tmp_path / "id_prop.csv").write_text("id,bulk_modulus\na,100\nb,50\n")
    with pytest.warns(DataWarning):
        records = read_id_prop_folder(tmp_path, progress=False)
    assert records.target_names == ["bulk_modulus"] and records.idents == ["a"]
    assert "b.cif" in records.errors[0][1]
    with pytest.raises(DataError, match="nowhere: not a folder"):
        read_id_prop_folder(tmp_path / "nowhere")
    (tmp_path / "id_prop.csv").unlink()
    with pytest.raises(DataError, match="no id_prop.csv"):
        read_id_prop_folder(tmp_path)


# ----- extxyz ------------------------------------------------------------------------------------------------------
def write_extxyz(path: Path, with_molecule: bool = False) -> Path:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for k, s in enumerate(small_structures()):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info = {"material_id": f"m{k}", "gap": 0.25 * k, "label": "ok"}
        if k != 1:
            atoms.info["bulk"] = 10.0 * k
        frames.append(atoms)
    if with_molecule:
        from ase import Atoms
        frames.append(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"material_id": "mol", "gap": 9.0}))
    ase.io.write(path, frames, format="extxyz")
    return path


def test_read_extxyz_labels_from_info(tmp_path):
    path = write_extxyz(tmp_path / "set.extxyz", with_molecule=True)
    with pytest.warns(DataWarning) as caught:
        records = read_extxyz(path, progress=False)
    assert records.target_names == ["bulk", "gap"]
    assert records.idents == ["m0", "m2", "m3"]  # m1 lacks 'bulk' (NaN, dropped); the molecule is not periodic
    assert records.dropped_nan == 1 and records.errors[0][0] == "mol" and "not periodic" in records.errors[0][1]
    assert any("dropped 1 rows" in str(w.message) for w in caught)
    with pytest.warns(DataWarning, match="mol"):
        only_gap = read_extxyz(path, target_keys="gap", progress=False, on_error="skip")
    assert only_gap.idents == ["m0", "m1", "m2", "m3"] and only_gap[3].targets == {"gap": 0.75}
    positions = only_gap[2].structure.cart_coords
    assert np.allclose(positions, small_structures()[2].cart_coords)
    with pytest.raises(DataError, match="no frame has label"):
        read_extxyz(path, target_keys=["nope"], progress=False)


def test_read_extxyz_malformed(tmp_path):
    path = tmp_path / "bad.extxyz"
    path.write_text("3\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nH 0 0\n")
    with pytest.raises(DataError, match="bad.extxyz: malformed extxyz"):
        read_extxyz(path, progress=False)


# ----- loose structure files ---------------------------------------------------------------------------------------
def test_read_structure_files_all_formats(tmp_path):
    s = small_structures()
    (tmp_path / "a.cif").write_text(s[0].to(fmt="cif"))
    (tmp_path / "POSCAR").write_text(s[1].to(fmt="poscar"))
    (tmp_path / "c.vasp.gz").write_bytes(gzip.compress(s[2].to(fmt="poscar").encode()))
    (tmp_path / "d.json").write_text(s[3].to(fmt="json"))
    write_extxyz(tmp_path / "e.extxyz")
    (tmp_path / "notes.txt").write_text("not a structure")
    records = read_structure_files(tmp_path)  # a folder: the .txt file is ignored
    assert records.idents == ["POSCAR", "a", "c", "d", "e:0", "e:1", "e:2", "e:3"]
    assert all(r.targets == {} for r in records)
    assert records[2].structure.composition.reduced_formula == "ZnO"
    globbed = read_structure_files([str(tmp_path / "*.cif"), tmp_path / "d.json"])
    assert globbed.idents == ["a", "d"]


def test_read_structure_files_errors(tmp_path):
    good = tmp_path / "good.cif"
    good.write_text(small_structures()[0].to(fmt="cif"))
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 1\n")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.warns(DataWarning, match="skipped 2 bad rows"):
        records = read_structure_files([good, bad, other])
    assert records.idents == ["good"]
    assert "bad.cif" in records.errors[0][1] and "unsupported structure file type" in records.errors[1][1]
    with pytest.raises(DataError, match="no valid structures"):
        read_structure_files([bad])
    with pytest.raises(DataError, match="file not found"):
        read_structure_files([tmp_path / "none.cif"], on_error="raise")
    with pytest.raises(DataError, match="matches no file"):
        read_structure_files(str(tmp_path / "*.vasp"))


# ----- JARVIS ------------------------------------------------------------------------------------------------------
def test_read_jarvis_dft3d_local_json(tmp_path):
    from jarvis.core.atoms import Atoms

    folder = shared("jarvis_sample")
    files = sorted(folder.glob("POSCAR-*.vasp"))[:6]
    entries = []
    for k, f in enumerate(files):
        entry = {"jid": f.stem.removeprefix("POSCAR-"), "atoms": Atoms.from_poscar(str(f)).to_dict(),
                 "optb88vdw_bandgap": 0.1 * k, "formation_energy_peratom": -0.5}
        entries.append(entry)
    entries[1]["optb88vdw_bandgap"] = "na"
    entries[2]["atoms"] = {"lattice_mat": [[1, 0, 0]], "coords": [], "elements": []}
    path = tmp_path / "dft_3d.json"
    path.write_text(json.dumps(entries))
    with pytest.warns(DataWarning):
        records = read_jarvis_dft3d("optb88vdw_bandgap", path=path, progress=False)
    assert records.idents == [e["jid"] for k, e in enumerate(entries) if k not in (1, 2)]
    assert records.dropped_nan == 1 and records.errors[0][0] == entries[2]["jid"]
    reference = Atoms.from_poscar(str(files[0])).pymatgen_converter()
    assert np.allclose(records[0].structure.cart_coords, reference.cart_coords)
    assert np.allclose(records[0].structure.lattice.matrix, reference.lattice.matrix)
    assert [str(sp) for sp in records[0].structure.species] == [str(sp) for sp in reference.species]
    with pytest.raises(DataError, match="no entry has label"):
        read_jarvis_dft3d("nope", path=path, progress=False)


def test_read_jarvis_dft3d_bad_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="malformed JSON"):
        read_jarvis_dft3d("y", path=path)


def test_warnings_name_the_source(tmp_path):
    rows = labelled_rows()
    rows[0]["cif"] = "junk"
    path = write_csv(tmp_path / "named.csv", rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_csv_cif(path, progress=False)
    assert any("named.csv" in str(w.message) and "x-0" in str(w.message) for w in caught)


def test_read_jarvis_dft3d_online_path_uses_jarvis_tools(monkeypatch):
    import jarvis.db.figshare as figshare

    atoms = {"lattice_mat": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]], "coords": [[0, 0, 0]], "elements": ["Po"],
             "cartesian": False}
    calls = []
    monkeypatch.setattr(figshare, "data", lambda name: calls.append(name) or [
        {"jid": "JVASP-1", "atoms": atoms, "optb88vdw_bandgap": 0.0}])
    records = read_jarvis_dft3d("optb88vdw_bandgap", progress=False)
    assert calls == ["dft_3d"] and records.idents == ["JVASP-1"] and len(records[0].structure) == 1

    def offline(name):
        raise OSError("network unreachable")

    monkeypatch.setattr(figshare, "data", offline)
    with pytest.raises(DataError, match="could not download JARVIS dft_3d.*pass path="):
        read_jarvis_dft3d("optb88vdw_bandgap", progress=False)
