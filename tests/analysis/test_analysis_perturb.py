"""Perturbations and sweeps: correct geometry, atom mappings, invariance checks and frame metrics."""

from __future__ import annotations

import numpy as np
import pytest

from crystalframer.app.models import fresh_model
from crystalframer.analysis.perturb import (frame_change, make_perturbed, rattle, rotate, rotation_matrix, strain,
                                            substitute, supercell, sweep, sweep_summary)
from crystalframer.examples import get_example


@pytest.fixture(scope="module")
def models():
    return {"max": fresh_model("max"), "wpca": fresh_model("weighted_pca"), "none": fresh_model("none")}


@pytest.fixture(scope="module")
def generic():
    """A low-symmetry structure: rutile with a fixed random displacement (no ties among neighbours)."""
    return rattle(get_example("TiO2 (rutile)"), 0.05, np.random.default_rng(7)).structure


def test_rattle_strain_geometry():
    s = get_example("NaCl (rock salt)")
    r = rattle(s, 0.0, np.random.default_rng(0))
    assert np.allclose(r.structure.cart_coords, s.cart_coords)
    r = rattle(s, 0.1, np.random.default_rng(0))
    assert 0 < np.abs(r.structure.cart_coords - s.cart_coords).max() < 1.0
    st_ = strain(s, 0.02).structure
    assert st_.volume == pytest.approx(s.volume * 1.02**3)
    ua = strain(s, 0.02, "uniaxial a").structure
    assert ua.lattice.a == pytest.approx(s.lattice.a * 1.02)
    assert strain(s, 0.02, "shear ab").structure.volume == pytest.approx(s.volume, rel=1e-3)
    with pytest.raises(ValueError):
        strain(s, 0.01, "twist")


def test_rotation_supercell_substitution():
    s = get_example("TiO2 (rutile)")
    rot = rotation_matrix([0, 0, 1], 90)
    assert np.allclose(rot @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    p = rotate(s, 30.0, axis=(1, 1, 0))
    assert np.allclose(p.structure.cart_coords, s.cart_coords @ p.rotation.T, atol=1e-8)
    sc = supercell(s, 2)
    assert len(sc.structure) == 8 * len(s)
    assert np.bincount(sc.mapping).tolist() == [8] * len(s)
    for k in range(len(sc.structure)):
        assert sc.structure[k].specie == s[int(sc.mapping[k])].specie
    sub = substitute(s, 0.5, "Ti", "Zr", np.random.default_rng(0))
    assert sub.structure.composition["Zr"] == 1 and sub.structure.composition["Ti"] == 1
    with pytest.raises(ValueError):
        substitute(s, 0.5, "Cu", "Zr", np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_perturbed(s, "melt", 1.0, np.random.default_rng(0))


def test_rotation_invariance_on_generic_structure(models, generic):
    """Rotating a generic crystal: same prediction, frames rotate with it (no switches) for max and wPCA."""
    for name in ("max", "wpca"):
        model = models[name]
        base = model.inspect(generic)
        p = rotate(generic, 37.0, axis=(0.3, -1.0, 0.5))
        pert = model.inspect(p.structure)
        assert pert.prediction == pytest.approx(base.prediction, abs=1e-4)
        change = frame_change(base, pert, p.mapping, p.rotation)
        assert change["e1 angle max"] < 0.5, name
        assert change["switched"] == 0.0


def test_supercell_invariance_on_generic_structure(models, generic):
    model = models["max"]
    base = model.inspect(generic)
    p = supercell(generic, 2)
    pert = model.inspect(p.structure)
    assert pert.prediction == pytest.approx(base.prediction, abs=1e-4)
    assert frame_change(base, pert, p.mapping, p.rotation)["e1 angle max"] < 0.5


def test_sweep_table(models):
    s = get_example("SrTiO3 (cubic perovskite)")
    df = sweep(models, s, "rattle", [0.001, 0.05], samples=2, seed=3)
    assert len(df) == 3 * 2 * 2
    assert set(df["model"]) == {"max", "wpca", "none"}
    assert df[df["model"] == "none"]["e1 angle mean"].isna().all()
    framed = df[df["model"] != "none"]
    assert framed["switched"].between(0, 1).all() and framed["e1 angle mean"].notna().all()
    assert (framed["switched"] + framed["sign flipped"]).between(0, 1).all()
    assert (framed["e1 line angle mean"] <= framed["e1 angle mean"] + 1e-9).all()
    assert (df["|delta|"] >= 0).all()
    summary = sweep_summary(df)
    assert len(summary) == 3 * 2
    # The same perturbed structures are used for every model: identical seeds give identical tables.
    again = sweep({"max": models["max"]}, s, "rattle", [0.001, 0.05], samples=2, seed=3)
    assert np.allclose(again["prediction"], df[df["model"] == "max"]["prediction"])


def test_sweep_progress_and_deterministic_kinds(models):
    calls = []
    s = get_example("NaCl (rock salt)")
    df = sweep({"max": models["max"]}, s, "strain", [0.01, 0.02], samples=5, callback=lambda d, t: calls.append((d, t)))
    assert len(df) == 2  # strain is deterministic: one sample per magnitude
    assert calls[-1][0] == calls[-1][1]
    with pytest.raises(ValueError):
        sweep({}, s, "rattle", [0.1])
