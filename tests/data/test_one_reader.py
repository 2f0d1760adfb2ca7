"""The CLI (a run's ``data:`` section) and the app's uploads read a dataset through one reader: the same file
gives the same ids, labels and structures on both surfaces."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

from crystalframer.app.uploads import parse_dataset
from crystalframer.train.datasets import _records
from crystalframer.examples import get_example, list_examples
from crystalframer.train.runconfig import DataConfig


def _structures():
    return [get_example(n) for n in list_examples()[:5]]


def _csv(structures) -> bytes:
    frame = pd.DataFrame({"material_id": [f"m{k}" for k in range(len(structures))],
                          "cif": [str(CifWriter(s)) for s in structures],
                          "volume_per_atom": [s.volume / len(s) for s in structures]})
    return frame.to_csv(index=False).encode()


def _zip(structures) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, s in enumerate(structures):
            zf.writestr(f"set/s{k}.cif", str(CifWriter(s)))
        zf.writestr("set/id_prop.csv", "".join(f"s{k},{s.volume / len(s)}\n" for k, s in enumerate(structures)))
    return buf.getvalue()


def _extxyz(structures) -> bytes:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for k, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info.update({"id": f"x{k}", "volume_per_atom": s.volume / len(s)})
        frames.append(atoms)
    buf = io.StringIO()
    write(buf, frames, format="extxyz")
    return buf.getvalue().encode()


@pytest.mark.parametrize("name, build, target", [
    ("set.csv", _csv, "volume_per_atom"), ("set.zip", _zip, "target"), ("set.extxyz", _extxyz, "volume_per_atom"),
])
def test_cli_and_app_read_the_same(tmp_path, name, build, target):
    structures = _structures()
    data = build(structures)
    path = tmp_path / name
    path.write_bytes(data)

    _, cli_records, _ = _records(DataConfig(path=str(path), targets=[target]), [target])
    app = parse_dataset(data, name)

    assert [r.ident for r in cli_records] == app.ids and len(app.ids) == len(structures)
    assert np.allclose([r.targets[target] for r in cli_records], app.labels[target].to_numpy())
    for record, structure in zip(cli_records, app.structures):
        assert record.structure == structure
    assert np.allclose(app.labels[target], [s.volume / len(s) for s in structures], rtol=1e-6)
