"""Frames from ``model.inspect``: orthonormal and right-handed, rotation-equivariant, and geometrically right."""

from __future__ import annotations


import numpy as np
import pytest


import reference_model as ref
from crystalframer import FRAME_METHODS

FRAMED = [m for m in FRAME_METHODS if m != "none"]
EQUIVARIANT = ("max", "weighted_pca", "static")

STRUCTURES = {
    "low_symmetry": ref.low_symmetry_cell(seed=5),
    "rutile": ref.rutile_cell(seed=6),
    "one_atom": ref.one_atom_cell(),
    "srtio3": ref.srtio3(),
}


_MODELS: dict[str, object] = {}


def _model(method):
    if method not in _MODELS:
        _MODELS[method] = ref.make_model(method, STRUCTURES.values())
    return _MODELS[method]


random_rotation = ref.random_rotation


def rotated(s, rot):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(s.lattice.matrix @ rot.T), list(s.species_and_occu), s.cart_coords @ rot.T,
                     coords_are_cartesian=True)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("method", FRAMED)
def test_frames_orthonormal_right_handed(method, name):
    inspection = _model(method).inspect(STRUCTURES[name])
    n_atoms, heads = len(STRUCTURES[name]), _model(method).config.num_heads
    for layer, lay in enumerate(inspection.layers):
        frames = lay.frames
        assert frames is not None and frames.shape == (n_atoms, heads, 3, 3)
        assert np.all(np.isfinite(frames))
        norms = np.linalg.norm(frames, axis=-1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-12, err_msg=f"{method} layer {layer}: axes not unit length")
        det = np.linalg.det(frames)
        if method == "lattice":  # unit lattice directions, not orthogonal, but right-handed
            assert np.all(det > 1e-6), f"lattice frames not right-handed: {det.min()}"
            continue
        gram = frames @ np.swapaxes(frames, -1, -2)
        np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-12,
                                   err_msg=f"{method}/{name} layer {layer}: not orthonormal")
        np.testing.assert_allclose(det, 1.0, atol=1e-12, err_msg=f"{method}/{name} layer {layer}: det != +1")


def test_none_has_no_frames():
    inspection = ref.make_model("none", STRUCTURES.values()).inspect(STRUCTURES["low_symmetry"])
    assert all(lay.frames is None for lay in inspection.layers)


@pytest.mark.parametrize("name", ["low_symmetry", "rutile"])
@pytest.mark.parametrize("method", EQUIVARIANT)
def test_rotation_equivariance(method, name):
    """F(R x) = F(x) Rᵀ for every layer, atom and head (rows e_k rotate as vectors)."""
    model = _model(method)
    s = STRUCTURES[name]
    base = model.inspect(s)
    for seed in (1, 2):
        rot = random_rotation(seed)
        moved = model.inspect(rotated(s, rot))
        for layer, (a, b) in enumerate(zip(base.layers, moved.layers)):
            expected = a.frames @ rot.T
            err = np.abs(b.frames - expected).max()
            assert err <= 1e-8, f"{method}/{name} layer {layer}: F(Rx) differs from F(x)Rᵀ by {err:.3g}"


@pytest.mark.parametrize("method", ["max", "static"])
def test_max_e1_points_at_largest_weight_image(method):
    """``max``: e1 = direction of the non-zero image-edge with the largest attention weight.
    ``static``: e1 = direction of the nearest non-zero image (distance-only weights)."""
    model = _model(method)
    inspection = model.inspect(STRUCTURES["low_symmetry"])
    for layer, lay in enumerate(inspection.layers):
        d2 = (lay.vectors ** 2).sum(-1)
        nonzero = d2 > 1e-5
        for i in range(lay.frames.shape[0]):
            mine = np.nonzero((lay.edges[:, 0] == i) & nonzero)[0]
            for h in range(lay.frames.shape[1]):
                if method == "max":
                    best = mine[np.argmax(lay.attention[mine, h])]
                else:
                    best = mine[np.argmin(d2[mine])]
                target = lay.vectors[best] / np.sqrt(d2[best])
                np.testing.assert_allclose(lay.frames[i, h, 0], target, atol=1e-10,
                                           err_msg=f"{method} layer {layer} atom {i} head {h}")


