"""Neighbour tables, σ tables and exports built from model.inspect()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crystalframer.analysis.attention import (attention_records, frame_of, frame_records, head_weights,
                                              inspection_to_dict, inspection_to_json, neighbor_table, sigma_table)
from crystalframer.app.models import fresh_model
from crystalframer.examples import get_example


@pytest.fixture(scope="module")
def model():
    return fresh_model("max")


@pytest.fixture(scope="module")
def insp(model):
    return model.inspect(get_example("SrTiO3 (cubic perovskite)"))


def test_neighbor_table_sorted_and_complete(insp):
    full = neighbor_table(insp, 0, 1, head=2, top_k=None)
    lay = insp.layers[0]
    assert len(full) == int(np.sum(lay.edges[:, 0] == 1))
    assert full["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(full["weight"].to_numpy()) <= 1e-12)
    assert full["cumulative"].iloc[-1] == pytest.approx(1.0, abs=1e-5)
    # Positions of neighbour images are p_i + r.
    top = full.iloc[0]
    m = np.flatnonzero((lay.edges[:, 0] == 1) & (lay.edges[:, 1] == top["j"]))
    expected = insp.positions[1][None, :] + lay.vectors[m]
    assert np.min(np.linalg.norm(expected - top[["x", "y", "z"]].to_numpy(float), axis=1)) < 1e-9


def test_top_k_and_self_exclusion(insp):
    t = neighbor_table(insp, 1, 1, head=None, top_k=6, include_self=False)
    assert len(t) == 6 and (t["distance (Å)"] > 0).all()
    # Nearest neighbours of Ti are the six O at a/2.
    assert set(t["element"]) <= {"O", "Sr", "Ti"}


def test_head_mean_sums_to_one(insp):
    lay = insp.layers[2]
    w = head_weights(lay, None)
    sums = np.bincount(lay.edges[:, 0], weights=w)
    assert np.allclose(sums, 1.0, atol=1e-5)
    with pytest.raises(IndexError):
        head_weights(lay, 99)


def test_sigma_and_frames(insp, model):
    sig = sigma_table(insp, 0)
    assert sig.shape == (model.config.num_layers, model.config.num_heads)
    assert (sig.to_numpy() > 0).all()
    f = frame_of(insp, 0, 1, 0)
    assert f.shape == (3, 3)
    assert np.allclose(f @ f.T, np.eye(3), atol=1e-5)
    assert frame_of(insp, 0, 1, None) is None


def test_exports(insp):
    rec = attention_records(insp)
    assert len(rec) == sum(len(lay.edges) for lay in insp.layers)
    assert {"w_head0", "distance", "n_a"} <= set(rec.columns)
    sub = attention_records(insp, atoms=[1], layers=[0])
    assert set(sub["i"]) == {1} and set(sub["layer"]) == {1}
    fr = frame_records(insp, atoms=[1])
    assert len(fr) == len(insp.layers) * insp.layers[0].sigma.shape[1]
    assert {"e1x", "e3z", "sigma"} <= set(fr.columns)
    data = json.loads(inspection_to_json(insp, {"structure": "SrTiO3"}))
    assert data["meta"]["structure"] == "SrTiO3"
    assert len(data["layers"]) == len(insp.layers)
    assert np.asarray(data["layers"][0]["frames"]).shape == insp.layers[0].frames.shape
    assert inspection_to_dict(insp)["elements"][0] == "Sr"


def test_frameless_model_exports():
    insp = fresh_model("none").inspect(get_example("ZnS (zincblende)"))
    assert frame_of(insp, 0, 0, 0) is None
    fr = frame_records(insp)
    assert "e1x" not in fr.columns and len(fr) > 0
    assert json.loads(inspection_to_json(insp))["layers"][0]["frames"] is None
