"""Frame-method probes, coordination polyhedra and frame–bond alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalframer.analysis.compare import (alignment_summary, alignment_table, axis_bond_angles,
                                            comparable_methods, coordination_environment, coordination_overview,
                                            inspect_methods, with_frame_method)
from crystalframer.app.models import fresh_model
from crystalframer.examples import get_example


@pytest.fixture(scope="module")
def model():
    return fresh_model("max")


@pytest.fixture(scope="module")
def srtio3():
    return get_example("SrTiO3 (cubic perovskite)")


def _ti(structure):
    return next(k for k, site in enumerate(structure) if site.specie.symbol == "Ti")


def test_srtio3_ti_octahedral_and_static_frames_on_bonds(model, srtio3):
    ti = _ti(srtio3)
    env = coordination_environment(srtio3, ti)
    assert env.cn == 6 and env.geometry == "octahedral" and env.score > 0.95
    assert np.allclose(np.linalg.norm(env.bond_vectors, axis=1), 3.905 / 2, atol=1e-3)
    insp = inspect_methods(model, srtio3, ["static", "max", "weighted_pca"])
    table = alignment_table(insp, ti, env)
    static = table[table["method"] == "static"]
    assert len(static) == model.config.num_layers * model.config.num_heads * 3
    assert static["angle (deg)"].max() < 3.0  # every static axis lies along a Ti–O bond
    summary = alignment_summary(table)
    assert set(summary["method"]) == {"static", "max", "weighted_pca"}
    assert (summary[summary["method"] == "static"]["within 10°"] == 1.0).all()


def test_zincblende_tetrahedral():
    zns = get_example("ZnS (zincblende)")
    zn = next(k for k, site in enumerate(zns) if site.specie.symbol == "Zn")
    env = coordination_environment(zns, zn)
    assert env.cn == 4 and env.geometry == "tetrahedral"
    overview = coordination_overview(zns)
    assert set(overview["geometry"]) == {"tetrahedral"}


def test_spinel_polyhedra():
    overview = coordination_overview(get_example("MgAl2O4 (spinel)"))
    geo = dict(zip(overview["element"], overview["geometry"]))
    assert geo["Mg"] == "tetrahedral" and geo["Al"] == "octahedral"


def test_probe_copies_never_touch_the_model(model, srtio3):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe = with_frame_method(model, "weighted_pca")
    assert probe is not model and model.config.frame_method == "max"
    assert probe.config.frame_method == "weighted_pca"
    assert all(b.attn.cfg.frame_method == "weighted_pca" for b in probe.blocks)
    assert all(b.attn.cfg.frame_method == "max" for b in model.blocks)
    probe.inspect(srtio3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_frameless_model_has_no_methods():
    none = fresh_model("none")
    assert comparable_methods(none) == []
    with pytest.raises(ValueError, match="without frames"):
        with_frame_method(none, "max")
    with pytest.raises(ValueError):
        with_frame_method(fresh_model("max"), "bogus")


def test_axis_bond_angles():
    bonds = np.array([[2.0, 0, 0], [0, 0, -1.5]])
    frames = np.eye(3)[None]  # e1 = x, e2 = y, e3 = z
    ang, idx = axis_bond_angles(frames, bonds)
    assert ang[0, 0] == pytest.approx(0.0) and idx[0, 0] == 0
    assert ang[0, 1] == pytest.approx(90.0)
    assert ang[0, 2] == pytest.approx(90.0)  # directed: +z is 180° from the −z bond, 90° from the x bond
    ang_u, _ = axis_bond_angles(frames, bonds, directed=False)
    assert ang_u[0, 2] == pytest.approx(0.0)
    empty, _ = axis_bond_angles(frames, np.zeros((0, 3)))
    assert np.isnan(empty).all()


def test_disordered_structure_uses_majority_species():
    s = get_example("SrTiO3 (cubic perovskite)")
    s.replace(0, {"Sr": 0.75, "Ba": 0.25})
    env = coordination_environment(s, 1)
    assert env.geometry == "octahedral"
    overview = coordination_overview(s)
    assert "Sr" in set(overview["element"])
