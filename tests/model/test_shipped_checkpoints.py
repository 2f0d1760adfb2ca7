"""The shipped MP checkpoints: loadable, small, documented, accurate enough, and usable from the CLI."""

from __future__ import annotations

import math
import numpy as np
import pytest

from crystalframer import list_shipped, load_model, read_metadata
from crystalframer.model.checkpoint import SHIPPED_DIR
from crystalframer.cli.main import main
from crystalframer.examples import get_example

SRTIO3 = "SrTiO3 (cubic perovskite)"
EXPECTED = {"mp-eform-max": "max", "mp-eform-wpca": "weighted_pca", "mp-eform-none": "none"}


def test_all_three_are_shipped():
    assert set(EXPECTED) <= set(list_shipped())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_checkpoint_is_small_documented_and_loads(name):
    folder = SHIPPED_DIR / name
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 10 * 2**20
    meta = read_metadata(name)
    assert meta["config"]["frame_method"] == EXPECTED[name]
    info = meta["info"]
    assert info["command"].startswith("crystalframer train --config configs/")
    assert info["data"]["kind"] == "mp_megnet" and info["data"]["targets"] == ["megnet_e_form"]
    val_mae = info["val_mae"][0]
    assert math.isfinite(val_mae)
    card = (folder / "card.md").read_text()
    assert f"{val_mae:.4f}" in card and "Exact command" in card and "parameters" in card
    model = load_model(name)
    pred = model.predict([get_example(SRTIO3)])
    assert pred.shape == (1, 1) and np.isfinite(pred).all()


def test_max_checkpoint_meets_accuracy_target():
    assert read_metadata("mp-eform-max")["info"]["val_mae"][0] <= 0.045  # full official val split, all sizes


def test_predict_command_with_shipped_name(tmp_path, capsys):
    structure = get_example(SRTIO3)
    cif = tmp_path / "srtio3.cif"
    structure.to(filename=str(cif))
    poscar = tmp_path / "POSCAR"
    structure.to(filename=str(poscar), fmt="poscar")
    assert main(["predict", "mp-eform-max", str(cif), str(poscar), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "srtio3" in out and "eV/atom" in out
    assert main(["predict", "mp-eform-max", str(tmp_path), "-o", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 3