def test_max_e2_is_the_best_perpendicular_candidate():
    """``max``: ẽ2 maximises w·(1 − |e1·r̂|) among non-zero, non-parallel images; e2 is its Gram–Schmidt part."""
    model = _model("max")
    inspection = model.inspect(STRUCTURES["rutile"])
    ties = 0
    for lay in inspection.layers:
        d2 = (lay.vectors ** 2).sum(-1)
        unit = lay.vectors / np.sqrt(np.maximum(d2, 1e-300))[:, None]
        for i in range(lay.frames.shape[0]):
            mine = np.nonzero((lay.edges[:, 0] == i) & (d2 > 1e-5))[0]
            for h in range(lay.frames.shape[1]):
                e1 = lay.frames[i, h, 0]
                c = np.abs(unit[mine] @ e1)
                ok = c < 0.9999
                score = lay.attention[mine, h] * np.maximum(1 - c, 1e-5)
                best = mine[ok][np.argmax(score[ok])]
                t2 = unit[best]
                e2 = t2 - (t2 @ e1) * e1
                e2 /= np.linalg.norm(e2)
                # An exact tie with the opposite image (a lattice translation seen both ways) leaves the sign to the
                # third-moment rule, checked against the reference in test_reference.py.
                opposite = np.abs(lay.vectors[mine] + lay.vectors[best]).max(-1) < 1e-9
                tied = np.any(opposite & np.isclose(score, score.max(), rtol=1e-12, atol=0))
                got = lay.frames[i, h, 1]
                if tied:
                    ties += 1
                    got = got * np.sign(got @ e2)
                np.testing.assert_allclose(got, e2, atol=1e-10)
    assert ties < inspection.layers[0].frames.shape[0] * inspection.layers[0].frames.shape[1] * len(inspection.layers)


def test_static_frames_of_ti_in_srtio3_follow_bonds():
    """Ti in cubic SrTiO3: static frames lie along Ti–O bonds, all three axes along the cubic axes."""
    s = STRUCTURES["srtio3"]
    ti = [k for k, site in enumerate(s) if site.specie.symbol == "Ti"][0]
    model = _model("static")
    inspection = model.inspect(s)
    lay0 = inspection.layers[0]
    is_o = np.array([s[int(j)].specie.symbol == "O" for j in lay0.edges[:, 1]])
    dist = np.linalg.norm(lay0.vectors, axis=-1)
    bonds = lay0.vectors[(lay0.edges[:, 0] == ti) & is_o & (np.abs(dist - 3.905 / 2) < 1e-6)]
    assert len(bonds) == 6
    bonds = bonds / np.linalg.norm(bonds, axis=-1, keepdims=True)
    for layer, lay in enumerate(inspection.layers):
        frames = lay.frames[ti]  # (H, 3, 3)
        along_bond = np.abs(frames[:, 0, :] @ bonds.T).max(-1)
        np.testing.assert_allclose(along_bond, 1.0, atol=1e-10, err_msg=f"layer {layer}: e1 not along a Ti-O bond")
        along_axes = np.abs(frames).max(-1)  # each axis along ±x, ±y or ±z
        np.testing.assert_allclose(along_axes, 1.0, atol=1e-10, err_msg=f"layer {layer}: axes not cubic")


def _synthetic_geometry(counts, zero_images, seed=0):
    """EdgeGeometry of one crystal whose atom a has counts[a] image-edges (to atom 0), the first zero_images[a] of
    them the zero image; float64."""
    import torch

    from crystalframer.model.geometry import EdgeGeometry

    gen = torch.Generator().manual_seed(seed)
    src = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    vec = torch.randn((int(src.numel()), 3), generator=gen, dtype=torch.float64) * 3.0
    start = 0
    for c, z in zip(counts, zero_images):
        vec[start:start + z] = 0.0
        start += c
    n = len(counts)
    return EdgeGeometry.build(src, torch.zeros_like(src), vec, torch.zeros(n, dtype=torch.long),
                              torch.zeros((n, 3), dtype=torch.float64), torch.eye(3, dtype=torch.float64)[None])


