"""The vectorized sphere neighbour list equals a brute-force enumeration (docs/model.md §1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from crystalframer import ModelConfig
from crystalframer.neighbors import neighbor_list

CUTOFF = ModelConfig().cutoff  # ≈ 10.9 Å


def brute_force(positions: np.ndarray, lattice: np.ndarray, cutoff: float) -> dict[tuple[int, ...], np.ndarray]:
    """{(i, j, n1, n2, n3): r} for all |p_j + n·L − p_i| ≤ cutoff, by looping over a generous integer box.

    The box half-width per direction is |n_k| ≤ cutoff/d_k + |Δf_k| + 1 (d_k: plane spacing, Δf: fractional
    difference of the unwrapped positions), which contains the whole sphere.
    """
    inv = np.linalg.inv(lattice)
    frac = positions @ inv
    spacing = 1.0 / np.linalg.norm(inv, axis=0)
    out = {}
    n = len(positions)
    for i in range(n):
        for j in range(n):
            df = frac[j] - frac[i]
            bounds = [int(math.ceil(cutoff / spacing[k] + abs(df[k]))) + 1 for k in range(3)]
            for img in itertools.product(*[range(-b, b + 1) for b in bounds]):
                r = positions[j] + np.array(img, dtype=float) @ lattice - positions[i]
                if r @ r <= cutoff * cutoff:
                    out[(i, j) + tuple(img)] = r
    return out


def as_dict(nl) -> dict[tuple[int, ...], np.ndarray]:
    keys = [(int(i), int(j)) + tuple(int(c) for c in n) for i, j, n in zip(nl.src, nl.dst, nl.image)]
    assert len(set(keys)) == len(keys), "duplicate image-edges"
    return dict(zip(keys, nl.vec))


def check(positions, lattice, cutoff=CUTOFF, brute=None):
    positions = np.asarray(positions, dtype=float)
    lattice = np.asarray(lattice, dtype=float)
    nl = neighbor_list(positions, lattice, cutoff)
    got = as_dict(nl)
    want = brute if brute is not None else brute_force(positions, lattice, cutoff)
    # Edges within 1e-9 Å of the sphere may go either way through rounding.
    dist = {k: float(np.linalg.norm(v)) for k, v in want.items()}
    missing = [k for k in set(want) - set(got) if dist[k] < cutoff - 1e-9]
    extra = [k for k in set(got) - set(want) if np.linalg.norm(got[k]) < cutoff - 1e-9 or
             np.linalg.norm(got[k]) > cutoff + 1e-9]
    assert not missing, f"{len(missing)} image-edges missing, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected image-edges, e.g. {sorted(extra)[:5]}"
    # Vectors are exactly p_j + n·L − p_i (from the raw, unwrapped positions).
    for key, vec in got.items():
        i, j, n = key[0], key[1], np.array(key[2:], dtype=float)
        np.testing.assert_allclose(vec, positions[j] + n @ lattice - positions[i], rtol=0, atol=1e-10)
    # Self image present, i-major ordering, consistent shapes.
    n_atoms = len(positions)
    for i in range(n_atoms):
        assert (i, i, 0, 0, 0) in got
    assert np.all(np.diff(nl.src) >= 0), "edges not sorted by source atom"
    assert nl.src.shape == nl.dst.shape == (nl.num_edges,) and nl.image.shape == nl.vec.shape == (nl.num_edges, 3)
    assert np.all(np.linalg.norm(nl.vec, axis=1) <= cutoff + 1e-9)
    return nl


def test_skewed_triclinic_cell():
    lattice = np.array([[3.6, 0.0, 0.0], [3.1, 2.6, 0.0], [-2.4, 1.7, 3.3]])
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 1, size=(4, 3)) @ lattice
    check(positions, lattice)


def test_very_skewed_cell_with_long_vectors():
    """A cell whose lattice vectors are long and nearly parallel (a bad, but valid, cell choice)."""
    reduced = np.array([[3.2, 0.1, 0.0], [0.4, 3.5, 0.2], [0.3, -0.2, 3.9]])
    lattice = np.array([[1, 0, 0], [3, 1, 0], [-4, 2, 1]]) @ reduced
    positions = np.array([[0.2, 0.3, 0.1], [1.9, 1.1, 2.2]])
    check(positions, lattice)


def test_one_atom_cell_with_short_vectors():
    lattice = np.array([[2.05, 0.0, 0.0], [0.4, 1.98, 0.0], [0.3, 0.5, 2.1]])
    nl = check([[0.1, 0.2, 0.3]], lattice)
    assert nl.num_edges > 100  # many images of the one atom
    # Centrosymmetric: every non-zero image n has its partner −n.
    images = {tuple(int(c) for c in n) for n in nl.image}
    assert all(tuple(-c for c in n) in images for n in images)


def test_atoms_outside_unit_cell():
    lattice = np.array([[4.1, 0.0, 0.0], [0.7, 3.9, 0.0], [0.5, -0.8, 4.4]])
    frac = np.array([[1.3, -0.4, 0.2], [-2.7, 0.5, 3.1], [0.45, 1.999, -1.001], [-0.0, 0.0, 1.0]])
    nl = check(frac @ lattice, lattice)
    # Translating one atom by a lattice vector only relabels its images.
    moved = (frac + np.array([[0, 0, 0], [3, -1, 0], [0, 0, 0], [0, 0, 0]])) @ lattice
    nl2 = neighbor_list(moved, lattice, CUTOFF)
    assert nl2.num_edges == nl.num_edges
    np.testing.assert_allclose(np.sort(np.linalg.norm(nl2.vec, axis=1)), np.sort(np.linalg.norm(nl.vec, axis=1)),
                               atol=1e-10)


def test_large_cell():
    """~72 atoms; the brute force loops over pairs with a vectorized inner box to stay quick."""
    rng = np.random.default_rng(1)
    lattice = np.array([[9.1, 0.0, 0.0], [1.2, 8.7, 0.0], [-0.9, 0.6, 9.4]])
    n = 72
    frac = rng.uniform(-0.2, 1.2, size=(n, 3))
    positions = frac @ lattice
    inv = np.linalg.inv(lattice)
    spacing = 1.0 / np.linalg.norm(inv, axis=0)
    want = {}
    for i in range(n):
        for j in range(n):
            df = frac[j] - frac[i]
            axes = [np.arange(int(np.floor(-CUTOFF / spacing[k] - df[k])) - 1,
                              int(np.ceil(CUTOFF / spacing[k] - df[k])) + 2) for k in range(3)]
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
            r = positions[j] + grid @ lattice - positions[i]
            keep = (r * r).sum(-1) <= CUTOFF * CUTOFF
            for img, vec in zip(grid[keep], r[keep]):
                want[(i, j) + tuple(int(c) for c in img)] = vec
    assert len(want) > 5000
    check(positions, lattice, brute=want)


@pytest.mark.parametrize("cutoff", [0.5, 3.0, 8.5])
def test_cutoffs(cutoff):
    lattice = np.array([[3.3, 0.2, 0.0], [-1.4, 3.0, 0.1], [0.6, 0.9, 3.7]])
    positions = np.array([[0.0, 0.0, 0.0], [1.7, 1.1, 1.9], [-0.4, 2.6, 3.3]])
    check(positions, lattice, cutoff=cutoff)


def test_coordinates_on_cell_faces():
    """Fractional coordinates that round onto the cell faces (−1e−17 wraps to exactly 1.0)."""
    lattice = np.array([[3.4, 0.0, 0.0], [0.5, 3.6, 0.0], [0.2, -0.3, 3.9]])
    frac = np.array([[-1e-17, 0.0, 0.5], [1.0 - 1e-17, 0.5, 1e-17], [0.5, 1.0, -0.0]])
    check(frac @ lattice, lattice)


def test_compact_storage_gives_the_same_vectors_bit_for_bit():
    """The list keeps int32 indices and int8 images and recomputes r on use: the vectors equal, bit for bit, the
    search's own p_j + n·L − p_i in int64/float64 (so predictions do not change), and a needle-thin cell whose
    images exceed int8 widens the type instead of wrapping."""
    rng = np.random.default_rng(3)
    lattice = np.array([[4.1, 0.2, 0.0], [0.7, 3.9, 0.1], [0.3, -0.4, 5.2]])
    positions = rng.random((5, 3)) @ lattice + rng.normal(0, 2.0, (5, 3))  # unwrapped: outside the cell
    nl = neighbor_list(positions, lattice, CUTOFF)
    assert nl.src.dtype == np.int32 and nl.dst.dtype == np.int32 and nl.image.dtype == np.int8
    want = positions[nl.dst.astype(np.int64)] + nl.image.astype(np.int64) @ lattice - positions[nl.src.astype(np.int64)]
    assert np.array_equal(nl.vec, want)
    thin = neighbor_list(np.zeros((1, 3)), np.diag([0.05, 40.0, 40.0]), 8.0)  # 160 images along a
    assert thin.image.dtype == np.int16 and int(np.abs(thin.image).max()) == 160
    assert np.allclose(np.abs(thin.vec[:, 0]).max(), 8.0)
