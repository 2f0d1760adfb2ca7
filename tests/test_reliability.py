"""Every row of docs/reliability.md: hostile input and faults, through the API, the CLI and the app.

Each test can fail: it asserts the message, the exit status, that nothing was executed and that nothing was lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from crystalframer import CrystalFramer, load_model, save_checkpoint
from crystalframer.app.uploads import UploadError, parse_dataset, parse_structure_bytes, select_target
from crystalframer.model.checkpoint import CheckpointError
from crystalframer.cli.main import main
from crystalframer.data.errors import DataError
from crystalframer.data.formats import read_structure_bytes
from crystalframer.examples import get_example, list_examples
from crystalframer.structure import StructureError, to_arrays
from helpers.hostile import bad_files, partially_occupied, vacuum_slab
from helpers.tiny import labelled_structures, tiny_config, write_energy_csv

ROOT = Path(__file__).resolve().parents[1]
BAD = bad_files()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config(target_names=["energy"], target_units=["eV"]))
    model.calibrate(labelled_structures(4)[0])
    return save_checkpoint(model, tmp_path_factory.mktemp("ck") / "tiny")


# ----- 1. files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_api(name):
    data, fragment = BAD[name]
    with pytest.raises((DataError, StructureError)) as info:
        for _, structure in read_structure_bytes(data, name):
            to_arrays(structure)
    assert fragment.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_cli(name, tmp_path, tiny_checkpoint, capsys):
    data, fragment = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    good = tmp_path / "good.cif"
    good.write_text(str(CifWriter(get_example("TiO2 (rutile)"))))
    assert main(["predict", str(tiny_checkpoint), str(path), str(good), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert "good" in out  # nothing lost: the good file is still predicted
    lines = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(lines) == 1 and str(path) in lines[0] and fragment.lower() in lines[0].lower()
    assert "Traceback" not in err


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_app(name):
    data, fragment = BAD[name]
    with pytest.raises(UploadError) as info:
        parse_structure_bytes(data, name)
    assert name in str(info.value) and fragment.lower() in str(info.value).lower()


def test_app_keeps_working_after_bad_uploads():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.radio(key="home_source").set_value("Upload a file").run()
    for name in ("binary.cif", "overlap0.vasp", "z99.json"):
        at.file_uploader(key="home_upload").set_value((name, BAD[name][0], "application/octet-stream"))
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(name in e.value for e in at.error)
    rutile = Poscar(get_example("TiO2 (rutile)")).get_str().encode()
    at.file_uploader(key="home_upload").set_value(("POSCAR", rutile, "text/plain")).run()
    assert not at.exception and not at.error
    assert any("TiO2" in m.value for m in at.success)


@pytest.mark.parametrize("structure_of", [vacuum_slab, partially_occupied])
def test_unusual_but_valid_structures_predict_everywhere(structure_of, tmp_path, tiny_checkpoint, capsys):
    structure = structure_of()
    model = load_model(tiny_checkpoint)
    assert np.isfinite(model.predict([structure])).all()
    path = tmp_path / "s.json"
    path.write_text(json.dumps(structure.as_dict()))
    assert main(["predict", str(tiny_checkpoint), str(path), "--device", "cpu"]) == 0
    assert parse_structure_bytes(path.read_bytes(), "s.json") == structure


# ----- 2. size ------------------------------------------------------------------------------------------------
def _no_neighbour_search(monkeypatch):
    import crystalframer.neighbors as neighbors

    def refuse(*args, **kwargs):
        raise AssertionError("the neighbour search ran before the size guard")

    for name in dir(neighbors):
        if name.startswith(("neighbor", "build", "find")) and callable(getattr(neighbors, name)):
            monkeypatch.setattr(neighbors, name, refuse)


@pytest.mark.parametrize("repeat, limit", [((8, 8, 8), 1000), ((16, 16, 16), None)])  # 2,560 and 20,480 atoms
def test_huge_cells_are_refused_with_an_estimate(repeat, limit, tmp_path, tiny_checkpoint, capsys, monkeypatch):
    big = get_example("SrTiO3 (cubic perovskite)") * repeat
    _no_neighbour_search(monkeypatch)
    with pytest.raises(StructureError, match=r"more than the limit of .*image-edges.*s per prediction.*GB"):
        to_arrays(big, max_atoms=limit or 2000)
    with pytest.raises(UploadError, match=r"at most 500 .*image-edges"):
        parse_structure_bytes(json.dumps(big.as_dict()).encode(), "big.json")
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big.as_dict()))
    argv = ["predict", str(tiny_checkpoint), str(path), "--device", "cpu"] + (["--max-atoms", str(limit)] if limit
                                                                             else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "image-edges" in err and "Traceback" not in err


def test_a_2000_atom_cell_is_announced_with_an_estimate_then_predicted(tmp_path, tiny_checkpoint, capsys):
    big = get_example("SrTiO3 (cubic perovskite)") * (8, 8, 6)  # 1,920 atoms, under the default limit of 2,000
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big.as_dict()))
    assert main(["predict", str(tiny_checkpoint), str(path), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "note:" in err and "1920 sites" in err and "image-edges" in err
    value = float(out.strip().splitlines()[-1].split()[-1])
    assert np.isfinite(value)


# ----- 3. uploads ---------------------------------------------------------------------------------------------
def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _cif(k: int = 0) -> bytes:
    return str(CifWriter(get_example(list_examples()[k]))).encode()


def test_zip_path_traversal_writes_nothing_outside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _zip({"id_prop.csv": b"a,1\nb,2\n", "a.cif": _cif(0), "../../escaped.cif": _cif(1)})
    with pytest.raises(UploadError, match="leaves the archive folder"):
        parse_dataset(data, "evil.zip")
    assert not list(tmp_path.rglob("escaped.cif")) and not (tmp_path.parent / "escaped.cif").exists()
    with pytest.raises(UploadError, match="leaves the archive folder"):
        parse_dataset(_zip({"id_prop.csv": b"a,1\n", "/abs/a.cif": _cif(0)}), "abs.zip")


def test_zip_bomb_is_refused_before_unpacking():
    bomb = _zip({"id_prop.csv": b"a,1\n", "a.cif": b"0" * (200 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(UploadError, match="zip bomb|more than"):
        parse_dataset(bomb, "bomb.zip")


@pytest.mark.parametrize("data, name, message", [
    (lambda: _zip({"a.cif": _cif(0)}), "noprop.zip", "no id_prop.csv"),
    (lambda: b"not a zip at all", "fake.zip", "not a valid zip"),
    (lambda: pd.DataFrame({"id": ["a", "b"], "cif": [_cif(0).decode(), _cif(1).decode()],
                           "label": ["x", "y"]}).to_csv(index=False).encode(), "text.csv", "no numeric"),
    (lambda: b"a,b\n1,2\n", "nocif.csv", "no structure column"),
    (lambda: b"", "empty.csv", "empty"),
])
def test_bad_dataset_uploads(data, name, message):
    with pytest.raises(UploadError, match=message):
        parse_dataset(data(), name)


def test_dataset_labels_nan_text_duplicates_and_one_row():
    cifs = [_cif(k).decode() for k in range(4)]
    frame = pd.DataFrame({"id": ["a", "b", "b", "c"], "cif": cifs, "y": ["1.5", "nan", "2.5", "oops"]})
    data = parse_dataset(frame.to_csv(index=False).encode(), "mixed.csv")
    assert data.ids == ["a", "b"]  # the duplicated 'b' and the text label are skipped, with notes
    notes = " ".join(data.warnings)
    assert "duplicate id" in notes and "oops" in notes
    with pytest.raises(UploadError, match="only 1 usable"):  # 'b' has a NaN label: one row is not enough
        select_target(data, "y")
    one = pd.DataFrame({"id": ["a"], "cif": [cifs[0]], "y": [1.0]}).to_csv(index=False).encode()
    with pytest.raises(UploadError, match="at least 2"):
        select_target(parse_dataset(one, "one.csv"), "y")


def test_dataset_with_only_nan_and_text_labels_gives_the_reason():
    cifs = [_cif(k).decode() for k in range(2)]
    frame = pd.DataFrame({"id": ["a", "b"], "cif": cifs, "y": [float("nan"), float("nan")]})
    with pytest.raises(UploadError, match="usable"):
        select_target(parse_dataset(frame.to_csv(index=False).encode(), "nan.csv"), "y")


def test_oversized_upload_is_refused_without_parsing(monkeypatch):
    import crystalframer.app.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UploadError, match="limit is"):
        parse_structure_bytes(_cif(0) * 10, "big.cif")
    with pytest.raises(UploadError, match="limit is"):
        parse_dataset(b"x" * 2000, "big.csv")


# ----- 4. code execution --------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_no_file_from_a_user_is_ever_unpickled(tmp_path, tiny_checkpoint, capsys):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(_Payload(marker))
    torch_blob = io.BytesIO()
    torch.save({"model": _Payload(marker)}, torch_blob)
    for data in (blob, torch_blob.getvalue()):
        evil = tmp_path / "evil.safetensors"
        evil.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_model(evil)
        for name in ("evil.cif", "evil.json", "evil.vasp", "evil"):
            with pytest.raises(UploadError):
                parse_structure_bytes(data, name)
        for name in ("evil.csv", "evil.zip", "evil.extxyz"):
            with pytest.raises(UploadError):
                parse_dataset(data, name)
        assert main(["predict", str(evil), str(tmp_path / "x.cif")]) == 1
        (tmp_path / "evil.pt").write_bytes(data)
        assert main(["predict", str(tiny_checkpoint), str(tmp_path / "evil.pt")]) == 1
        # A resume state that is not ours is refused, not executed.
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        (run / "resume_state.pt").write_bytes(data)
        from crystalframer.train.trainer import TrainConfig, Trainer, TrainingError

        model = CrystalFramer(tiny_config())
        graphs = [model.make_graph(s, target=[y]) for s, y in zip(*labelled_structures(4))]
        trainer = Trainer(model, graphs, [], TrainConfig(epochs=1, progress=False), run)
        with pytest.raises(TrainingError, match="not a resume state"):
            trainer.try_resume()
        # Cache files, split files and configs are read with allow_pickle=False / JSON / safe YAML.
        from crystalframer.data import load_split
        from crystalframer.data.table import load_table

        (tmp_path / "table.npz").write_bytes(data)
        with pytest.raises(Exception):
            load_table(tmp_path / "table.npz")
        (tmp_path / "split.json").write_bytes(data)
        with pytest.raises(Exception):
            load_split(tmp_path / "split.json")
        (tmp_path / "run.yaml").write_text("!!python/object/apply:os.system ['touch " + str(marker) + "']\n")
        assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r2")]) != 0
    capsys.readouterr()
    assert not marker.exists()


def test_load_model_refuses_urls_and_traversal(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALFRAMER_CHECKPOINTS", str(tmp_path))
    for ref in ("https://example.org/m.safetensors", "http://x/y", "../checkpoints/mp-eform-max", "../../etc"):
        with pytest.raises(CheckpointError, match="URL|not found|no checkpoint named|without model"):
            load_model(ref)


# ----- 5. faults ----------------------------------------------------------------------------------------------
@pytest.fixture()
def train_command(tmp_path):
    structures, labels = labelled_structures(16)
    table = tmp_path / "data.csv"
    write_energy_csv(table, structures, labels)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "crystalframer", "train", "--out", str(run), "--data.kind", "csv", "--data.path",
           str(table), "--data.target", "energy", "--data.val_fraction", "0.25", "--model.num_layers", "1",
           "--model.model_dim", "16", "--model.num_heads", "2", "--model.ff_dim", "32", "--model.angle_bases", "4",
           "--model.dist_bases", "8", "--train.batch_size", "4", "--train.swa_epochs", "1",
           "--train.progress", "false", "--train.threads", "1", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), CRYSTALFRAMER_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    return cmd, run, env


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - start < timeout, f"{path} did not appear"
        time.sleep(0.2)


def test_sigkill_then_rerun_resumes_with_every_file_intact(train_command):
    cmd, run, env = train_command
    proc = subprocess.Popen(cmd + ["--train.epochs", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    _wait_for(run / "resume_state.pt", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    state = torch.load(run / "resume_state.pt", weights_only=True)  # intact: written atomically
    done = int(state["epoch"])
    best = load_model(run / "best.safetensors")  # intact too
    assert best.config.num_layers == 1
    assert not list(run.glob("*.tmp")) or all(p.stat().st_size >= 0 for p in run.glob("*.tmp"))
    again = subprocess.run(cmd + ["--train.epochs", str(done + 2)], capture_output=True, text=True, env=env,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {run / 'resume_state.pt'} at epoch {done}" in again.stdout
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(run / "log.csv"))]
    assert epochs == list(range(1, done + 3))  # no epoch lost or logged twice
    assert load_model(run / "model.safetensors").checkpoint_info["info"]["epochs_done"] == done + 2


def _default_sigint() -> None:
    """A runner started in the background by a non-interactive shell ignores SIGINT, and children inherit that;
    restore the default so that the child's Python installs its KeyboardInterrupt handler, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_stops_cleanly_and_says_how_to_resume(train_command):
    cmd, run, env = train_command
    proc = subprocess.Popen(cmd + ["--train.epochs", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=_default_sigint)
    _wait_for(run / "resume_state.pt", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted after epoch" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err
    torch.load(run / "resume_state.pt", weights_only=True)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import crystalframer.model.checkpoint as checkpoint

    model = CrystalFramer(tiny_config())
    path = save_checkpoint(model, tmp_path / "ck")
    before = load_model(path).state_dict()

    def full_disk(state, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    torch.manual_seed(1)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(CrystalFramer(tiny_config()), tmp_path / "ck")
    after = load_model(path).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["model.safetensors"]  # no temporary left


def test_full_disk_while_saving_resume_state_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    from crystalframer.train.trainer import TrainConfig, Trainer

    model = CrystalFramer(tiny_config())
    graphs = [model.make_graph(s, target=[y]) for s, y in zip(*labelled_structures(4))]
    trainer = Trainer(model, graphs, [], TrainConfig(epochs=1, progress=False, swa_epochs=0), tmp_path)
    trainer.save_resume_state()
    good = (tmp_path / "resume_state.pt").read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    trainer.epoch = 5
    with pytest.raises(OSError, match="No space"):
        trainer.save_resume_state()
    assert (tmp_path / "resume_state.pt").read_bytes() == good
    assert not (tmp_path / "resume_state.pt.tmp").exists()


# ----- 6. concurrency -----------------------------------------------------------------------------------------
def test_two_sessions_finetuning_and_inspecting_never_share_a_model():
    from crystalframer.app.models import fresh_model, weights_fingerprint
    from crystalframer.train.finetune import finetune

    shared = fresh_model("max")  # as the app's model cache hands one object to every session
    before = weights_fingerprint(shared)
    structure = get_example("SrTiO3 (cubic perovskite)")
    reference = shared.inspect(structure)
    structures = [get_example(n) for n in list_examples()[:6]]
    y = np.array([s.volume / len(s) for s in structures])
    results, errors, inspections = [], [], []

    def tune():
        try:
            results.append(finetune(shared, structures[:4], y[:4], structures[4:], y[4:], epochs=2, lr=1e-3,
                                    batch_size=2, target_name="v"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def look():
        try:
            for _ in range(3):
                inspections.append(shared.inspect(structure))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=tune), threading.Thread(target=look), threading.Thread(target=tune)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert weights_fingerprint(shared) == before and not shared.training
    assert len(results) == 2 and results[0].model is not shared and results[1].model is not results[0].model
    assert weights_fingerprint(results[0].model) != before
    for ins in inspections:
        assert np.allclose(ins.prediction, reference.prediction)
        assert all(np.array_equal(a.attention, b.attention) for a, b in zip(ins.layers, reference.layers))


def test_cache_keys_never_use_id():
    """``id()`` of a collected object is reused; no cache key in the app or the library may depend on it."""
    offenders = []
    for path in list((ROOT / "crystalframer").rglob("*.py")) + list((ROOT / "app_pages").glob("*.py")) + [ROOT / "app.py"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"(?<![\w.`])id\(", code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