def test_random_valid_slots_are_uniform_over_each_atoms_valid_slots():
    """Training's symmetry-breaking neighbour: always a valid slot (not the zero image, not padding) of the right
    atom, every one equally likely, heads independent. Atom 2 spans three rows; atom 3 has only its zero image."""
    import torch

    from crystalframer.model.frames import _random_valid_slots

    counts, zero_images = [5, 1, 70, 1, 33], [1, 0, 1, 1, 0]
    geom = _synthetic_geometry(counts, zero_images)
    gen = torch.Generator().manual_seed(1)
    draws, heads = 2000, 4
    hits = torch.zeros(geom.valid.shape, dtype=torch.long)
    for _ in range(draws // heads):
        row, col = _random_valid_slots(geom, heads, gen, torch.float64)
        assert row.shape == col.shape == (len(counts), heads)
        for atom in (0, 1, 2, 4):
            assert bool((geom.row_atom[row[atom]] == atom).all()), f"atom {atom} got another atom's slot"
            assert bool(geom.valid[row[atom], col[atom]].all()), f"atom {atom} got an invalid slot"
            hits.index_put_((row[atom], col[atom]), torch.ones(heads, dtype=torch.long), accumulate=True)
    for atom in (0, 2, 4):
        mine = geom.valid & (geom.row_atom[:, None] == atom)
        freq = hits[mine].double() / draws
        expected = 1.0 / (counts[atom] - zero_images[atom])
        assert int(mine.sum()) == counts[atom] - zero_images[atom]
        # each count is Binomial(draws, p): 5 standard deviations
        bound = 5.0 * (expected * (1 - expected) / draws) ** 0.5
        assert float((freq - expected).abs().max()) < bound, f"atom {atom}: not uniform"
    assert int(hits[geom.valid & (geom.row_atom[:, None] == 1)].sum()) == draws  # its single valid slot


@pytest.mark.parametrize("unit_vectors", [True, False])
def test_weighted_pca_training_frames_are_the_eval_eigenvectors_with_random_signs(unit_vectors):
    """Without the symmetry-breaking term, training and eval frames share their axes (eigenvectors of Σ) and
    differ only in sign; training frames are orthonormal and right-handed."""
    import torch

    from crystalframer.model.frames import FrameSampling, weighted_pca_frames

    geom = _synthetic_geometry([9, 40, 3], [1, 0, 0], seed=2)
    gen = torch.Generator().manual_seed(3)
    heads = 3
    logits = torch.randn((geom.num_rows, heads, geom.valid.shape[1]), generator=gen, dtype=torch.float64)
    logits = logits.masked_fill(~geom.pad_mask[:, None, :], float("-inf"))
    weights = geom.softmax(logits)
    args = (weights, logits, geom)
    eval_frames = weighted_pca_frames(*args, FrameSampling("eval"), 0.0, unit_vectors, 1e-3)
    for seed in range(3):
        train = weighted_pca_frames(*args, FrameSampling("train", torch.Generator().manual_seed(seed)), 0.0,
                                    unit_vectors, 1e-3)
        gram = train @ train.transpose(-1, -2)
        torch.testing.assert_close(gram, torch.eye(3, dtype=torch.float64).expand_as(gram), atol=1e-12, rtol=0)
        torch.testing.assert_close(torch.linalg.det(train), torch.ones(train.shape[:2], dtype=torch.float64),
                                   atol=1e-12, rtol=0)
        overlap = (train * eval_frames).sum(-1)  # (N, H, 3): ±1 per axis
        torch.testing.assert_close(overlap.abs(), torch.ones_like(overlap), atol=1e-9, rtol=0)
