"""Checkpoints: self-describing, atomic, never unpickled, clear errors for corrupt or foreign files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from crystalframer import CheckpointError, CrystalFramer, load_model, read_metadata, save_checkpoint
from crystalframer.checkpoint import FORMAT_NAME
from helpers.tiny import labelled_structures, tiny_config


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config(target_names=["e_form"], target_units=["eV/atom"]))
    structures, _ = labelled_structures(4)
    model.calibrate(structures)
    model.set_target_normalization([-1.5], [0.7])
    path = save_checkpoint(model, tmp_path / "ck", info={"dataset": "unit-test", "metrics": {"val_mae": 0.1}})
    return model, path, structures


def test_round_trip_is_exact_and_self_describing(saved):
    model, path, structures = saved
    loaded = load_model(path.parent)  # a directory resolves to its model.safetensors
    np.testing.assert_array_equal(model.predict(structures), loaded.predict(structures))
    meta = read_metadata(path)
    assert meta["config"]["target_units"] == ["eV/atom"]
    assert meta["info"]["dataset"] == "unit-test"
    assert meta["code_version"]
    assert torch.equal(loaded.target_mean, torch.tensor([-1.5]))


def test_no_temporary_files_left(saved):
    _, path, _ = saved
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]


def test_corrupt_file_gives_clear_error(saved, tmp_path):
    _, path, _ = saved
    data = path.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(broken)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(garbage)


def test_other_version_and_foreign_files_give_clear_errors(saved, tmp_path):
    model, path, _ = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    newer = tmp_path / "newer.safetensors"
    save_file(state, str(newer), metadata={"format": FORMAT_NAME, "format_version": "99",
                                           "config": model.config.to_json(), "info": "{}"})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(newer)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a CrystalFramer checkpoint"):
        load_model(foreign)
    bad_config = tmp_path / "badcfg.safetensors"
    cfg = json.loads(model.config.to_json()) | {"no_such_field": 1}
    save_file(state, str(bad_config), metadata={"format": FORMAT_NAME, "format_version": "1",
                                                "config": json.dumps(cfg), "info": "{}"})
    with pytest.raises(CheckpointError, match="config this version cannot read"):
        load_model(bad_config)


def test_missing_name_lists_shipped(tmp_path):
    with pytest.raises(CheckpointError, match="shipped checkpoints"):
        load_model("no-such-model")


def test_checkpoints_from_before_the_faithful_defaults_keep_their_behaviour(tmp_path):
    """A config without ``angle_features`` (older checkpoints) loads with the exact path and the cutoff it recorded;
    the obsolete ``edge_chunk_size`` key is dropped. A new checkpoint keeps its own (grid) choice."""
    from crystalframer.checkpoint import upgrade_config

    old = CrystalFramer(tiny_config()).config.to_dict()
    old.pop("angle_features")
    old["cutoff_sigmas"] = 3.5
    old["edge_chunk_size"] = 65536
    upgraded = upgrade_config(old)
    assert upgraded["angle_features"] == "exact" and upgraded["cutoff_sigmas"] == 3.5
    assert "edge_chunk_size" not in upgraded
    new = CrystalFramer(tiny_config()).config.to_dict()
    assert upgrade_config(new)["angle_features"] == new["angle_features"] == "grid"


# Eval predictions (eV/atom) of the shipped checkpoints, recorded with the code that wrote their cards
# (docs/model.md, frame-sample table): loading them must keep predicting these.
SHIPPED_PREDICTIONS = {
    ("mp-eform-max", "SrTiO3 (cubic perovskite)"): -3.5670, ("mp-eform-max", "TiO2 (rutile)"): -3.5140,
    ("mp-eform-max", "ZnS (zincblende)"): -1.1371, ("mp-eform-max", "MgAl2O4 (spinel)"): -3.3426,
    ("mp-eform-wpca", "SrTiO3 (cubic perovskite)"): -3.5677, ("mp-eform-wpca", "TiO2 (rutile)"): -3.5420,
    ("mp-eform-wpca", "ZnS (zincblende)"): -1.1642, ("mp-eform-wpca", "MgAl2O4 (spinel)"): -3.2770,
}


@pytest.mark.parametrize("name", ["mp-eform-max", "mp-eform-wpca"])
def test_shipped_checkpoints_predict_as_when_their_cards_were_written(name):
    from crystalframer.examples import get_example

    model = load_model(name)
    assert model.config.angle_features == "exact" and model.config.cutoff_sigmas == 3.5
    for (ckpt, example), expected in SHIPPED_PREDICTIONS.items():
        if ckpt == name:
            assert model.predict([get_example(example)])[0, 0] == pytest.approx(expected, abs=1.5e-4), example
