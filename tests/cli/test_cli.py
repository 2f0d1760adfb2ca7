"""Command line: train → evaluate → predict → inspect on small generated data, through the real entry point."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crystalframer import CrystalFramer, save_checkpoint
from crystalframer.cli.main import main
from crystalframer.train.runconfig import apply_overrides
from helpers.tiny import labelled_structures, tiny_config, write_energy_csv


@pytest.fixture()
def structure_files(tmp_path):
    structures, labels = labelled_structures(12)
    folder = tmp_path / "structs"
    folder.mkdir()
    for k, s in enumerate(structures):
        s.to(filename=str(folder / (f"s{k}.cif" if k % 2 else f"s{k}.vasp")), fmt="cif" if k % 2 else "poscar")
    table = tmp_path / "data.csv"
    write_energy_csv(table, structures, labels)
    return folder, table


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config(target_names=["energy"], target_units=["eV"]))
    model.calibrate(labelled_structures(4)[0])
    return save_checkpoint(model, tmp_path / "ck")


def test_overrides_parse_yaml_values():
    cfg = apply_overrides({"train": {"epochs": 3}}, ["--train.epochs", "5", "--model.frame_method", "max",
                                                     "--train.betas", "[0.9, 0.99]"])
    assert cfg == {"train": {"epochs": 5, "betas": [0.9, 0.99]}, "model": {"frame_method": "max"}}


def test_predict_files_and_folder(checkpoint, structure_files, tmp_path, capsys):
    folder, _ = structure_files
    assert main(["predict", str(checkpoint), str(folder / "s1.cif"), str(folder / "s0.vasp"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "s1" in out and "s0" in out and "energy (eV)" in out
    csv_path = tmp_path / "pred.csv"
    assert main(["predict", str(checkpoint), str(folder), "-o", str(csv_path), "--frame-samples", "3"]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 12 and "energy_std" in rows[0]


def test_predict_reports_bad_files_and_keeps_going(checkpoint, structure_files, tmp_path, capsys):
    folder, _ = structure_files
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 3\n")
    assert main(["predict", str(checkpoint), str(bad), str(folder / "s1.cif")]) == 1  # the good file is predicted; the bad one makes the exit status 1
    captured = capsys.readouterr()
    assert "s1" in captured.out and "bad" in captured.err


def test_inspect_writes_json(checkpoint, structure_files, tmp_path):
    folder, _ = structure_files
    out = tmp_path / "ins.json"
    assert main(["inspect", str(checkpoint), str(folder / "s1.cif"), "-o", str(out)]) == 0
    payload = json.loads(out.read_text())
    layer = payload["layers"][0]
    assert len(layer["frames"]) == 2 and len(layer["frames"][0][0]) == 3
    assert len(layer["attention"]) == len(layer["edges"]) == len(layer["vectors"])


def test_train_then_evaluate_via_module_entry_point(structure_files, tmp_path):
    _, table = structure_files
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "crystalframer", "train", "--out", str(run), "--data.kind", "csv", "--data.path",
           str(table), "--data.target", "energy", "--data.val_fraction", "0.25", "--model.num_layers", "1",
           "--model.model_dim", "16", "--model.num_heads", "2", "--model.ff_dim", "32", "--model.angle_bases", "4",
           "--model.dist_bases", "8", "--train.epochs", "2", "--train.batch_size", "4", "--train.swa_epochs", "1",
           "--train.progress", "false", "--device", "cpu"]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin",
           "CRYSTALFRAMER_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "model.safetensors").exists()
    info = json.loads((run / "result.json").read_text())
    assert info["epochs_done"] == 2
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 12 and not set(split["train"]) & set(split["val"])
    proc = subprocess.run([sys.executable, "-m", "crystalframer", "evaluate", str(run / "model.safetensors"),
                           "--data", str(table), "--parity", str(tmp_path / "parity.csv"), "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MAE" in proc.stdout and "energy" in proc.stdout
    assert len(list(csv.DictReader(open(tmp_path / "parity.csv")))) == 12


def test_finetune_from_checkpoint_keeps_normalisation(checkpoint, structure_files, tmp_path):
    from crystalframer import load_model, read_metadata

    _, table = structure_files
    run = tmp_path / "ft"
    assert main(["train", "--out", str(run), "--init_from", str(checkpoint), "--data.kind", "csv", "--data.path",
                 str(table), "--data.target", "energy", "--data.val_fraction", "0.25", "--train.epochs", "1",
                 "--train.batch_size", "4", "--train.swa_epochs", "0", "--train.progress", "false",
                 "--device", "cpu"]) == 0
    info = read_metadata(run / "model.safetensors")["info"]
    assert info["init_from"] == str(checkpoint)
    base, tuned = load_model(checkpoint), load_model(run / "model.safetensors")
    assert float(tuned.target_std) == float(base.target_std) and float(tuned.target_mean) == float(base.target_mean)


@pytest.mark.parametrize("argv, expected", [
    (["predict", "mp-eform-max", "x.cif", "--devcie", "cpu"], "--device"),
    (["train", "--devcie", "cpu"], "--device"),
    (["evaluate", "mp-eform-max", "--splt", "val"], "--split"),
    (["train", "--init-frm", "x"], "--init_from"),
])
def test_unknown_flags_fail_naming_the_closest(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown option" in err and f"did you mean '{expected}'" in err


@pytest.mark.parametrize("override, expected", [
    (["--data.max_site", "8"], "max_sites"), (["--train.epoch", "2"], "epochs"),
    (["--model.frame_metod", "max"], "frame_method"), (["--dta.kind", "csv"], "data"),
])
def test_unknown_config_keys_fail_naming_the_closest(override, expected, tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), *override])
    assert code == 2
    err = capsys.readouterr().err
    assert f"did you mean '{expected}'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_run_config_round_trips_and_checks_kinds(tmp_path):
    from crystalframer.train.runconfig import ConfigError, RunConfig, load_run_config

    run = load_run_config(Path(__file__).parents[2] / "configs" / "mp-eform-max.yaml")
    assert RunConfig.from_dict(run.to_dict()) == run
    assert run.data.target_names == ["megnet_e_form"]
    with pytest.raises(ConfigError, match="did you mean 'csv'"):
        RunConfig.from_dict({"data": {"kind": "cvs"}})


def test_version_and_checkpoints_commands(capsys):
    import crystalframer

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and crystalframer.__version__ in capsys.readouterr().out
    assert main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    assert "mp-eform-max" in out and "max" in out
